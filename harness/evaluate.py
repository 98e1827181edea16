"""Final evaluation: every stage's best checkpoint and every baseline on the untouched test split, under every seed.

The pipeline's own seed (its checkpoints under ``checkpoints/<stage>``) fills ``stages`` and ``baselines``, which the
gate and the per-stage report sections read. Each ``quality.extra_seeds`` chain (``checkpoints/seeds/seed<N>``) and
the baselines refit under that seed go to ``metrics/evaluate_seeds.json``; ``summary`` in ``metrics/evaluate.json``
holds the mean and sample standard deviation over all seeds.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from cube import atomic, baselines
from cube.checkpoint import load_checkpoint, load_model_weights
from cube.config import Params
from cube.dataset import EmbeddedData, load_embedded
from cube.device import choose_device, set_determinism
from cube.processor import EmbeddingProcessor, Mode
from cube.trainer import predict
from harness import paths

SUMMARISED = ("cosine", "recall@1", "recall@5", "recall@10", "mrr", "hubness")


def _stage_scores(params: Params, data: EmbeddedData, checkpoints: Path, device: torch.device) -> dict[str, Any]:
    scores = {}
    for stage in paths.STAGES:
        checkpoint = load_checkpoint(checkpoints / stage)
        mode = Mode.AUTOENCODER if stage == "autoencoder" else Mode.DIALOGUE
        model = EmbeddingProcessor(data.dim, params.cube, mode)
        load_model_weights(model, checkpoint, "best")
        model.to(device)
        scores[stage] = {
            "test": data.test.score(predict(model, data.test.questions, device)),
            "val": data.val.score(predict(model, data.val.questions, device)),
            "parameters": model.parameter_count(),
            "best_epoch": checkpoint.meta["best_epoch"],
        }
    return scores


def _baseline_scores(data: EmbeddedData, seed: int) -> dict[str, Any]:
    scores = {}
    for baseline in baselines.fit_all(data, seed):
        with torch.no_grad():
            scores[baseline.name] = {
                "test": data.test.score(baseline.predict(data.test.questions)),
                "val": data.val.score(baseline.predict(data.val.questions)),
                "parameters": baseline.parameters,
                "note": baseline.note,
            }
    return scores


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for one run) of every model's scores over the seeds' runs."""
    first = next(iter(runs.values()))
    models: dict[str, Any] = {}
    for group, prefix in (("stages", "cube: "), ("baselines", "")):
        for name in first[group]:
            entry: dict[str, Any] = {"group": group, "parameters": first[group][name]["parameters"]}
            for split in ("test", "val"):
                entry[split] = {}
                for measure in SUMMARISED:
                    values = [run[group][name][split][measure] for run in runs.values()]
                    entry[split][measure] = {"mean": statistics.fmean(values),
                                             "std": statistics.stdev(values) if len(values) > 1 else 0.0}
            models[prefix + name] = entry
    return {"seeds": [int(seed) for seed in runs], "models": models}


def evaluate_all(params: Params) -> dict[str, Any]:
    data = load_embedded(paths.EMBEDDED)
    set_determinism(params.train.deterministic)
    device = choose_device(params.train.device).device
    runs = {str(params.seed): {"stages": _stage_scores(params, data, paths.CHECKPOINTS, device),
                               "baselines": _baseline_scores(data, params.seed)}}
    for seed in params.quality.extra_seeds:
        folder = paths.seed_dir(seed)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing: quality.extra_seeds lists {seed}, but the `seeds` stage "
                                    "has not trained it; run `dvc repro` (or `python -m harness seeds`) first")
        runs[str(seed)] = {"stages": _stage_scores(params, data, folder, device),
                           "baselines": _baseline_scores(data, seed)}
    own = runs[str(params.seed)]
    result: dict[str, Any] = {"stages": own["stages"], "baselines": own["baselines"], "test_pairs": len(data.test),
                              "test_candidates": len(data.test.candidates), "summary": summarise(runs)}
    atomic.write_json(paths.EVALUATE_SEEDS, runs)
    atomic.write_json(paths.EVALUATE_METRICS, result)
    return result
