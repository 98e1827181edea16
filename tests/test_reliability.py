"""The reliability stage counts what it ran: drills of both kinds, passes and failures, slow ones left to CI."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from harness import paths
from harness.config import Params, ReliabilityConfig
from harness.judge.gate import reliability_checks
from harness.stages.reliability import run_drills
from harness.store.results import Reliability, read_result

DRILLS = '''
import pytest

@pytest.mark.bad_input
@pytest.mark.parametrize("value", [1, 2, 3])
def test_refused(value):
    assert value > 0

@pytest.mark.bad_input
def test_not_refused():
    assert False, "a bad input that got through"

@pytest.mark.fault
def test_survived():
    pass

@pytest.mark.fault
@pytest.mark.slow
def test_nested_pipeline():
    pass

def test_unmarked():
    pass
'''


@pytest.fixture
def drill_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tests").mkdir()
    unique = "".join(c if c.isalnum() else "_" for c in tmp_path.name)  # pytest.main runs in this process: new module
    (tmp_path / "tests" / f"test_drills_{unique}.py").write_text(textwrap.dedent(DRILLS), encoding="utf-8")
    return tmp_path / "tests"


def with_reliability(params: Params, **values: bool) -> Params:
    return dataclasses.replace(params, reliability=ReliabilityConfig(**values))


def test_counts_passes_failures_and_what_is_left_to_make_test(drill_folder, params):
    result = run_drills(with_reliability(params), drill_folder)
    assert result.run and result.pytest_exit_code == 1
    assert result.bad_input.tried == 4 and result.bad_input.passed == 3
    assert [n.split("::")[-1] for n in result.bad_input.failed] == ["test_not_refused"]
    assert result.fault.tried == 1 and result.fault.passed == 1
    assert [n.split("::")[-1] for n in result.fault.left_to_make_test] == ["test_nested_pipeline"]
    assert read_result(paths.RELIABILITY_METRICS, Reliability) == result
    failing = [c.metric for c in reliability_checks() if c.failed]
    assert failing == ["reliability.bad_input.failed"]


def test_include_slow_runs_the_slow_drills_too(drill_folder, params):
    result = run_drills(with_reliability(params, include_slow=True), drill_folder)
    assert result.fault.tried == 2 and result.fault.left_to_make_test == []


def test_switched_off_says_why_and_the_gate_adds_no_check(drill_folder, params):
    result = run_drills(with_reliability(params, run=False), drill_folder)
    assert not result.run and result.reason == "reliability.run is false in params.yaml"
    assert reliability_checks() == []


def test_the_real_table_and_drills_are_marked():
    """The project's own drills carry the markers the stage selects by (the table alone has at least 30 rows)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent
    listed = subprocess.run([sys.executable, "-m", "pytest", str(root), "--collect-only", "-q", "-p", "no:cacheprovider",
                             "-m", "bad_input or fault"], capture_output=True, text=True, cwd=root.parent)
    ids = [line for line in listed.stdout.splitlines() if "::" in line]
    assert sum("test_bad_input_gets_a_clear_error" in i for i in ids) >= 30
    for drill in ("test_resume_after_a_kill", "test_nan_loss", "test_corrupted_cache", "test_killed_while_writing",
                  "test_sigkill_mid_stage", "test_two_queued_experiments"):
        assert any(drill in i for i in ids), drill
