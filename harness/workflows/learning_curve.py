"""Quality against training pairs: the cube and the trainable baselines at growing training sets, on one test split.

``python -m harness learning-curve profiles/translation.yaml`` lays the profile over params.yaml, draws
``--pool`` pairs of its task (the data stage's own random draw and group-keeping split, with ``--val``/``--test``
fractions sized for at least 2,500 test pairs), and trains on the first N training pairs of one fixed shuffle for
every N in ``--sizes`` (nested sets), under every seed in ``--seeds``. Every trainable model gets one recipe, the
cube's contrastive stage (``train.advanced``: InfoNCE + cosine + diversity, AdamW, clipping, plateau schedule,
early stopping on validation MRR, epoch-0 fallback), the baselines with their tuned lr, weight decay and
temperature (``baselines``). The baselines start as the identity map; the cube reaches its identity-like start
through its autoencoder stage on the smallest set's sentences, so every size starts from the same cube. Ridge and
Procrustes are fit in closed form on the same pairs. Each figure is a paired difference against identity on the
test pairs (``harness/stats/paired.py``: the interval spans test pairs and seeds). ``--design NAME`` adds a design
of the cube from the cube ablation's plan (``plans/cube_ablation.yaml``: its settings laid over the profile) as one
more model, started and trained like the cube (so a placement it computes comes from the smallest set). Every
trained model's growth from the second-largest size to the largest is a paired difference too: does its gain still
grow with data?

Writes ``learning_curve.json``, ``learning_curve.md`` and ``learning_curve.png`` to ``--out``
(default ``reports/learning_curve/``); the test split is read for scoring only.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from cube import atomic, baselines, numerics, rivals
from cube.device import set_determinism
from cube.embedded import EmbeddedData, build_embedded_data, embed_split
from cube.measures import CSLS_MRR, MRR, RECALL_AT_1
from cube.pairs import unique_sentences
from cube.processor import EmbeddingProcessor, Mode
from cube.stages import ADVANCED
from cube.tasks import TASKS
from cube.trainer import CubeTrainer, predict
from harness.config import Params, params_from_dict
from harness.stats import paired
from harness.stats.paired import PairedDifference
from harness.store.curves import CurvePoint, LearningCurve
from harness.store.results import DataCard, MeanStd, write_result
from harness.workflows.plans import ABLATION_PLAN, read_plan_file
from harness.workflows.profile import ROOT, merge

CUBE = "cube"
TRAINED = (CUBE, rivals.LINEAR, rivals.MLP)
CLOSED_FORM = (rivals.RIDGE, rivals.PROCRUSTES)
MODELS = TRAINED + CLOSED_FORM
MEASURE = MRR  # what the cube is compared with each rival, and the gain over sizes, on


def curve_params(profile: Path, pool: int, val: float, test: float, settings: dict[str, Any] | None = None) -> Params:
    """params.yaml with the profile laid over it, the pool's size and split fractions, and a design's settings."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    merge(raw, yaml.safe_load(profile.read_text(encoding="utf-8")) or {})
    merge(raw, {"data": {"max_pairs": pool, "val_fraction": val, "test_fraction": test}})
    merge(raw, copy.deepcopy(settings or {}))
    return params_from_dict(raw, f"params.yaml + {profile.name}")


def subset(data: EmbeddedData, size: int) -> EmbeddedData:
    """``data`` with its first ``size`` training pairs (of a fixed shuffle) and their sentences for the autoencoder."""
    order = list(range(len(data.train)))
    random.Random(0).shuffle(order)
    pairs = [data.train.pairs[i] for i in order[:size]]
    lookup: dict[str, torch.Tensor] = {}
    for split in (data.train, data.val, data.test):
        for pair, question, answer in zip(split.pairs, split.questions, split.answers):
            lookup[pair.question], lookup[pair.answer] = question, answer
    sentences = torch.stack([lookup[s] for s in unique_sentences(pairs)])
    return replace(data, train=embed_split("train", pairs, lookup), sentences=sentences)


