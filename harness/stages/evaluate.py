"""Final evaluation: every stage's best checkpoint and every baseline on the untouched test split, under every seed.

The pipeline's own seed (its checkpoints under ``checkpoints/<stage>``) fills ``stages`` and ``baselines``, which the
gate and the per-stage report sections read. Each ``quality.extra_seeds`` chain (``checkpoints/seeds/seed<N>``) and
the baselines refit under that seed go to ``metrics/evaluate_seeds.json``, with every model's per-pair test scores;
``summary`` in ``metrics/evaluate.json`` holds the mean and sample standard deviation over all seeds, and
``comparisons`` the paired differences of the stage chosen on mean validation MRR against each baseline.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import torch

from cube import atomic, baselines, rivals
from cube.device import choose_device, set_determinism
from cube.embedded import EmbeddedData, EmbeddedSplit
from cube.evaluation import load_stage
from cube.measures import COSINE, CSLS_PER_PAIR, MRR, RECALL_AT_1, SUMMARISED
from cube.metrics import NonFinitePredictions
from cube.tasks import TASKS
from harness import paths
from harness.config import Params
from harness.judge.targets import QUALITY_TARGET, quality_misses
from harness.stats import paired
from harness.store.embedded import embedded_for
from harness.store.results import (
    CUBE_PREFIX,
    BaselineScores,
    Evaluation,
    MeanStd,
    ModelSummary,
    QualityHeadline,
    Scores,
    SeedRun,
    SeedSummary,
    StageScores,
    Target,
    cube_model,
    write_result,
)


class PredictionError(ValueError):
    """A model's predictions cannot be scored (non-finite); names the model, the stage and the seed."""


def score_or_refuse(split: EmbeddedSplit, pred: torch.Tensor, model: str, seed: int,
                    csls: bool = False) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The split's scores and per-pair scores of ``pred``; non-finite predictions are refused naming the model."""
    try:
        return split.score_with_pairs(pred, csls)
    except NonFinitePredictions as err:
        raise PredictionError(f"evaluate: {model} under seed {seed} on the {split.name} split: {err}") from None


def _stage_scores(params: Params, data: EmbeddedData, checkpoints: Path, device: torch.device, seed: int,
                  pairs: dict[str, Any]) -> dict[str, StageScores]:
    scores, csls = {}, TASKS[params.data.task].csls
    for stage in paths.STAGES:
        model = load_stage(checkpoints / stage, stage, data.dim, params.cube, device)
        name = f"stage {stage!r} ({checkpoints / stage})"
        predicted = model.predict(data.test.questions)
        test, pairs[cube_model(stage)] = score_or_refuse(data.test, predicted, name, seed, csls)
        val = score_or_refuse(data.val, model.predict(data.val.questions), name, seed, csls)[0]
        scores[stage] = StageScores(test=Scores.model_validate(test), val=Scores.model_validate(val),
                                    parameters=model.parameters, best_epoch=model.best_epoch,
                                    no_change=model.no_change)
    return scores


def _baseline_scores(params: Params, data: EmbeddedData, seed: int, device: torch.device,
                     pairs: dict[str, Any]) -> dict[str, BaselineScores]:
    scores, csls = {}, TASKS[params.data.task].csls
    for baseline in baselines.fit_all(data, seed, params.baselines, params.train, device):
        with torch.no_grad():
            name = f"baseline {baseline.name!r}"
            test, pairs[baseline.name] = score_or_refuse(data.test, baseline.predict(data.test.questions), name, seed,
                                                         csls)
            val = score_or_refuse(data.val, baseline.predict(data.val.questions), name, seed, csls)[0]
            scores[baseline.name] = BaselineScores(test=Scores.model_validate(test), val=Scores.model_validate(val),
                                                   parameters=baseline.parameters, note=baseline.note,
                                                   tuning=baseline.tuning, stages=baseline.stages)
    return scores


def summarise(runs: dict[str, SeedRun]) -> SeedSummary:
    """Mean and sample standard deviation (0 for one run) of every model's scores over the seeds' runs."""
    first = next(iter(runs.values()))
    any_model = next(iter(first.stages.values()))
    measures = SUMMARISED + tuple(m for m in CSLS_PER_PAIR if any_model.test.measure(m) is not None)

    def spread(scores: list[Scores]) -> dict[str, MeanStd]:
        found = {}
        for measure in measures:
            values = [s.measure(measure) for s in scores]
            found[measure] = MeanStd(mean=statistics.fmean(values),
                                     std=statistics.stdev(values) if len(values) > 1 else 0.0)
        return found

    models: dict[str, ModelSummary] = {}
    for name, stage in first.stages.items():
        over_seeds = [run.stages[name] for run in runs.values()]
        models[cube_model(name)] = ModelSummary(
            group="stages", parameters=stage.parameters, test=spread([s.test for s in over_seeds]),
            val=spread([s.val for s in over_seeds]),
            no_change_in=[seed for seed, run in runs.items() if run.stages[name].no_change])
    for name, baseline in first.baselines.items():
        over_seeds = [run.baselines[name] for run in runs.values()]
        models[name] = ModelSummary(group="baselines", parameters=baseline.parameters, tuning=baseline.tuning,
                                    test=spread([s.test for s in over_seeds]), val=spread([s.val for s in over_seeds]))
    return SeedSummary(seeds=[int(seed) for seed in runs], models=models)


