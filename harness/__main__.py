"""``python -m harness <command>``: the pipeline's stages and tools.

Every command first loads params.yaml strictly, so a misspelt key stops it before any work, then pins the numerics it
names (``cube/numerics.py``) before anything imports torch; a tool pins those of ./params.yaml.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from cube import numerics
from cube.config import ConfigError, read_params_file
from harness import paths
from harness.config import Params, load_params


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix: printed in one line, exit status 2. Imported only when one is raised, so a
    stage's process executes only the modules its command needs (dvc.yaml lists them as its code)."""
    from cube.checkpoint import CheckpointError
    from cube.device import DeviceError
    from cube.pairs import DataError
    from cube.reshaper import LatticeSizeError
    from cube.teachers import TeacherError
    from harness.judge.gate import GateError

    return (ConfigError, numerics.NumericsError, DataError, DeviceError, LatticeSizeError, TeacherError,
            CheckpointError, FileNotFoundError, GateError)


def cmd_check(params: Params, args: argparse.Namespace) -> None:
    """Validate params.yaml (and that the lattice holds the teacher's width); write every setting, defaults included, for
    reading, and the stamp the datasets stage depends on so that it runs after this check."""
    import yaml

    from cube import atomic
    from harness.workflows.experiments import check_lattice_fits_teacher

    check_lattice_fits_teacher(params)
    header = (f"# Written by `python -m harness check` from {args.params} and the defaults in cube/config.py and\n"
              "# harness/config.py: every setting the stages read. Edit params.yaml, not this file.\n")
    atomic.write_text(paths.PARAMS_RESOLVED, header + yaml.safe_dump(params.to_dict(), sort_keys=False))
    atomic.write_text(paths.PARAMS_CHECKED, "params.yaml passed `python -m harness check`\n")
    print(f"{args.params}: valid (params hash {params.params_hash()[:12]}); resolved into {paths.PARAMS_RESOLVED}")


def cmd_datasets(params: Params, args: argparse.Namespace) -> None:
    from cube import atomic
    from cube.embedded import build_embedded_data, save_embedded

    data = build_embedded_data(params, progress=True)
    save_embedded(data, paths.EMBEDDED)
    atomic.write_json(paths.DATA_CARD, {k: v for k, v in data.card.items() if k != "teachers"}
                      | {"teachers": len(data.teachers)})
    atomic.write_json(paths.DATASETS_RUN, {"teachers": data.run_facts})  # read by nothing downstream
    print(f"datasets: {data.card['pairs']} pairs, width {data.dim}, "
          f"{sum(t['encoded'] for t in data.run_facts)} sentences encoded, "
          f"{sum(t['cache_hits'] for t in data.run_facts)} from the cache")


def cmd_train(params: Params, args: argparse.Namespace) -> int | None:
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


def cmd_seeds(params: Params, args: argparse.Namespace) -> None:
    from harness.stages.train import run_repeats

    if not params.quality.extra_seeds:
        paths.SEED_CHECKPOINTS.mkdir(parents=True, exist_ok=True)  # the stage's declared output, empty
        print("seeds: quality.extra_seeds is empty; the quality table has the pipeline's own seed only")
        return
    run_repeats(params)


def cmd_evaluate(params: Params, args: argparse.Namespace) -> None:
    from harness.stages.evaluate import evaluate_all

    result = evaluate_all(params)
    for name, value in (result.stages | result.baselines).items():
        test = value.test
        print(f"{name:>22}: test cosine {test.cosine:.4f}  R@1 {test.recall_at_1:.4f}  MRR {test.mrr:.4f}")


def cmd_bench(params: Params, args: argparse.Namespace) -> None:
    from harness.stages.bench import run_bench

    result = run_bench(params)
    for row in result.rows:
        print(f"{row.phase:>8} batch {row.batch_size:>5}: {row.samples_per_s:>12,.0f} samples/s")


def cmd_reliability(params: Params, args: argparse.Namespace) -> None:
    from harness.stages.reliability import run_drills

    result = run_drills(params)
    if not result.run:
        print(f"reliability drills not run: {result.reason}")
        return
    for kind, counts in (("bad_input", result.bad_input), ("fault", result.fault)):
        print(f"{kind}: {counts.passed} of {counts.tried} passed"
              + (f"; FAILED: {', '.join(counts.failed)}" if counts.failed else ""))


def cmd_report(params: Params, args: argparse.Namespace) -> None:
    from harness.render.report import build_report

    print(f"report written: {build_report(params)}")


def cmd_doctor(params: Params, args: argparse.Namespace) -> None:
    from cube import atomic
    from harness.measure.doctor import diagnose, format_report

    found = diagnose(params.train.device)
    print(format_report(found))
    atomic.write_json(paths.DOCTOR, found)
    print(f"recorded in {paths.DOCTOR}")


class GateFailed(Exception):
    """A metric regressed: the gate's exit status is 1."""


def cmd_gate(params: Params, args: argparse.Namespace) -> None:
    from harness.judge.gate import run_gate
    from harness.render.gate_report import render

    verdict = run_gate(params, args.baseline, profile=args.profile, update=args.update, code_repo=args.code_repo,
                       revision=args.revision, remeasure=not args.skip_timing)
    print(render(verdict))
    if not verdict.passed:
        raise GateFailed()


def cmd_exp(params: Params, args: argparse.Namespace) -> int:
    from harness.workflows.experiments import run

    return run(args.dvc_args, args.params)