def identity_start(params: Params, data: EmbeddedData, seed: int) -> dict[str, torch.Tensor]:
    """The cube after its autoencoder stage on ``data``: the start every size trains from under ``seed``."""
    torch.manual_seed(seed)
    model = EmbeddingProcessor(data.dim, params.cube, Mode.AUTOENCODER)
    model.place_dimensions(data.train.questions, data.train.answers)
    CubeTrainer(model, "autoencoder", params.train.autoencoder, data, seed=seed).fit()
    return model.state_dict()


def design_name(design: str) -> str:
    return f"{CUBE}: {design}"


def train_model(name: str, params: Params, data: EmbeddedData, seed: int,
                cube_start: dict[str, torch.Tensor]) -> tuple[torch.nn.Module, int]:
    """One trainable model through the contrastive stage; its best epoch. ``params`` are the design's for a cube."""
    torch.manual_seed(seed)
    if name == CUBE or name.startswith(design_name("")):
        model: torch.nn.Module = EmbeddingProcessor(data.dim, params.cube, Mode.DIALOGUE)
        model.load_state_dict(cube_start)
        config = params.train.advanced
    else:
        tuned = params.baselines.linear if name == rivals.LINEAR else params.baselines.mlp
        model = (baselines.LinearMap(data.dim) if name == rivals.LINEAR
                 else baselines.ResidualMLP(data.dim, params.baselines.mlp.hidden))
        config = baselines.stage_configs(params.train, tuned)[ADVANCED]  # the tuned contrastive stage alone
    result = CubeTrainer(model, ADVANCED, config, data, seed=seed).fit()
    model.cpu().eval()
    return model, result.best_epoch


def closed_form(name: str, params: Params, data: EmbeddedData, seed: int) -> baselines.Baseline:
    """A closed-form baseline fitted on ``data`` as every run fits it (``cube/baselines.py`` ``FITS``)."""
    return baselines.FITS[name](baselines.FitInputs(data, seed, params.baselines, params.train))


@dataclass(frozen=True)
class ModelRun:
    """One model trained (or fitted) at one size under one seed."""

    test: dict[str, float]
    pairs: dict[str, list[float]]  # per-pair test scores by measure
    val_mrr: float
    parameters: int
    best_epoch: int
    seconds: float


@dataclass(frozen=True)
class CurveRuns:
    data: EmbeddedData
    identity_test: dict[str, float]
    identity_pairs: dict[str, list[float]]
    runs: dict[str, dict[int, dict[int, ModelRun]]]  # model -> size -> seed -> its run (closed forms: one seed)
    models: list[str]
    trained: list[str]


