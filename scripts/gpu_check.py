"""Every GPU figure the project asks for, in one go, into one folder that can be copied back whole.

    python scripts/gpu_check.py [--out reports/gpu] [--device cuda]      (make gpu-check)

On one NVIDIA GPU (sized for well under 8 minutes on an H100 or H200; not yet run on one) with the project
installed (`make setup` with a CUDA build of torch, e.g. PyPI's default torch 2.13.0), in order, each step's
output kept:

1. the device doctor (build arch list, GPUs, the device chosen and why);
2. the tiny profile's pipeline (profiles/tiny.yaml) by `dvc repro` on the GPU: training, evaluation, and the bench,
   which on CUDA adds batch 8192 and lists torch's allocator peaks beside NVML's device memory in each row, and
   times the compiled (torch.compile) eager reference as a peer;
3. the same pipeline up to evaluation with `train.autocast: bf16`: the test cosine of every stage against fp32;
4. the determinism test on the GPU (tests/test_device.py: two runs of the same seed give identical weights);
5. DistributedDataParallel over NCCL with one process (scripts/gpu_ddp_check.py): steps equal to a plain run.

The folder gets summary.md (a table of the steps and the figures), report.md and bench.json (step 2),
evaluate-fp32.json and evaluate-bf16.json (steps 2 and 3) and gpu-check.log (every command's output). A failed step
is recorded and the next one runs; the exit status is non-zero when any failed. ``--device cpu`` runs the same
plumbing on a machine without a GPU (steps 4 and 5 are then skipped): a rehearsal, not a GPU result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.workflows.profile import TINY, make_workspace, merge, run  # noqa: E402

STAGES = ("autoencoder", "dialogue", "optimized", "advanced")


class Check:
    """Runs the steps, logs every command's output and keeps each step's outcome for the summary."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.log = (out / "gpu-check.log").open("w", encoding="utf-8")
        self.steps: list[tuple[str, str, float, str]] = []  # name, ok/FAILED/skipped, seconds, figures

    def run(self, command: list[str], cwd: Path) -> str:
        self.log.write(f"\n$ (cd {cwd} && {' '.join(command)})\n")
        self.log.flush()
        result = run(command, cwd, check=False)
        self.log.write(result.stdout + result.stderr)
        self.log.flush()
        if result.returncode != 0:
            raise RuntimeError(f"exit status {result.returncode}: {(result.stderr or result.stdout).strip()[-300:]}")
        return result.stdout

    def step(self, name: str, action, *, skip: str | None = None) -> None:  # noqa: ANN001
        if skip:
            self.steps.append((name, "skipped", 0.0, skip))
            return
        start = time.perf_counter()
        try:
            figures = action()
            self.steps.append((name, "ok", time.perf_counter() - start, figures or ""))
        except Exception as error:  # a failed step is recorded, the next one still runs
            self.steps.append((name, "FAILED", time.perf_counter() - start, str(error).replace("\n", " ")[:300]))
        print(f"gpu_check: {name}: {self.steps[-1][1]} ({self.steps[-1][2]:.0f} s)", flush=True)


def pipeline(check: Check, workspace: Path, changes: dict, until: str | None = None) -> Path:
    """The tiny profile with ``changes`` on top, in a throw-away repository, run by dvc (up to stage ``until``)."""
    overlay = workspace.parent / f"{workspace.name}.yaml"
    overlay.write_text(yaml.safe_dump(merge(yaml.safe_load(TINY.read_text(encoding="utf-8")), changes)),
                       encoding="utf-8")
    workspace.mkdir(parents=True)
    make_workspace(workspace, overlay=overlay)
    check.run([sys.executable, "-m", "dvc", "repro", *([until] if until else [])], workspace)
    return workspace