def chosen_stage(summary: SeedSummary) -> str:
    """The cube stage with the best mean validation MRR: the one compared with the baselines."""
    stages = {name: entry for name, entry in summary.models.items() if entry.group == "stages"}
    return max(stages, key=lambda name: stages[name].val[MRR].mean).removeprefix(CUBE_PREFIX)


def compare(stage: str, pair_scores: dict[str, dict[str, Any]], baseline_names: list[str],
            shared_pairs: bool = True) -> dict[str, dict[str, paired.PairedDifference]]:
    """Paired differences (cube stage minus baseline) on every per-pair measure, over every seed's test pairs."""
    seeds = list(pair_scores)
    measures = list(pair_scores[seeds[0]][cube_model(stage)])
    comparisons: dict[str, dict[str, paired.PairedDifference]] = {}
    for name in baseline_names:
        comparisons[name] = {}
        for measure in measures:
            ours = [pair_scores[seed][cube_model(stage)][measure] for seed in seeds]
            theirs = [pair_scores[seed][name][measure] for seed in seeds]
            comparisons[name][measure] = paired.paired_difference(ours, theirs, measure, shared_pairs=shared_pairs)
    return comparisons


def write_headline(summary: SeedSummary, stage: str,
                   comparisons: dict[str, dict[str, paired.PairedDifference]]) -> None:
    """``metrics/quality.json``, the only quality file DVC reads as metrics: numbers, no text."""
    cube = summary.models[cube_model(stage)]
    headline = QualityHeadline.model_validate({
        "val_mrr": cube.val[MRR].mean, "test_mrr": cube.test[MRR].mean,
        "test_recall@1": cube.test[RECALL_AT_1].mean, "test_cosine": cube.test[COSINE].mean,
        "mrr_minus_identity": comparisons[rivals.IDENTITY][MRR].mean,
        "mrr_minus_linear": comparisons[rivals.LINEAR][MRR].mean, "seeds": len(summary.seeds)})
    atomic.write_json(paths.QUALITY_HEADLINE, headline.model_dump(mode="json", by_alias=True))


def evaluate_all(params: Params) -> Evaluation:
    set_determinism(params.train.deterministic)
    device = choose_device(params.train.device).device
    folders = {params.seed: paths.CHECKPOINTS}
    for seed in params.quality.extra_seeds:
        folders[seed] = paths.seed_dir(seed)
        if not folders[seed].is_dir():
            raise FileNotFoundError(f"{folders[seed]} is missing: quality.extra_seeds lists {seed}, but the `seeds` "
                                    "stage has not trained it; run `dvc repro` (or `python -m harness seeds`) first")
    runs: dict[str, SeedRun] = {}
    sizes = {}
    for seed, folder in folders.items():
        data = embedded_for(params, seed)
        sizes[seed] = (len(data.test), len(data.test.candidates))
        pairs: dict[str, Any] = {}
        stages = _stage_scores(params, data, folder, device, seed, pairs)
        runs[str(seed)] = SeedRun(stages=stages, baselines=_baseline_scores(params, data, seed, device, pairs),
                                  test_pairs=pairs)
    own = runs[str(params.seed)]
    summary = summarise(runs)
    stage = chosen_stage(summary)
    comparisons = compare(stage, {seed: run.test_pairs for seed, run in runs.items()}, list(own.baselines),
                          shared_pairs=not params.quality.resplit)
    result = Evaluation(stages=own.stages, baselines=own.baselines, test_pairs=sizes[params.seed][0],
                        test_candidates=sizes[params.seed][1], resplit=params.quality.resplit, summary=summary,
                        chosen_stage=stage, comparisons=comparisons,
                        target=Target(required=QUALITY_TARGET, missed=quality_misses(comparisons)))
    write_headline(summary, stage, comparisons)
    # every model's per-pair scores under every seed: hundreds of thousands of numbers, so one line, not indented
    seed_runs = {seed: run.model_dump(mode="json", by_alias=True, exclude_unset=True) for seed, run in runs.items()}
    atomic.write_text(paths.EVALUATE_SEEDS, json.dumps(seed_runs, separators=(",", ":"), sort_keys=True) + "\n")
    return write_result(paths.EVALUATE_METRICS, result, Evaluation)