def run(params: Params, sizes: list[int], seeds: list[int], designs: dict[str, Params] | None = None) -> CurveRuns:
    """Every model at every size under every seed: per-pair test scores, validation MRR, epochs and seconds.

    ``designs``: more cubes, by model name, each with its own params (same data, split and recipe otherwise)."""
    designs = designs or {}
    models = [CUBE, *designs, *MODELS[1:]]
    cube_params = {CUBE: params} | designs
    set_determinism(True)
    csls = TASKS[params.data.task].csls
    data = build_embedded_data(params, progress=True)
    if max(sizes) > len(data.train):
        raise SystemExit(f"error: the largest size {max(sizes):,} is more than the {len(data.train):,} training "
                         "pairs of this pool; raise --pool or lower --sizes")
    cpu = torch.device("cpu")
    identity_test, identity_pairs = data.test.score_with_pairs(data.test.questions, csls)
    runs: dict[str, dict[int, dict[int, ModelRun]]] = {}
    smallest = subset(data, min(sizes))
    starts = {(name, seed): identity_start(p, smallest, seed) for name, p in cube_params.items() for seed in seeds}
    for size in sizes:
        part = subset(data, size)
        for model_name in models:
            trained = model_name in TRAINED or model_name in designs
            for seed in seeds if trained else seeds[:1]:
                began = time.perf_counter()
                if trained:
                    model, best_epoch = train_model(model_name, cube_params.get(model_name, params), part, seed,
                                                    starts.get((model_name, seed), {}))
                    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
                    predictor = lambda q, m=model: predict(m, q, cpu)  # noqa: E731
                else:
                    fitted = closed_form(model_name, params, part, seed)
                    predictor, count, best_epoch = fitted.predict, fitted.parameters, 0
                with torch.no_grad():
                    test, per_pair = data.test.score_with_pairs(predictor(data.test.questions), csls)
                    val = data.val.score(predictor(data.val.questions))
                seconds = time.perf_counter() - began
                runs.setdefault(model_name, {}).setdefault(size, {})[seed] = ModelRun(
                    test=test, pairs=per_pair, val_mrr=val[MRR], parameters=count, best_epoch=best_epoch,
                    seconds=seconds)
                print(f"{size:>6} pairs  {model_name:<22} seed {seed}: test MRR {test[MRR]:.4f}  "
                      f"val MRR {val[MRR]:.4f}  ({seconds:.0f} s)", flush=True)
    return CurveRuns(data, identity_test, identity_pairs, runs, models, [CUBE, *designs, *TRAINED[1:]])


def point(by_seed: dict[int, ModelRun], identity_pairs: dict[str, list[float]], measures: list[str]) -> CurvePoint:
    """One model at one size over its seeds: mean ± std, and the paired gain over identity per measure."""
    kept = list(by_seed.values())
    test, gain = {}, {}
    for measure in measures:
        values = [r.test[measure] for r in kept]
        test[measure] = MeanStd(mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else 0.0)
        ours = [r.pairs[measure] for r in kept]
        gain[measure] = paired.paired_difference(ours, [identity_pairs[measure]] * len(ours), measure)
    return CurvePoint(parameters=kept[0].parameters, seeds=list(by_seed), seconds=statistics.fmean(r.seconds for r in kept),
                      val_mrr=statistics.fmean(r.val_mrr for r in kept), test=test, gain=gain)


def summarise(result: CurveRuns, sizes: list[int], seeds: list[int], command: str, wall: float) -> LearningCurve:
    """Per model and size: mean ± std over seeds, the paired gain over identity, and the cube against each rival."""
    runs = result.runs
    measures = [m for m in ("mrr", "recall@1", "csls mrr", "csls recall@1") if m in result.identity_pairs]
    models = {name: [point(runs[name][size], result.identity_pairs, measures) for size in sizes]
              for name in result.models}

    def mrr_pairs(model: str, size: int, seed: int) -> list[float]:
        at_size = runs[model][size]
        return at_size[seed if seed in at_size else seeds[0]].pairs[MEASURE]  # a closed form: its one fit

    versus = {rival: [paired.paired_difference([mrr_pairs(CUBE, size, s) for s in seeds],
                                               [mrr_pairs(rival, size, s) for s in seeds], MEASURE) for size in sizes]
              for rival in result.models[1:]}
    growth = {}
    if len(sizes) > 1:
        small, large = sizes[-2:]
        growth = {name: paired.paired_difference([mrr_pairs(name, large, s) for s in seeds],
                                                 [mrr_pairs(name, small, s) for s in seeds], MEASURE)
                  for name in result.trained}
    data, card = result.data, DataCard.model_validate(result.data.card)  # the cube's card, typed once here
    return LearningCurve(command=command, wall_seconds=wall, task=card.task, source=card.source,
                         sizes=sizes, seeds=seeds, test_pairs=len(data.test), test_candidates=len(data.test.candidates),
                         val_pairs=len(data.val), train_pool=len(data.train), measures=measures,
                         identity={m: result.identity_test[m] for m in measures}, models=models, cube_versus=versus,
                         growth=growth)