COMMANDS: dict[str, tuple[Callable[[Params, argparse.Namespace], int | None], str]] = {
    "check": (cmd_check, "validate params.yaml"),
    "datasets": (cmd_datasets, "corpus -> pairs -> split -> teacher embeddings (cached)"),
    "train": (cmd_train, "train one stage from the previous stage's checkpoint"),
    "seeds": (cmd_seeds, "the four stages again from scratch under each quality.extra_seeds (for mean ± std)"),
    "evaluate": (cmd_evaluate, "every stage and baseline on the test split, under every seed"),
    "bench": (cmd_bench, "throughput, latency and memory of the cube"),
    "reliability": (cmd_reliability, "run the bad-input table and the fault drills now and count them"),
    "report": (cmd_report, "write reports/report.md and its plots"),
    "doctor": (cmd_doctor, "torch build, GPUs, whether the build can drive them, NVML, CPU; the device choice"),
    "gate": (cmd_gate, "compare this run's metrics with reports/baseline.json; non-zero exit on a regression"),
    "exp": (cmd_exp, "`dvc exp run` with every -S checked against the params schema first (exp run -S key=value ...)"),
}


# Tools with options of their own: `python -m harness <tool> --help` shows them. They read params.yaml themselves
# where they need it (a profile run lays its own over it), so nothing is loaded before they start.
TOOLS: dict[str, tuple[str, str]] = {
    "compare": ("harness.render.compare",
                "experiments side by side: swept settings, validation and test MRR, speed (make compare)"),
    "profile": ("harness.workflows.profile", "a profile's whole pipeline in a throw-away clone; its report kept or gated"),
    "learning-curve": ("harness.workflows.learning_curve", "quality against training pairs, cube and baselines"),
    "cube-ablation": ("harness.workflows.cube_ablation",
                      "the cube's ceiling: its designs and probes at one training size, with paired verdicts"),
    "task-summary": ("harness.render.task_summary", "reports/tasks.md from every task's committed run"),
    "plots-page": ("harness.render.plots_page", "`dvc plots show` offline: write the page template, or check a page"),
    "memory-probe": ("harness.measure.memory_probe", "one bench phase's host memory, in this fresh process"),
    "peer-probe": ("harness.measure.peer_probe", "the independent peers' speed ratios, in this fresh process"),
    "code-deps": ("harness.workflows.code_deps", "check dvc.yaml's code lists against the imports, or --write them"),
}


def run_tool(name: str, argv: list[str]) -> int:
    import importlib

    try:
        numerics.pin(tool_numerics(paths.PARAMS))
    except (ConfigError, numerics.NumericsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return importlib.import_module(TOOLS[name][0]).main(argv)


def tool_numerics(params_path: Path) -> str:
    """The numerics a tool runs under: those of ``params_path`` where it exists (a tool may lay a profile over it, but
    no profile changes the numerics), else the default."""
    if not params_path.exists():
        return numerics.DEFAULT
    raw = read_params_file(params_path, Params)
    mode = raw.get("numerics", numerics.DEFAULT) if isinstance(raw, dict) else numerics.DEFAULT
    if mode not in numerics.MODES:
        raise ConfigError(f"{params_path}: numerics = {mode!r} is not allowed; allowed values: "
                          f"{', '.join(map(repr, numerics.MODES))}")
    return mode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:  # the tool parses its own options, --help included
        return run_tool(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=paths.PARAMS, help="params file (default: params.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if name == "train":
            sub.add_argument("stage", choices=paths.STAGES)
            sub.add_argument("--node-rank", type=int, default=None,
                             help="this node's rank in a multi-node run (overrides train.distributed.node_rank)")
        if name == "exp":
            sub.add_argument("dvc_args", nargs=argparse.REMAINDER, help="run, then dvc exp run's own options")
        if name == "gate":
            sub.add_argument("--update", action="store_true",
                             help="print the comparison, then make this run the profile's baseline")
            sub.add_argument("--profile", default="default",
                             help="which committed baseline this run replaces (default: default; CI's: tiny)")
            sub.add_argument("--baseline", type=Path, default=None, help="baseline file (default: gate.baseline)")
            sub.add_argument("--code-repo", type=Path, default=None,
                             help="git repository holding the baseline's revision, whose cube is timed against this "
                                  "one's (default: this repository)")
            sub.add_argument("--skip-timing", action="store_true",
                             help="time nothing: peer ratios judged on the bench's own process only, this revision's "
                                  "cube speed not judged (a quick look at quality and exact figures)")
            sub.add_argument("--revision", default=None,
                             help="with --update: the commit whose cube/ made this run (default: HEAD, when cube/ "
                                  "has no uncommitted change)")
    for name, (_, help_text) in TOOLS.items():
        commands.add_parser(name, help=help_text)  # listed here; main() hands its arguments to the tool
    args = parser.parse_args(argv)
    if args.command in TOOLS:  # reached only with global options first: a tool takes its own
        parser.error(f"{args.command} takes its own options: run `python -m harness {args.command} --help`, with "
                     "nothing before the tool's name")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        params = load_params(args.params)
        numerics.pin(params.numerics)
        status = COMMANDS[args.command][0](params, args)
        if status:  # a command that ran others (torchrun workers) passes their failure on
            return status
    except GateFailed:
        return 1
    except Exception as err:
        from cube.trainer import TrainingDiverged

        if isinstance(err, TrainingDiverged):
            print(f"error: {err}", file=sys.stderr)
            return 1
        if isinstance(err, user_errors()):
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
