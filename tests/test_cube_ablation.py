"""The cube ablation's plan, its choice of the best design (validation only) and its verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cube import rivals
from harness.workflows.cube_ablation import (
    DEFAULT_DESIGN,
    PLAN,
    Plan,
    Row,
    Run,
    best_design,
    compare,
    main,
    params_for,
    share_of_linear,
)


def test_every_design_of_the_committed_plan_is_valid_params():
    plan = Plan.read(PLAN)
    assert plan.designs[0].name == DEFAULT_DESIGN and len(plan.seeds) >= 3
    for design in plan.designs:
        params = params_for(plan, design.settings)  # the schema refuses a misspelt or out-of-range setting
        assert params.data.task == "translation" and params.data.max_pairs == plan.pool


def write_plan(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(PLAN.read_text()) | changes
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_plan_must_start_with_the_unchanged_default_and_name_known_probes(tmp_path):
    with pytest.raises(ValueError, match="first design must be 'default'"):
        Plan.read(write_plan(tmp_path, designs={"periodic": {"settings": {"cube": {"boundary": "periodic"}}}}))
    with pytest.raises(ValueError, match="unknown probes"):
        Plan.read(write_plan(tmp_path, probes=["diagonal", "full rank"]))
    with pytest.raises(ValueError, match="exactly the keys"):
        Plan.read(write_plan(tmp_path, sizes=[1000]))


def rows(shift: float, val_of_other: float) -> list[Row]:
    pairs = 400

    def row(name: str, kind: str, level: float, val: float, seeds: int = 3) -> Row:
        runs = [Run(val, level, [level + 0.001 * ((i * 7 + s) % 5) for i in range(pairs)], 10, 1.0)
                for s in range(seeds)]
        return Row(name, kind, "", runs)

    return [row("identity", "reference", 0.20, 0.2, seeds=1), row(rivals.LINEAR, "reference", 0.24, 0.25),
            row(DEFAULT_DESIGN, "design", 0.21, 0.22), row("other", "design", 0.21 + shift, val_of_other)]


def test_the_best_design_is_chosen_on_validation_and_its_share_is_gain_over_gain():
    table = rows(shift=0.02, val_of_other=0.21)  # better on test, worse on validation: not chosen
    compare(table, [0, 1, 2])
    assert best_design(table).name == DEFAULT_DESIGN
    other = table[-1]
    assert other.comparisons[DEFAULT_DESIGN].verdict == "better"
    assert other.comparisons[rivals.LINEAR].verdict == "worse"
    assert share_of_linear(other, table) == pytest.approx((0.23 - 0.20) / (0.24 - 0.20))


def test_a_design_equal_to_the_default_gets_no_verdict_of_better():
    table = rows(shift=0.0, val_of_other=0.23)
    compare(table, [0, 1, 2])
    assert best_design(table).name == "other"
    assert table[-1].comparisons[DEFAULT_DESIGN].verdict == "no significant difference"


def test_a_misspelt_design_setting_stops_the_run_before_any_training(tmp_path, capsys):
    designs = {"default": {"settings": {}}, "spiral": {"settings": {"cube": {"placement": "spiral"}}}}
    out = tmp_path / "out"
    assert main([str(write_plan(tmp_path, designs=designs)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "design 'spiral'" in err and "cube.placement" in err
    assert not out.exists()
