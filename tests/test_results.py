"""Stage outputs are typed: written and read through one schema, refused when they do not match it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.store.results import SCHEMA_VERSION, Reliability, SchemaError, TrainSummary, read_result, write_result

SUMMARY = {"stage": "dialogue", "seed": 0, "initialised_from": "autoencoder", "epochs_run": 3, "best_epoch": 2,
           "monitor": "mrr", "best_value": 0.61, "final_train_loss": 0.4, "val": {"mrr": 0.61, "candidates": 122},
           "no_change": False, "stopped_early": False, "resumed_from_epoch": None, "wall_seconds": 1.5,
           "parameters": 5217, "device": "cpu", "device_reason": "auto", "world_size": 1}


def test_a_result_round_trips_unchanged_with_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "train_dialogue.json"
    written = write_result(path, SUMMARY, TrainSummary)
    assert json.loads(path.read_text()) == SUMMARY | {"schema_version": SCHEMA_VERSION}  # ints stay ints
    assert read_result(path, TrainSummary) == written and written.best_epoch == 2 and written.val["candidates"] == 122


def test_a_missing_or_misspelt_figure_is_refused_when_written_and_nothing_is_left(tmp_path: Path) -> None:
    path = tmp_path / "train_dialogue.json"
    with pytest.raises(SchemaError, match="best_epoch"):
        write_result(path, {k: v for k, v in SUMMARY.items() if k != "best_epoch"}, TrainSummary)
    with pytest.raises(SchemaError, match="best_epok"):
        write_result(path, SUMMARY | {"best_epok": 2}, TrainSummary)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_a_file_of_another_schema_version_or_missing_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "reliability.json"
    path.write_text(json.dumps({"run": False, "reason": "off", "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(SchemaError, match="run the stage that writes it again"):
        read_result(path, Reliability)
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        read_result(tmp_path / "nope.json", Reliability)
