"""One list of training stages: dvc.yaml, the params sections and the model's modes all agree with cube/stages.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from cube.config import TrainConfig
from cube.processor import Mode
from cube.stages import STAGE_NAMES, TRAINING_STAGES

ROOT = Path(__file__).resolve().parent.parent


def test_dvc_yaml_runs_the_registered_stages_each_from_its_previous_one():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    first, *rest = TRAINING_STAGES
    assert first.previous is None and stages[first.name]["cmd"] == f"python -m harness.stages train {first.name}"
    assert stages["train"]["foreach"] == {stage.name: stage.previous for stage in rest}
    assert stages["train"]["do"]["cmd"] == "python -m harness.stages train ${key}"
    assert "checkpoints/${item}" in stages["train"]["do"]["deps"]
    for stage in TRAINING_STAGES:  # evaluation reads every stage, and the seeds stage trains every stage
        assert f"checkpoints/{stage.name}" in stages["evaluate"]["deps"]
        assert f"train.{stage.name}" in stages["seeds"]["params"][0]["params.yaml"]


def test_params_sections_and_modes_follow_the_registry():
    assert tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name in STAGE_NAMES) == STAGE_NAMES
    names = [stage.name for stage in TRAINING_STAGES]
    for index, stage in enumerate(TRAINING_STAGES):
        Mode(stage.mode)  # a mode the model knows
        assert stage.previous is None or names.index(stage.previous) < index  # starts from an earlier stage
