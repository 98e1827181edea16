"""reports/tasks.md: one section per task, from each task's committed run: what it maps, its data, the quality
table, the paired verdicts of the chosen cube stage and what its test split can detect.

``python -m harness task-summary`` reads the default run's ``metrics/`` (the dialogue task) and every
``reports/<profile>/`` a task profile's run left (``python -m harness profile profiles/translation.yaml``), plus the
learning curve's ``reports/learning_curve/learning_curve.json`` when present. It computes nothing new: every figure
is one those runs wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TypeVar

from cube import atomic
from cube.measures import MRR
from cube.pairs import SPLITS
from cube.rivals import IDENTITY, LINEAR, MLP, PROCRUSTES, RIDGE
from cube.rivals import names as baseline_names
from cube.tasks import TASKS
from harness import paths
from harness.render.report import RECOMPUTES_ON, compared_measures, detectable_lines
from harness.render.tables import markdown_table
from harness.store.curves import LearningCurve
from harness.store.results import Bench, DataCardSummary, Evaluation, ProfileRun, cube_model, read_result

RUNS = {"dialogue (default run)": paths.REPO / "metrics", "translation": paths.REPO / "reports" / "translation",
        "translation, the cube's settings chosen by a validation sweep": paths.REPO / "reports" / "translation_tuned",
        "reverse dictionary": paths.REPO / "reports" / "reverse_dictionary"}
SWEEPS = {"translation_tuned": ("profiles/translation_tuned.yaml", "reports/translation/sweep.md")}
SHOWN = (IDENTITY, RIDGE, PROCRUSTES, LINEAR, MLP)  # the like-for-like rivals the issue of headroom is about


class StaleRun(ValueError):
    """A committed run written by an older pipeline than this page needs."""


V = TypeVar("V")


def in_order(results: dict[str, V], order: tuple[str, ...]) -> dict[str, V]:
    """``results`` in ``order``, the rest after it sorted: a committed run's JSON may have its keys sorted."""
    known = [k for k in order if k in results]
    return {k: results[k] for k in known + sorted(set(results) - set(known))}


def shown(path: Path) -> Path:
    """``path`` relative to the checkout where it is inside it."""
    return path.relative_to(paths.REPO) if path.is_relative_to(paths.REPO) else path


def share_of_gain(evaluation: Evaluation, rival: str = LINEAR, measure: str = "mrr") -> float | None:
    """(cube - identity) / (rival - identity) on the mean over seeds: how much of a rival's gain the cube captures."""
    models = evaluation.summary.models
    cube = models[cube_model(evaluation.chosen_stage)].test[measure].mean
    base, theirs = models[IDENTITY].test[measure].mean, models[rival].test[measure].mean
    return None if theirs == base else (cube - base) / (theirs - base)


def numerics_sentence(folder: Path) -> str:
    """Under which numerics, on which CPU, the run computed its figures (its bench's doctor), and where they hold."""
    cpu = read_result(folder / "bench.json", Bench).doctor.cpu
    if not cpu.numerics:
        return (" Computed before the numerics were recorded or pinned: its figures recompute to the bit only on a "
                "CPU of the kind that made them (docs/portability.md).")
    pins = f" ({', '.join(f'{name}={value}' for name, value in cpu.pins.items())})" if cpu.pins else ""
    return (f" Numerics `{cpu.numerics}`{pins} on an {cpu.model}: the figures recompute to the bit, at the revision "
            f"that made them (the report's first line), on {RECOMPUTES_ON[cpu.numerics]}.")


