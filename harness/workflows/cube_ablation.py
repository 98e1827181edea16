"""The cube's ceiling: designs of the cube, and probes of what limits it, on one task at one training size.

``python -m harness cube-ablation`` reads a plan (``plans/cube_ablation.yaml``): a task profile, the learning
curve's pool, split and training size, seeds, named cube designs (settings laid over params.yaml and the profile)
and probes (restricted linear maps, ``cube/probes.py``). Every design trains like the learning curve's cube: its
autoencoder stage on the training set's sentences (where a placement is computed too), then the contrastive stage
(``train.advanced``); probes and the contrastive linear map train with the linear map's tuned recipe; Procrustes is
fit in closed form. Every trained row runs under every seed. Each row gets the paired test-MRR difference against
identity, the default cube, the linear map and Procrustes (``harness/stats/paired.py``: intervals over test pairs
and seeds). The best design is the one with the highest mean validation MRR; test is read for scoring only.

Writes ``ablation.json``, ``ablation.md`` and ``ablation.png`` to ``--out`` (default ``reports/cube_ablation/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from cube import atomic, baselines, numerics, placement, probes, rivals
from cube.config import ConfigError, StageConfig
from cube.device import set_determinism
from cube.embedded import EmbeddedData, build_embedded_data
from cube.measures import MRR
from cube.processor import EmbeddingProcessor, Mode
from cube.stages import ADVANCED
from cube.trainer import CubeTrainer, predict
from harness.config import Params
from harness.stats import paired
from harness.stats.paired import PairedDifference
from harness.store.curves import Ablation, AblationRow, AblationRun
from harness.store.results import DataCard, write_result
from harness.workflows.learning_curve import curve_params, subset
from harness.workflows.plans import ABLATION_PLAN, read_plan_file
from harness.workflows.profile import ROOT

PLAN = ABLATION_PLAN
DEFAULT_DESIGN = "default"
MEASURE = MRR
PROBES = ("diagonal", "local reshape", "local coupling", "low rank 9")


@dataclass(frozen=True)
class Design:
    name: str
    note: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    task_profile: Path
    pool: int
    val: float
    test: float
    size: int
    seeds: list[int]
    designs: list[Design]
    probes: list[str]

    @classmethod
    def read(cls, path: Path) -> Plan:
        found = read_plan_file(path)
        designs = [Design(name, d.note, d.settings or {}) for name, d in found.designs.items()]
        if not designs or designs[0].name != DEFAULT_DESIGN or designs[0].settings:
            raise ValueError(f"{path}: the first design must be {DEFAULT_DESIGN!r} with no settings (the reference)")
        unknown = sorted(set(found.probes) - set(PROBES))
        if unknown:
            raise ValueError(f"{path}: unknown probes {unknown}; known: {list(PROBES)}")
        return cls(ROOT / found.task_profile, found.pool, found.val, found.test, found.size, found.seeds, designs,
                   found.probes)


@dataclass
class Run:
    """One trained (or fitted) model under one seed."""

    val_mrr: float
    test_mrr: float
    pairs: list[float]
    parameters: int
    seconds: float
    best_epoch: int = 0
    epochs_run: int = 0
    train_loss: list[float] = field(default_factory=list)


@dataclass
class Row:
    name: str
    kind: str  # design | probe | reference
    note: str
    runs: list[Run]
    comparisons: dict[str, PairedDifference] = field(default_factory=dict)  # against -> this row minus it

    @property
    def parameters(self) -> int:
        return self.runs[0].parameters

    @property
    def val_mrr(self) -> float:
        return statistics.fmean(r.val_mrr for r in self.runs)

    @property
    def test_mrr(self) -> float:
        return statistics.fmean(r.test_mrr for r in self.runs)

    @property
    def test_std(self) -> float:
        return statistics.stdev(r.test_mrr for r in self.runs) if len(self.runs) > 1 else 0.0

    @property
    def seconds(self) -> float:
        return statistics.fmean(r.seconds for r in self.runs)


def params_for(plan: Plan, settings: dict[str, Any]) -> Params:
    return curve_params(plan.task_profile, plan.pool, plan.val, plan.test, settings)


def scored(model_predict, data: EmbeddedData) -> tuple[float, float, list[float]]:
    with torch.no_grad():
        test, pairs = data.test.score_with_pairs(model_predict(data.test.questions))
        val = data.val.score(model_predict(data.val.questions))
    return val[MEASURE], test[MEASURE], pairs[MEASURE]


class CubeStarts:
    """Autoencoder starts, one per (cube settings, autoencoder settings, seed), shared by designs that agree."""

    def __init__(self, part: EmbeddedData) -> None:
        self.part, self.cache = part, {}

    def get(self, params: Params, seed: int) -> tuple[dict[str, torch.Tensor], float]:
        key = json.dumps([asdict(params.cube), asdict(params.train.autoencoder), seed], sort_keys=True, default=str)
        if key not in self.cache:
            began = time.perf_counter()
            torch.manual_seed(seed)
            model = EmbeddingProcessor(self.part.dim, params.cube, Mode.AUTOENCODER)
            model.place_dimensions(self.part.train.questions, self.part.train.answers)
            CubeTrainer(model, "autoencoder", params.train.autoencoder, self.part, seed=seed).fit()
            self.cache[key] = (model.state_dict(), time.perf_counter() - began)
        return self.cache[key]


def train_design(params: Params, data: EmbeddedData, part: EmbeddedData, seed: int, starts: CubeStarts) -> Run:
    start, start_seconds = starts.get(params, seed)
    began = time.perf_counter()
    torch.manual_seed(seed)
    model = EmbeddingProcessor(data.dim, params.cube, Mode.DIALOGUE)
    model.load_state_dict(start)
    return fit_and_score(model, params.train.advanced, data, part, seed, model.parameter_count(),
                         began - start_seconds)


def fit_and_score(model: torch.nn.Module, config: StageConfig, data: EmbeddedData, part: EmbeddedData, seed: int,
                  count: int, began: float) -> Run:
    """``model`` through the contrastive stage on ``part``, then scored on ``data``; seconds since ``began``."""
    result = CubeTrainer(model, ADVANCED, config, part, seed=seed).fit()
    model.cpu().eval()
    seconds = time.perf_counter() - began
    val, test, pairs = scored(lambda q: predict(model, q, torch.device("cpu")), data)
    return Run(val, test, pairs, count, seconds, result.best_epoch, result.epochs_run,
               result.train_losses)


def probe_model(name: str, part: EmbeddedData, params: Params, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    lattice = params.cube.lattice
    if name == "diagonal":
        return probes.diagonal(part.dim)
    if name == "local reshape":
        return probes.lattice_local(torch.arange(part.dim), lattice, name)
    if name == "local coupling":
        order = placement.compute("coupling", part.train.questions, part.train.answers, lattice)
        return probes.lattice_local(order, lattice, name)
    if name == "low rank 9":
        return probes.LowRankLinear(part.dim, 9)
    raise ValueError(f"unknown probe {name!r}")


def train_linear_like(model: torch.nn.Module, params: Params, data: EmbeddedData, part: EmbeddedData, seed: int,
                      count: int) -> Run:
    began = time.perf_counter()
    config = baselines.stage_configs(params.train, params.baselines.linear)[ADVANCED]
    torch.manual_seed(seed)
    return fit_and_score(model, config, data, part, seed, count, began)


def run(plan: Plan, only: list[str] | None = None) -> tuple[list[Row], EmbeddedData, EmbeddedData]:
    set_determinism(True)
    base = params_for(plan, {})
    data = build_embedded_data(base, progress=True)
    if plan.size > len(data.train):
        raise SystemExit(f"error: size {plan.size:,} is more than the {len(data.train):,} training pairs of the pool")
    part = subset(data, plan.size)
    starts = CubeStarts(part)
    rows: list[Row] = []

    def report(row: Row, seed: int, r: Run) -> None:
        print(f"{row.name:<24} seed {seed}: val MRR {r.val_mrr:.4f}  test MRR {r.test_mrr:.4f}  best epoch "
              f"{r.best_epoch}/{r.epochs_run}  ({r.seconds:.0f} s)", flush=True)

    identity = Row(rivals.IDENTITY, "reference", "pred = q", [Run(*scored(lambda q: q.clone(), data), 0, 0.0)])
    rows.append(identity)
    began = time.perf_counter()
    fitted = baselines.procrustes(part.train)
    rows.append(Row(rivals.PROCRUSTES, "reference", "orthogonal map, closed form",
                    [Run(*scored(fitted.predict, data), fitted.parameters, time.perf_counter() - began)]))
    linear = Row(rivals.LINEAR, "reference", "q W + b from W = I, its tuned recipe", [])
    for seed in plan.seeds:
        linear.runs.append(train_linear_like(baselines.LinearMap(data.dim), base, data, part, seed,
                                             data.dim * data.dim + data.dim))
        report(linear, seed, linear.runs[-1])
    rows.append(linear)
    for design in plan.designs:
        if only and design.name not in only and design.name != DEFAULT_DESIGN:
            continue
        params = params_for(plan, design.settings)
        row = Row(design.name, "design", design.note, [])
        for seed in plan.seeds:
            row.runs.append(train_design(params, data, part, seed, starts))
            report(row, seed, row.runs[-1])
        rows.append(row)
    for name in plan.probes:
        if only and name not in only:
            continue
        row = Row(name, "probe", PROBE_NOTES[name], [])
        for seed in plan.seeds:
            model = probe_model(name, part, base, seed)
            row.runs.append(train_linear_like(model, base, data, part, seed, model.free_parameters()))
            report(row, seed, row.runs[-1])
        rows.append(row)
    return rows, data, part


PROBE_NOTES = {
    "diagonal": "q + q diag(m) + b: each dimension on its own",
    "local reshape": "each dimension mixes its lattice neighbours', reshape order",
    "local coupling": "each dimension mixes its lattice neighbours', coupling placement",
    "low rank 9": "q + q U V + b, rank 9: the budget with no locality",
}


def compare(rows: list[Row], seeds: list[int]) -> None:
    """Every row's paired test-MRR difference against identity, the default cube, the linear map and Procrustes."""
    by_name = {row.name: row for row in rows}

    def per_seed(row: Row) -> list[list[float]]:
        return [r.pairs for r in row.runs] if len(row.runs) == len(seeds) else [row.runs[0].pairs] * len(seeds)

    for row in rows:
        for against in (rivals.IDENTITY, DEFAULT_DESIGN, rivals.LINEAR, rivals.PROCRUSTES):
            if against == row.name or against not in by_name:
                continue
            row.comparisons[against] = paired.paired_difference(per_seed(row), per_seed(by_name[against]), MEASURE)


