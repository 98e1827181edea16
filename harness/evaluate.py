"""Final evaluation: every stage's best checkpoint and every baseline on the untouched test split."""

from __future__ import annotations

from typing import Any

import torch

from cube import atomic, baselines
from cube.checkpoint import load_checkpoint, load_model_weights
from cube.config import Params
from cube.dataset import load_embedded
from cube.device import choose_device, set_determinism
from cube.processor import EmbeddingProcessor, Mode
from cube.trainer import predict
from harness import paths


def evaluate_all(params: Params) -> dict[str, Any]:
    data = load_embedded(paths.EMBEDDED)
    set_determinism(params.train.deterministic)
    device = choose_device(params.train.device)
    result: dict[str, Any] = {"stages": {}, "baselines": {}, "test_pairs": len(data.test),
                              "test_candidates": len(data.test.candidates)}
    for stage in paths.STAGES:
        checkpoint = load_checkpoint(paths.checkpoint_dir(stage))
        mode = Mode.AUTOENCODER if stage == "autoencoder" else Mode.DIALOGUE
        model = EmbeddingProcessor(data.dim, params.cube, mode)
        load_model_weights(model, checkpoint, "best")
        model.to(device.device)
        result["stages"][stage] = {
            "test": data.test.score(predict(model, data.test.questions, device.device)),
            "val": data.val.score(predict(model, data.val.questions, device.device)),
            "parameters": model.parameter_count(),
            "best_epoch": checkpoint.meta["best_epoch"],
        }
    for baseline in baselines.fit_all(data, params.seed):
        with torch.no_grad():
            result["baselines"][baseline.name] = {
                "test": data.test.score(baseline.predict(data.test.questions)),
                "val": data.val.score(baseline.predict(data.val.questions)),
                "parameters": baseline.parameters,
                "note": baseline.note,
            }
    atomic.write_json(paths.EVALUATE_METRICS, result)
    return result