def read_card_summary(path: Path) -> DataCardSummary:
    """A run's ``data_card.json``; one written before the pipeline had tasks is a StaleRun naming what to re-run."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    if "task" not in raw:
        raise StaleRun(f"{shown(path)} predates tasks; re-run that pipeline (`make repro` or the profile)")
    return DataCardSummary.model_validate(raw)


def section(title: str, folder: Path) -> list[str]:
    evaluation = read_result(folder / "evaluate.json", Evaluation)
    card = read_card_summary(folder / "data_card.json")
    task = TASKS[card.task]
    run_file = folder / "profile_run.json"
    took = ""
    if run_file.exists():
        facts = ProfileRun.model_validate_json(run_file.read_text(encoding="utf-8"))
        took = (f" The whole run (`dvc repro`) took {facts.dvc_repro_wall_seconds / 60:.0f} min on {facts.cpu_count} "
                "cores.")
    stage, seeds = evaluation.chosen_stage, evaluation.summary.seeds
    numerics = numerics_sentence(folder)
    models = evaluation.summary.models
    cube_name = cube_model(stage)
    report = "reports/report.md" if folder.name == "metrics" else f"reports/{folder.name}/report.md"
    out = [f"## {title}", "",
           f"{task.question} -> {task.answer}; a split keeps whole {task.kept_whole}. Source: {card.source}; "
           f"{' / '.join(f'{card.pairs[split]:,}' for split in SPLITS)} {' / '.join(SPLITS)} pairs, "
           f"{evaluation.test_candidates:,} test candidates; seeds {', '.join(map(str, seeds))}.{took}{numerics} "
           f"Full report: `{report}`.", ""]
    if folder.name in SWEEPS:
        profile, sweep = SWEEPS[folder.name]
        out += [f"The cube's settings (`{profile}`) are the best on validation MRR in the sweep `{sweep}`, which "
                "never read the test split; the baselines keep the values tuned on the dialogue data.", ""]
    measures = [m for m in ("mrr", "recall@1", "cosine", "csls mrr", "csls recall@1") if m in models[cube_name].test]
    rows = [[name, *[f"{models[name].test[m].mean:.4f} ± {models[name].test[m].std:.4f}" for m in measures],
             models[name].parameters] for name in [cube_name, *[s for s in SHOWN if s in models]]]
    out += [markdown_table(["model (test, mean ± std over seeds)", *measures, "parameters"], rows), ""]
    comparisons = in_order(evaluation.comparisons, baseline_names())  # committed runs' files have sorted keys
    rows = []
    for name in [s for s in SHOWN if s in comparisons]:
        for measure in compared_measures(comparisons):
            d = comparisons[name][measure]
            rows.append([name, measure, f"{d.mean:+.4f}", d.interval(), d.shown_verdict(), f"{d.detectable:.4f}"])
    out += [f"Cube ({stage}, chosen on validation MRR) minus each baseline, paired over the test pairs and seeds:", "",
            markdown_table(["baseline", "measure", "cube - baseline", "95% interval", "verdict", "detectable"], rows), ""]
    share = share_of_gain(evaluation)
    gain = models[LINEAR].test[MRR].mean - models[IDENTITY].test[MRR].mean
    resolution = comparisons[IDENTITY][MRR].detectable if IDENTITY in comparisons else None
    if share is not None and resolution is not None and abs(gain) < resolution:
        out += [f"The contrastive linear map gains {gain:+.4f} MRR over identity, less than this split can detect "
                f"({resolution:.4f}): there is no gain to take a share of.", ""]
    elif share is not None:
        out += [f"The contrastive linear map gains {gain:+.4f} MRR over identity; the cube captures "
                f"{share:.0%} of that gain with {models[cube_name].parameters:,} parameters against the map's "
                f"{models[LINEAR].parameters:,}.", ""]
    out += detectable_lines(comparisons, evaluation.test_pairs, list(evaluation.target.required)) + [""]
    return out


def curve_section(path: Path) -> list[str]:
    curve = read_result(path, LearningCurve)
    rows = [[model, curve.parameters(model), *[f"{at.gain[MRR].mean:+.4f} [{at.gain[MRR].low:+.4f}, "
                                                f"{at.gain[MRR].high:+.4f}]" for at in points]]
            for model, points in curve.models.items()]
    return ["## Learning curve (translation)", "",
            f"Test MRR gain over identity ({curve.identity[MRR]:.4f}) against training pairs, "
            f"{curve.test_pairs:,} test pairs, seeds {', '.join(map(str, curve.seeds))}; "
            "details in `reports/learning_curve/learning_curve.md`.", "",
            "![learning curve](learning_curve/learning_curve.png)", "",
            markdown_table(["model", "parameters", *[f"{s:,} pairs" for s in curve.sizes]], rows), ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness task-summary", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=paths.REPO / "reports" / "tasks.md")
    args = parser.parse_args(argv)
    out = ["# Cube Bench: the tasks side by side", "",
           "Each section is one task's committed run (figures copied from its `evaluate.json`, none computed here; "
           "`python -m harness task-summary` rewrites this page). A verdict is **better** or **worse** only when the "
           "95% interval over test pairs and seeds excludes 0.", ""]
    missing = []
    for title, folder in RUNS.items():
        try:
            out += section(title, folder)
        except FileNotFoundError:
            missing.append(f"{title} (no run in {shown(folder)})")
        except StaleRun as why:
            missing.append(f"{title} ({why})")
    curve = paths.REPO / "reports" / "learning_curve" / "learning_curve.json"
    if curve.exists():
        out += curve_section(curve)
    if missing:
        out += ["Not run yet: " + ", ".join(missing) + "."]
    atomic.write_text(args.out, "\n".join(out) + "\n")
    print(f"task summary: {args.out}")
    return 0