def best_design(rows: list[Row]) -> Row:
    return max((r for r in rows if r.kind == "design"), key=lambda r: r.val_mrr)


def share_of_linear(row: Row, rows: list[Row]) -> float:
    linear = next(r for r in rows if r.name == rivals.LINEAR)
    return row.comparisons[rivals.IDENTITY].mean / linear.comparisons[rivals.IDENTITY].mean


def _interval(entry: PairedDifference) -> str:
    return f"{entry.mean:+.4f} [{entry.low:+.4f}, {entry.high:+.4f}] {entry.verdict}"


def render(rows: list[Row], plan: Plan, data: EmbeddedData, command: str, wall: float, findings: list[str]) -> str:
    best, card = best_design(rows), DataCard.model_validate(data.card)  # the cube's card, typed once here
    lines = [f"# The cube's ceiling: {card.task} ({card.source}) at {plan.size:,} training pairs", "",
             f"Written by `{command}` ({wall / 60:.0f} min on this machine). Test: {len(data.test):,} pairs ranked "
             f"among {len(data.test.candidates):,} distinct targets; validation {len(data.val):,} pairs; training: "
             f"the first {plan.size:,} of {len(data.train):,} training pairs (the learning curve's draw, split and "
             f"shuffle). Seeds {', '.join(map(str, plan.seeds))} for every trained row. Designs train like the "
             "learning curve's cube (autoencoder stage on the training sentences, then `train.advanced`); probes and "
             "the linear map with the linear map's tuned recipe. Differences are paired on test MRR with 95% "
             "intervals over pairs and seeds (`harness/stats/paired.py`). Share: the row's mean gain over identity "
             "divided by the linear map's.", "",
             f"Best design on validation: **{best.name}** (val MRR {best.val_mrr:.4f}).", "",
             "![test MRR gain over identity per row](ablation.png)", "",
             "| row | kind | parameters | val MRR | test MRR (mean ± std) | gain over identity [95%] | vs default cube "
             "| vs linear | vs Procrustes | share of linear's gain | best epoch / run | seconds per run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        c = row.comparisons
        epochs = ", ".join(f"{r.best_epoch}/{r.epochs_run}" for r in row.runs) if row.runs[0].epochs_run else ""
        share = f"{share_of_linear(row, rows):.0%}" if rivals.IDENTITY in c else ""
        lines.append(
            f"| {row.name} | {row.kind} | {row.parameters:,} | {row.val_mrr:.4f} | {row.test_mrr:.4f} ± "
            f"{row.test_std:.4f} | " + " | ".join(_interval(c[k]) if k in c else "" for k in
                                                   (rivals.IDENTITY, DEFAULT_DESIGN, rivals.LINEAR, rivals.PROCRUSTES))
            + f" | {share} | {epochs} | {row.seconds:.0f} |")
    lines += ["", "What each row is:", ""] + [f"- **{row.name}** ({row.kind}): {row.note}" for row in rows]
    lines += ["", "## What the diagnosis found", ""] + findings
    return "\n".join(lines) + "\n"


def findings_for(rows: list[Row], data: EmbeddedData, plan: Plan, part: EmbeddedData) -> list[str]:
    """Measured statements: placement affinity on lattice edges, whether training loss still falls, budget."""
    by_name = {row.name: row for row in rows}
    base = params_for(plan, {})
    out = []
    for kind in ("coupling", "correlation"):
        value = placement.affinity(kind, part.train.questions, part.train.answers)
        order = placement.compute(kind, part.train.questions, part.train.answers, base.cube.lattice)
        shuffled = torch.randperm(data.dim, generator=torch.Generator().manual_seed(0))
        out.append(f"- Mean {kind} affinity over the lattice's {len(placement.lattice_edges(base.cube.lattice)[0])} "
                   f"face edges (1 = the strongest pair): reshape order "
                   f"{placement.edge_score(torch.arange(data.dim), value, base.cube.lattice):.4f}, a random "
                   f"placement {placement.edge_score(shuffled, value, base.cube.lattice):.4f}, the computed placement "
                   f"{placement.edge_score(order, value, base.cube.lattice):.4f}.")
    default = by_name[DEFAULT_DESIGN]
    for r, seed in zip(default.runs, plan.seeds):
        loss = r.train_loss
        tail = f"{loss[-3]:.4f}, {loss[-2]:.4f}, {loss[-1]:.4f}" if len(loss) >= 3 else ", ".join(f"{x:.4f}" for x in loss)
        out.append(f"- Default cube, seed {seed}: kept epoch {r.best_epoch} of {r.epochs_run} run; training loss "
                   f"first epoch {loss[0]:.4f}, last three {tail}.")
    return out


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if rivals.IDENTITY in r.comparisons]
    colours = {"design": "tab:blue", "probe": "tab:orange", "reference": "tab:grey"}
    figure, axis = plt.subplots(figsize=(8, 0.35 * len(shown) + 1.5))
    for i, row in enumerate(shown):
        g = row.comparisons[rivals.IDENTITY]
        axis.errorbar(g.mean, i, xerr=[[g.mean - g.low], [g.high - g.mean]], fmt="o", capsize=3,
                      color=colours[row.kind])
    axis.set_yticks(range(len(shown)), [f"{r.name} ({r.parameters:,})" for r in shown], fontsize=8)
    axis.invert_yaxis()
    axis.axvline(0.0, color="black", linewidth=0.8)
    linear = next(r for r in shown if r.name == rivals.LINEAR).comparisons[rivals.IDENTITY].mean
    axis.axvline(0.8 * linear, color="tab:green", linestyle="--", linewidth=0.8, label="80% of the linear map's gain")
    axis.set(xlabel="test MRR minus identity (95% interval over pairs and seeds)")
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    atomic.write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness cube-ablation", description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path, nargs="?", default=PLAN, help="the plan (plans/cube_ablation.yaml)")
    parser.add_argument("--only", nargs="+", help="run these designs and probes (and the default and references)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the plan's seeds")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "cube_ablation")
    args = parser.parse_args(argv)
    if not args.plan.is_file():
        print(f"error: no plan file {args.plan}", file=sys.stderr)
        return 2
    try:
        plan = Plan.read(args.plan)
    except (ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.seeds:
        plan = Plan(**{**plan.__dict__, "seeds": args.seeds})
    if params_for(plan, {}).numerics != numerics.in_force():
        print("error: the plan's numerics differ from this process's (set numerics in params.yaml)", file=sys.stderr)
        return 2
    for design in plan.designs:  # every design's settings checked before hours of training, not when it comes up
        try:
            params_for(plan, design.settings)
        except ConfigError as err:
            print(f"error: {args.plan}, design {design.name!r}: {err}", file=sys.stderr)
            return 2
    began = time.perf_counter()
    rows, data, part = run(plan, args.only)
    compare(rows, plan.seeds)
    wall = time.perf_counter() - began
    command = "python -m harness cube-ablation" + (f" {args.plan}" if args.plan != PLAN else "") + (
        f" --only {' '.join(args.only)}" if args.only else "") + (
        f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds else "")
    findings = findings_for(rows, data, plan, part)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / "ablation.png")
    best = best_design(rows)
    write_result(args.out / "ablation.json", Ablation(
        command=command, wall_seconds=wall, size=plan.size, seeds=plan.seeds, test_pairs=len(data.test),
        best_design=best.name, rows=[AblationRow(
            name=r.name, kind=r.kind, note=r.note, parameters=r.parameters, val_mrr=r.val_mrr, test_mrr=r.test_mrr,
            test_std=r.test_std, seconds=r.seconds, comparisons=r.comparisons,
            runs=[AblationRun(**{k: v for k, v in asdict(run).items() if k != "pairs"}) for run in r.runs])
            for r in rows]), Ablation)  # per-pair scores stay out: the verdicts carry them
    atomic.write_text(args.out / "ablation.md", render(rows, plan, data, command, wall, findings))
    print(f"cube ablation: {args.out / 'ablation.md'} ({wall / 60:.1f} min)")
    return 0
