"""`python -m harness exp run`: every -S checked against the params schema before DVC runs, the workspace untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harness.__main__ import main
from harness.workflows.experiments import OverrideError, check_overrides, overrides, values

ROOT = Path(__file__).resolve().parent.parent


def test_the_overrides_of_a_dvc_command_line_are_found_in_every_spelling():
    argv = ["--queue", "-S", "cube.steps=5", "--set-param", "cube.hidden=16", "--set-param=seed=1", "-Sdata.task=x"]
    assert overrides(argv) == ["cube.steps=5", "cube.hidden=16", "seed=1", "data.task=x"]


def test_a_sweep_stands_for_each_of_its_values_and_a_list_stays_one():
    assert values("5,10,20") == [5, 10, 20]
    assert values("range(8, 40, 8)") == [8, 16, 24, 32]
    assert values("choice(walls, periodic)") == ["walls", "periodic"]
    assert values("[8, 8, 6]") == [[8, 8, 6]]


@pytest.mark.parametrize(("override", "message"), [
    ("cube.stepz=3", "unknown key 'stepz' in cube; did you mean 'steps'"),
    ("+cube.stepz=3", "did you mean 'steps'"),
    ("cube.steps=ten", "cube.steps must be a whole number"),
    ("cube.steps=5,0", "cube.steps = 0 is out of range"),
    ("data.task=translaton", "did you mean 'translation'"),
    ("cube.lattice=[8, 8, 5]", "384-d embedding does not fit lattice 8x8x5"),
    ("other.yaml:seed=1", "params live in params.yaml"),
])
def test_a_bad_override_is_refused_with_the_project_s_own_message(override, message):
    with pytest.raises(OverrideError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_overrides(ROOT / "params.yaml", [override])


def test_valid_overrides_pass():
    check_overrides(ROOT / "params.yaml", ["cube.steps=5,10,20", "cube.hidden=range(16, 48, 16)",
                                           "data.task=translation", "cube.lattice=[4, 8, 12]", "~seed",
                                           "params.yaml:cube.steps=3",
                                           "teacher.models=[{name: all-MiniLM-L6-v2, pooling: mean}]"])


def test_a_refused_override_runs_nothing_and_leaves_every_file_as_it_was(tmp_path, monkeypatch, capsys):
    for name in ("params.yaml", "dvc.yaml"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    monkeypatch.chdir(tmp_path)
    assert main(["exp", "run", "-S", "cube.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'steps'" in err and "nothing was run" in err
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()} == before
