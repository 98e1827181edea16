"""Host memory one bench phase needs, measured in a process of its own so the figure belongs to that phase.

In a long-running process, memory an earlier phase freed often stays resident (the allocator keeps it for later),
so a peak taken there mixes phases. Here a fresh process sets the phase up (model, inputs, optimizer), resets the
kernel's high-water mark of its resident memory (writing 5 to /proc/self/clear_refs), runs the phase once and reads
the mark again (VmHWM): the increase is what the phase itself needed.

    python -m harness memory-probe --phase train --batch 64    # prints {"peak_increase_mib": ...}
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from harness.measure import probe_entry
from harness.measure.phases import PHASES

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _resident_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{STATUS} has no {field}")


def measure(params_path: Path, phase: str, batch: int) -> dict[str, Any]:
    import torch

    from cube.processor import EmbeddingProcessor
    from harness import paths
    from harness.config import load_params
    from harness.measure.phases import batch_inputs, phases
    from harness.store.results import read_card

    params = load_params(params_path)
    dim = read_card(paths.EMBEDDED / "card.json").dim
    torch.manual_seed(params.seed)
    model = EmbeddingProcessor(dim, params.cube)
    model.train(phase == "train")
    x, target = batch_inputs(batch, dim, torch.device("cpu"))
    run = phases(model, x, target)[phase]
    before = _resident_kib("VmRSS")
    CLEAR_REFS.write_text("5")  # the high-water mark restarts from the current resident size
    run()
    return {"peak_increase_mib": (_resident_kib("VmHWM") - before) / 1024}


def probe(params_path: Path, phase: str, batch: int) -> float | None:
    """The phase's peak increase of resident memory in MiB, measured in a fresh process; None on a platform without
    /proc/self/clear_refs."""
    if not CLEAR_REFS.exists():
        return None
    result = subprocess.run(probe_entry.command("memory", "--params", str(params_path), "--phase", phase, "--batch",
                                                str(batch)), capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"memory probe of {phase} at batch {batch} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_increase_mib"]  # the probe's line, parsed here


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness memory-probe", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--phase", choices=PHASES, required=True)
    parser.add_argument("--batch", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.params, args.phase, args.batch)))
    return 0
