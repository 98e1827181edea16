"""The training stages: each starts from the previous stage's best weights and logs through dvclive."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from cube import atomic
from cube.checkpoint import load_checkpoint, load_model_weights
from cube.config import Params
from cube.dataset import load_embedded
from cube.device import choose_device
from cube.processor import EmbeddingProcessor, Mode
from cube.trainer import CubeTrainer
from dvclive import Live
from harness import paths


def _fingerprint(params: Params, previous_sha: str | None) -> str:
    """What a resumable checkpoint must agree on besides the stage's own config."""
    card = (paths.EMBEDDED / "card.json").read_text(encoding="utf-8")
    identity = {"data_card": card, "previous": previous_sha, "train_device": params.train.device}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


def run_stage(params: Params, stage: str, progress: bool = True) -> dict[str, Any]:
    """Train one stage; writes its checkpoint, dvclive logs and ``metrics/train_<stage>.json``."""
    config = params.stage(stage)
    data = load_embedded(paths.EMBEDDED)
    device = choose_device(params.train.device)
    torch.manual_seed(params.seed)
    mode = Mode.AUTOENCODER if stage == "autoencoder" else Mode.DIALOGUE
    model = EmbeddingProcessor(data.dim, params.cube, mode)
    previous = paths.PREVIOUS_STAGE[stage]
    previous_sha = None
    if previous:
        checkpoint = load_checkpoint(paths.checkpoint_dir(previous))
        load_model_weights(model, checkpoint, "best")
        previous_sha = checkpoint.meta["sha256"]

    with Live(dir=str(paths.DVCLIVE / stage), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        def log_epoch(record: dict[str, Any]) -> None:
            for key, value in record.items():
                if key != "epoch":
                    live.log_metric(key, value)
            live.next_step()

        trainer = CubeTrainer(
            model, stage, config, data, seed=params.seed, device=device.device,
            checkpoint_dir=paths.checkpoint_dir(stage),
            fingerprint=_fingerprint(params, previous_sha), on_epoch=log_epoch, progress=progress,
        )
        result = trainer.fit()

    best = next((r for r in result.history if r["epoch"] == result.best_epoch), None)
    summary = {
        "stage": stage,
        "initialised_from": previous or "random",
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "monitor": result.monitor,
        "best_value": result.best_value,
        "final_train_loss": result.history[-1]["train_loss"] if result.history else None,
        "val": {k[4:]: v for k, v in (best or {}).items() if k.startswith("val/")},
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "wall_seconds": sum(r["seconds"] for r in result.history),
        "parameters": model.parameter_count(),
        "device": str(device.device),
        "device_reason": device.reason,
    }
    atomic.write_json(paths.train_metrics(stage), summary)
    return summary
