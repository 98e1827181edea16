"""A training stage's best checkpoint as evaluation uses it: a predictor with its parameter count and best epoch.

The one entry point from a checkpoint folder to predictions; scoring is ``EmbeddedSplit.score_with_pairs``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from cube.checkpoint import load_checkpoint, load_model_weights
from cube.config import CubeConfig
from cube.processor import EmbeddingProcessor, Mode
from cube.stages import BY_NAME
from cube.trainer import predict


@dataclass(frozen=True)
class StagePredictor:
    stage: str
    predict: Callable[[torch.Tensor], torch.Tensor]  # questions -> predicted answers (CPU, float32)
    parameters: int
    best_epoch: int  # 0: the stage never improved on the map it started from

    @property
    def no_change(self) -> bool:
        """The stage kept its starting map (a first stage has none to keep)."""
        return self.best_epoch == 0 and BY_NAME[self.stage].previous is not None


def load_stage(folder: Path, stage: str, dim: int, config: CubeConfig, device: torch.device) -> StagePredictor:
    """``stage``'s best weights from its checkpoint ``folder``, on ``device``."""
    checkpoint = load_checkpoint(folder)
    model = EmbeddingProcessor(dim, config, Mode(BY_NAME[stage].mode))
    load_model_weights(model, checkpoint, "best")
    model.to(device)
    return StagePredictor(stage, lambda questions: predict(model, questions, device), model.parameter_count(),
                          checkpoint.meta["best_epoch"])