def stage_cosines(evaluate: Path) -> dict[str, float]:
    stages = json.loads(evaluate.read_text(encoding="utf-8"))["stages"]
    return {stage: stages[stage]["test"]["cosine"] for stage in STAGES if stage in stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "gpu")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a rehearsal without a GPU")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    check = Check(out)
    gpu = args.device == "cuda"
    scratch = Path(tempfile.mkdtemp(prefix="cube-gpu-check-"))
    fp32, bf16 = scratch / "fp32", scratch / "bf16"

    def doctor() -> str:
        text = check.run([sys.executable, "-m", "harness", "doctor"], ROOT)
        chosen = [line for line in text.splitlines() if line.startswith("device ")]
        return chosen[0].strip() if chosen else ""

    def tiny_pipeline() -> str:
        pipeline(check, fp32, {"train": {"device": args.device}, "bench": {"compiled_peer": True}})
        for name, target in (("reports/report.md", "report.md"), ("metrics/bench.json", "bench.json"),
                             ("metrics/evaluate.json", "evaluate-fp32.json")):
            shutil.copy2(fp32 / name, out / target)
        bench = json.loads((fp32 / "metrics/bench.json").read_text(encoding="utf-8"))
        biggest = max(bench["rows"], key=lambda r: (r["batch_size"], r["phase"] == "train"))
        ratios = bench["peers"]["speed_ratios"]
        return (f"device {bench['device']}; largest batch {biggest['batch_size']} {biggest['phase']}: "
                f"{biggest['samples_per_s']:,.0f} samples/s, torch peak {biggest.get('cuda_max_allocated_mib', 'n/a')} MiB, "
                f"NVML {biggest.get('nvml_used_mib', biggest.get('nvml', 'n/a'))}; train own vs eager "
                f"{ratios['train_own_vs_eager_reference']['ratio']:.2f}x, vs compiled "
                f"{ratios.get('train_own_vs_compiled_eager_reference', {}).get('ratio', float('nan')):.2f}x")

    def autocast_gap() -> str:
        autocast = {stage: {"autocast": "bf16"} for stage in STAGES}
        pipeline(check, bf16, {"train": {"device": args.device, **autocast}}, until="evaluate")
        shutil.copy2(bf16 / "metrics/evaluate.json", out / "evaluate-bf16.json")
        full, half = stage_cosines(fp32 / "metrics/evaluate.json"), stage_cosines(bf16 / "metrics/evaluate.json")
        return "test cosine bf16 - fp32: " + ", ".join(f"{s} {half[s] - full[s]:+.4f}" for s in full if s in half)

    def determinism() -> str:
        text = check.run([sys.executable, "-m", "pytest", "-q", "-rs", "tests/test_device.py", "-k", "determinis"], ROOT)
        return text.strip().splitlines()[-1]

    def ddp() -> str:
        text = check.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--max_restarts=0",
                          str(ROOT / "scripts" / "gpu_ddp_check.py")], ROOT)
        return text.strip().splitlines()[-1]

    no_gpu = None if gpu else "rehearsal on the CPU"
    check.step("doctor", doctor)
    check.step("tiny pipeline + bench", tiny_pipeline)
    check.step("bf16 autocast vs fp32", autocast_gap, skip=None if fp32.exists() else "no fp32 run to compare with")
    check.step("determinism test", determinism, skip=no_gpu)
    check.step("DDP over NCCL, one process", ddp, skip=no_gpu)
    shutil.rmtree(scratch, ignore_errors=True)

    lines = ["# GPU check", "", f"`python scripts/gpu_check.py --device {args.device}`, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Every command's output: gpu-check.log.", "",
             "| step | result | seconds | figures |", "|---|---|---|---|"]
    lines += [f"| {name} | {result} | {seconds:.0f} | {figures} |" for name, result, seconds, figures in check.steps]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print((out / "summary.md").read_text(encoding="utf-8"))
    return 1 if any(result == "FAILED" for _, result, _, _ in check.steps) else 0


if __name__ == "__main__":
    sys.exit(main())
