"""The cube against its independent peers, timed in a process of its own.

A speed ratio varies more between processes (thread placement, memory layout, what else the machine does) than
its interval from one process's repeats shows: the train own/eager ratio measured 1.39, 1.42, 1.66 and 1.59 in
four identical runs, each with an interval of about +-0.05. So a speed target's verdict stands only when a
second process, started here, agrees with the bench's own.

    python -m harness peer-probe --params params.yaml    # prints the speed ratios as JSON
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from harness.config import Params, load_params
from harness.measure import probe_entry
from harness.stats.paired import RatioEstimate


def measure(params: Params) -> dict[str, RatioEstimate]:
    """The independent peers' speed ratios, timed in this process."""
    import torch

    from cube.device import choose_device
    from cube.processor import EmbeddingProcessor
    from harness import paths
    from harness.measure.peer_ratios import INDEPENDENT_PEERS, measure_peers
    from harness.store.results import read_card

    dim = read_card(paths.EMBEDDED / "card.json").dim
    device = choose_device(params.train.device).device
    torch.manual_seed(params.seed)
    model = EmbeddingProcessor(dim, params.cube).to(device)
    return measure_peers(model, params, dim, device, peers=INDEPENDENT_PEERS).speed_ratios


def probe(params_path: Path) -> dict[str, RatioEstimate]:
    """The independent peers' speed ratios, measured by a fresh Python process."""
    result = subprocess.run(probe_entry.command("peers", "--params", str(params_path)), capture_output=True,
                            text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"peer probe failed:\n{result.stderr[-2000:]}")
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return {name: RatioEstimate.model_validate(value) for name, value in found.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness peer-probe", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    print(json.dumps({name: value.model_dump(mode="json") for name, value in measure(load_params(args.params)).items()}))
    return 0
