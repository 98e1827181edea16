"""harness.workflows.profile: a missing profile is a clear error; a finished run's report, plots and metrics are kept whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.config import params_from_dict
from harness.stages.check import check_lattice_fits_teacher
from harness.workflows import profile


def finished_clone(root: Path) -> Path:
    (root / "reports").mkdir(parents=True)
    (root / "metrics").mkdir()
    (root / "reports/report.md").write_text("# Cube Bench report\n", encoding="utf-8")
    (root / "reports/test_quality.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "reports/baseline.json").write_text("{}", encoding="utf-8")
    (root / "metrics/evaluate.json").write_text('{"summary": {}}', encoding="utf-8")
    return root


def test_a_missing_profile_names_the_file_and_where_profiles_are(tmp_path, capsys):
    assert profile.main([str(tmp_path / "nope.yaml")]) == 2
    error = capsys.readouterr().err
    assert "no profile file" in error and "nope.yaml" in error and "profiles" in error


def test_a_teacher_folder_not_installed_is_named_with_how_to_install_it(tmp_path, capsys):
    overlay = tmp_path / "other.yaml"
    overlay.write_text("teacher:\n  models:\n    - name: models/no-such-encoder\n", encoding="utf-8")
    assert profile.main([str(overlay), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "models/no-such-encoder" in error and "scripts/get-mpnet.sh" in error
    assert not (tmp_path / "out").exists()


def test_a_failing_pipeline_exits_non_zero_and_leaves_the_earlier_report(tmp_path, capsys):
    overlay = tmp_path / "broken.yaml"
    overlay.write_text("cube:\n  steps: 0\n", encoding="utf-8")  # refused by the pipeline's first stage, check
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("the earlier report", encoding="utf-8")
    assert profile.main([str(overlay), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "dvc repro exit" in error and "cube.steps = 0 is out of range" in error
    assert (out / "report.md").read_text(encoding="utf-8") == "the earlier report"


def test_a_used_keep_folder_is_refused_before_anything_is_copied(tmp_path, capsys):
    keep = tmp_path / "clone"
    keep.mkdir()
    (keep / "left.txt").write_text("from an earlier run", encoding="utf-8")
    assert profile.main([str(profile.ROOT / "profiles" / "chatterbot.yaml"), "--keep", str(keep)]) == 2
    assert "is not empty" in capsys.readouterr().err and [p.name for p in keep.iterdir()] == ["left.txt"]


def test_results_are_kept_with_their_origin_and_replace_an_older_copy(tmp_path):
    clone = finished_clone(tmp_path / "clone")
    out = tmp_path / "reports" / "chatterbot"
    out.mkdir(parents=True)
    (out / "stale.md").write_text("from an older run", encoding="utf-8")
    overlay = profile.ROOT / "profiles" / "chatterbot.yaml"
    profile.keep_results(clone, out, overlay, "abc1234", 754.0)
    assert sorted(p.name for p in out.iterdir()) == ["evaluate.json", "profile_run.json", "report.md",
                                                     "test_quality.png"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.startswith("> Profile `profiles/chatterbot.yaml`") and "revision abc1234" in report
    assert "took 13 min" in report
    run_facts = json.loads((out / "profile_run.json").read_text(encoding="utf-8"))
    assert run_facts["dvc_repro_wall_seconds"] == 754.0 and run_facts["revision"] == "abc1234"
    assert "# Cube Bench report" in report
    assert not out.with_name("chatterbot.partial").exists()


@pytest.mark.parametrize("overlay", sorted((profile.ROOT / "profiles").glob("*.yaml")), ids=lambda path: path.stem)
def test_every_committed_profile_laid_over_params_yaml_passes_check(overlay):
    """What `check` would refuse at the start of a profile's run is refused here first: keys, values, seeds and the
    lattice against the teacher's width (where that teacher is installed)."""
    base = yaml.safe_load((profile.ROOT / "params.yaml").read_text(encoding="utf-8"))
    merged = profile.merge(base, yaml.safe_load(overlay.read_text(encoding="utf-8")))
    params = params_from_dict(merged, source=str(overlay))
    if not profile.missing_local_teachers(overlay):  # an optional teacher not installed here has no width to read
        check_lattice_fits_teacher(params)
