"""``python -m harness.stages <stage>``: one pipeline stage as its own process; dvc.yaml's commands.

It loads params.yaml strictly, so a misspelt key stops the stage before any work, pins the numerics the file names
(``cube/numerics.py``) before anything imports torch, runs the stage and prints a user's error in one line. It holds
nothing else: what a stage executes (its code list in dvc.yaml) is this file and what its function below imports, so
the command line's help and tools (``harness/__main__.py``) are no stage's code. ``python -m harness <stage>`` is the
same command.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from cube import numerics
from cube.config import ConfigError
from harness import paths
from harness.config import Params, load_params


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix: printed in one line, exit status 2. Imported only when one is raised, so a
    stage's process executes only the modules its command needs."""
    from cube.checkpoint import CheckpointError
    from cube.device import DeviceError
    from cube.pairs import DataError
    from cube.reshaper import LatticeSizeError
    from cube.teachers import TeacherError

    return (ConfigError, numerics.NumericsError, DataError, DeviceError, LatticeSizeError, TeacherError,
            CheckpointError, FileNotFoundError)


def stage_check(params: Params, args: argparse.Namespace) -> None:
    from harness.stages.check import run_check

    run_check(params, args.params)


def stage_datasets(params: Params, args: argparse.Namespace) -> None:
    from harness.stages.datasets import run_datasets

    run_datasets(params)


def stage_train(params: Params, args: argparse.Namespace) -> int | None:
    """One stage here, or, with train.distributed world size above 1, as torchrun workers (its exit status)."""
    from cube.distributed import world_from_env
    from harness.config import params_from_dict
    from harness.stages.train import launch, needs_launch, run_stage

    if args.node_rank is not None:  # this node's rank without a params file of its own (multi-node)
        raw = params.to_dict()
        raw["train"]["distributed"]["node_rank"] = args.node_rank
        params = params_from_dict(raw, source=f"{args.params} with --node-rank {args.node_rank}")
    if needs_launch(params):
        return launch(params, args.stage, args.params, args.node_rank)
    summary = run_stage(params, args.stage)
    if world_from_env().is_main:
        print(f"{args.stage}: best epoch {summary.best_epoch} of {summary.epochs_run}, "
              f"val {summary.monitor} {summary.best_value:.4f}")
    return None


def stage_seeds(params: Params, args: argparse.Namespace) -> None:
    from harness.stages.train import run_repeats

    if not params.quality.extra_seeds:
        paths.SEED_CHECKPOINTS.mkdir(parents=True, exist_ok=True)  # the stage's declared output, empty
        print("seeds: quality.extra_seeds is empty; the quality table has the pipeline's own seed only")
        return
    run_repeats(params)


def stage_evaluate(params: Params, args: argparse.Namespace) -> None:
    from harness.stages.evaluate import evaluate_all

    result = evaluate_all(params)
    for name, value in (result.stages | result.baselines).items():
        test = value.test
        print(f"{name:>22}: test cosine {test.cosine:.4f}  R@1 {test.recall_at_1:.4f}  MRR {test.mrr:.4f}")


def stage_bench(params: Params, args: argparse.Namespace) -> None:
    from harness.stages.bench import run_bench

    result = run_bench(params)
    for row in result.rows:
        print(f"{row.phase:>8} batch {row.batch_size:>5}: {row.samples_per_s:>12,.0f} samples/s")


def stage_reliability(params: Params, args: argparse.Namespace) -> None:
    from harness.stages.reliability import run_drills

    result = run_drills(params)
    if not result.run:
        print(f"reliability drills not run: {result.reason}")
        return
    for kind, counts in (("bad_input", result.bad_input), ("fault", result.fault)):
        print(f"{kind}: {counts.passed} of {counts.tried} passed"
              + (f"; FAILED: {', '.join(counts.failed)}" if counts.failed else ""))


def stage_report(params: Params, args: argparse.Namespace) -> None:
    from harness.render.report import build_report

    print(f"report written: {build_report(params)}")


STAGES: dict[str, Callable[[Params, argparse.Namespace], int | None]] = {
    "check": stage_check,
    "datasets": stage_datasets,
    "train": stage_train,
    "seeds": stage_seeds,
    "evaluate": stage_evaluate,
    "bench": stage_bench,
    "reliability": stage_reliability,
    "report": stage_report,
}


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(prog="python -m harness.stages", description=__doc__.splitlines()[0])
    found.add_argument("--params", type=Path, default=paths.PARAMS, help="params file (default: params.yaml)")
    stages = found.add_subparsers(dest="command", required=True)
    for name in STAGES:
        stage = stages.add_parser(name)
        if name == "train":
            stage.add_argument("stage", choices=paths.STAGES)
            stage.add_argument("--node-rank", type=int, default=None,
                               help="this node's rank in a multi-node run (overrides train.distributed.node_rank)")
    return found


def run(params_path: Path, body: Callable[[Params], int | None],
        more_user_errors: Callable[[], tuple[type[Exception], ...]] = tuple) -> int:
    """Load and pin, run ``body``, and turn an error that is the user's to fix (``user_errors`` and
    ``more_user_errors``, imported only when needed) into one line: 2 (1 for training that diverged). The harness's
    other commands run through this too."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        params = load_params(params_path)
        numerics.pin(params.numerics)
        status = body(params)
        if status:  # a command that ran others (torchrun workers) passes their failure on
            return status
    except Exception as err:
        from cube.trainer import TrainingDiverged

        if isinstance(err, TrainingDiverged):
            print(f"error: {err}", file=sys.stderr)
            return 1
        if isinstance(err, user_errors() + more_user_errors()):
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run(args.params, lambda params: STAGES[args.command](params, args))


if __name__ == "__main__":
    sys.exit(main())
