"""``python -m harness <command>``: the pipeline's stages and tools.

A stage (``check``, ``datasets``, ``train`` ...) is handed to ``python -m harness.stages``, dvc.yaml's own command,
so nothing here is a stage's code. Every other command loads params.yaml strictly first and pins the numerics it
names before anything imports torch; a tool pins those of ./params.yaml.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from cube import numerics
from cube.config import ConfigError
from harness import paths
from harness.config import Params, numerics_of
from harness.stages import __main__ as stages

# The pipeline's stages (dvc.yaml runs them as `python -m harness.stages <stage>`), with their help.
STAGES: dict[str, str] = {
    "check": "validate params.yaml",
    "datasets": "corpus -> pairs -> split -> teacher embeddings (cached)",
    "train": "train one stage from the previous stage's checkpoint",
    "seeds": "the four stages again from scratch under each quality.extra_seeds (for mean ± std)",
    "evaluate": "every stage and baseline on the test split, under every seed",
    "bench": "throughput, latency and memory of the cube",
    "reliability": "run the bad-input table and the fault drills now and count them",
    "report": "write reports/report.md and its plots",
}


def cmd_doctor(params: Params, args: argparse.Namespace) -> None:
    from cube import atomic
    from harness.measure.doctor import diagnose, format_report

    found = diagnose(params.train.device)
    print(format_report(found))
    atomic.write_json(paths.DOCTOR, found.model_dump(mode="json", exclude_unset=True))
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
        numerics.pin(numerics_of(paths.PARAMS))
    except (ConfigError, numerics.NumericsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return importlib.import_module(TOOLS[name][0]).main(argv)


def command_of(argv: list[str]) -> str | None:
    """The command named in ``argv``, past the global ``--params FILE``."""
    rest = list(argv)
    while rest and rest[0].startswith("--params"):
        rest = rest[1:] if "=" in rest[0] else rest[2:]
    return rest[0] if rest else None


def gate_errors() -> tuple[type[Exception], ...]:
    from harness.judge.gate import GateError

    return (GateError,)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:  # the tool parses its own options, --help included
        return run_tool(argv[0], argv[1:])
    if command_of(argv) in STAGES:  # the stage's own process entry, its options and --help included
        return stages.main(argv)
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=paths.PARAMS, help="params file (default: params.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in STAGES.items():
        commands.add_parser(name, help=help_text)  # listed here; harness.stages parses their arguments
    for name, (_, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
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
    try:
        return stages.run(args.params, lambda params: COMMANDS[args.command][0](params, args), gate_errors)
    except GateFailed:
        return 1


if __name__ == "__main__":
    sys.exit(main())