def _interval(entry: PairedDifference) -> str:
    return f"{entry.mean:+.4f} [{entry.low:+.4f}, {entry.high:+.4f}]"


def render(curve: LearningCurve) -> str:
    sizes, seeds = curve.sizes, curve.seeds
    lines = [f"# Learning curve: {curve.task} ({curve.source})", "",
             f"Written by `{curve.command}` ({curve.wall_seconds / 60:.0f} min on this machine). Test: "
             f"{curve.test_pairs:,} pairs, each ranked among {curve.test_candidates:,} distinct targets; validation "
             f"{curve.val_pairs:,} pairs; training sets are the first N of {curve.train_pool:,} training pairs in one "
             f"fixed shuffle (nested). Seeds {', '.join(map(str, seeds))} for the trained models (initialisation and "
             "batch order); ridge and Procrustes are closed form (one fit). Every trained model gets the cube's "
             "contrastive stage recipe (`train.advanced`), the baselines with their tuned lr, weight decay and "
             "temperature; the cube starts from its autoencoder stage on the smallest set's sentences, the baselines "
             "from the identity map (its autoencoder start, trained once per seed, is not in the seconds below). "
             "Gains are paired differences against identity on the same test pairs with 95% intervals over pairs and "
             "seeds (`harness/stats/paired.py`).", "",
             f"Identity (no training): test MRR {curve.identity[MRR]:.4f}, recall@1 "
             f"{curve.identity[RECALL_AT_1]:.4f}"
             + (f", CSLS MRR {curve.identity[CSLS_MRR]:.4f}" if "csls mrr" in curve.identity else "")
             + ".", "", "![test MRR gain over identity against training pairs](learning_curve.png)", "",
             "| model | train pairs | test MRR (mean ± std) | gain over identity [95%] | verdict | val MRR | "
             "parameters | seconds per run |", "|---|---|---|---|---|---|---|---|"]
    for model_name, points in curve.models.items():
        for size, at in zip(sizes, points):
            gain, mrr = at.gain[MRR], at.test[MRR]
            lines.append(f"| {model_name} | {size:,} | {mrr.mean:.4f} ± {mrr.std:.4f} | {_interval(gain)} | "
                         f"{gain.verdict} | {at.val_mrr:.4f} | {at.parameters:,} | {at.seconds:.0f} |")
    if "csls mrr" in curve.measures:
        lines += ["", "With CSLS retrieval (the bilingual-lexicon benchmarks' ranking; models trained on plain "
                  "cosine ranking):", "", "| model | " + " | ".join(f"{s:,}" for s in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for model_name, points in curve.models.items():
            lines.append(f"| {model_name} | " + " | ".join(
                f"{at.test[CSLS_MRR].mean:.4f} ({_interval(at.gain[CSLS_MRR])})" for at in points) + " |")
    lines += ["", "The cube against each rival on test MRR (cube minus rival, 95% interval, verdict):", "",
              "| rival | " + " | ".join(f"{s:,} pairs" for s in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for rival, differences in curve.cube_versus.items():
        lines.append(f"| {rival} | " + " | ".join(f"{_interval(d)} {d.verdict}" for d in differences) + " |")
    if curve.growth:
        small, large = sizes[-2:]
        lines += ["", f"Does the gain still grow? Test MRR at {large:,} pairs minus at {small:,} (the same test pairs, "
                  "paired by seed; 95% interval, verdict):", "", "| model | growth | verdict |", "|---|---|---|"]
        lines += [f"| {name} | {_interval(d)} | {d.verdict} |" for name, d in curve.growth.items()]
    return "\n".join(lines) + "\n"


def plot(curve: LearningCurve, path: Path) -> None:
    """Test MRR gain over identity against training pairs (log axis), one line per model, 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    sizes = curve.sizes
    for offset, (model_name, points) in enumerate(curve.models.items()):
        gains = [at.gain[MRR] for at in points]
        xs = [s * (1 + 0.03 * (offset - 2)) for s in sizes]  # nudged apart so the bars do not overlap
        axis.errorbar(xs, [g.mean for g in gains], capsize=3, marker="o",
                      yerr=[[g.mean - g.low for g in gains], [g.high - g.mean for g in gains]],
                      label=f"{model_name} ({curve.parameters(model_name):,} params)")
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set(xscale="log", xlabel="training pairs", ylabel="test MRR minus identity (95% interval)",
             title=f"{curve.task}: identity MRR {curve.identity[MRR]:.3f}, "
                   f"{curve.test_pairs:,} test pairs, {len(curve.seeds)} seeds")
    axis.set_xticks(sizes, [f"{s:,}" for s in sizes])
    axis.minorticks_off()
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    atomic.write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness learning-curve", description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="the task's profile (profiles/translation.yaml)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000], help="training pairs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pool", type=int, default=14000, help="pairs drawn from the task (data.max_pairs)")
    parser.add_argument("--design", nargs="+", default=[],
                        help="designs of the cube from plans/cube_ablation.yaml to add as models")
    parser.add_argument("--val", type=float, default=0.05, help="validation fraction of the pool's groups")
    parser.add_argument("--test", type=float, default=0.19, help="test fraction of the pool's groups")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: the numerics' count, 2 when portable; another count adds "
                             "floats in another order, so only with numerics: native)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "learning_curve")
    args = parser.parse_args(argv)
    if not args.profile.is_file():
        print(f"error: no profile file {args.profile}; profiles are in {ROOT / 'profiles'}", file=sys.stderr)
        return 2
    if sorted(set(args.sizes)) != args.sizes or min(args.sizes) < 1:
        print(f"error: --sizes must be positive and increasing, got {args.sizes}", file=sys.stderr)
        return 2
    params = curve_params(args.profile, args.pool, args.val, args.test)
    plan = read_plan_file(ABLATION_PLAN).designs
    unknown = [name for name in args.design if name not in plan]
    if unknown:
        print(f"error: no design {unknown} in {ABLATION_PLAN}; designs: {', '.join(plan)}", file=sys.stderr)
        return 2
    designs = {design_name(name): curve_params(args.profile, args.pool, args.val, args.test,
                                               plan[name].settings or {}) for name in args.design}
    if params.numerics != numerics.in_force():
        print(f"error: {args.profile} asks for numerics {params.numerics}, and this process runs under "
              f"{numerics.in_force()} (from params.yaml); set numerics in params.yaml instead", file=sys.stderr)
        return 2
    if args.threads is not None:
        if params.numerics == "portable" and args.threads != numerics.PORTABLE_THREADS:
            print(f"error: --threads {args.threads} under portable numerics, which pin {numerics.PORTABLE_THREADS}: "
                  "the figures would not recompute elsewhere; leave --threads out or set numerics: native",
                  file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    command = ("python -m harness learning-curve " + str(args.profile) + " --sizes " + " ".join(map(str, args.sizes))
               + " --seeds " + " ".join(map(str, args.seeds)) + f" --pool {args.pool}"
               + (f" --val {args.val} --test {args.test}" if (args.val, args.test) != (0.05, 0.19) else "")
               + "".join(f" --design '{name}'" for name in args.design))
    began = time.perf_counter()
    runs = run(params, args.sizes, args.seeds, designs)
    curve = summarise(runs, args.sizes, args.seeds, command, time.perf_counter() - began)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(curve, args.out / "learning_curve.png")
    write_result(args.out / "learning_curve.json", curve, LearningCurve)
    atomic.write_text(args.out / "learning_curve.md", render(curve))
    wall = curve.wall_seconds
    print(f"learning curve: {args.out / 'learning_curve.md'} ({wall / 60:.1f} min)")
    return 0
