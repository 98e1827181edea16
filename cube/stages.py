"""The training stages, in order: each one's name, what its model learns, and the stage it starts from.

Everything that lists the stages reads them here: the params sections (``train.<name>``), the pipeline's paths,
training and evaluation; ``tests/test_stages.py`` holds dvc.yaml's stages to the same list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingStage:
    name: str
    mode: str  # "autoencoder": reconstruct the clean input; "dialogue": question -> answer
    previous: str | None  # the stage whose best weights it starts from; None: a fresh model


AUTOENCODER, DIALOGUE, OPTIMIZED, ADVANCED = "autoencoder", "dialogue", "optimized", "advanced"  # each stage's name
TRAINING_STAGES: tuple[TrainingStage, ...] = (
    TrainingStage(AUTOENCODER, "autoencoder", None),
    TrainingStage(DIALOGUE, "dialogue", AUTOENCODER),
    TrainingStage(OPTIMIZED, "dialogue", DIALOGUE),
    TrainingStage(ADVANCED, "dialogue", OPTIMIZED),
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in TRAINING_STAGES)
BY_NAME = {stage.name: stage for stage in TRAINING_STAGES}
