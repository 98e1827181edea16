"""harness.profile: a missing profile is a clear error; a finished run's report, plots and metrics are kept whole."""

from __future__ import annotations

from pathlib import Path

from harness import profile


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


def test_a_used_keep_folder_is_refused_before_anything_is_copied(tmp_path, capsys):
    keep = tmp_path / "clone"
    keep.mkdir()
    (keep / "left.txt").write_text("from an earlier run", encoding="utf-8")
    assert profile.main([str(profile.ROOT / "profiles" / "chitchat.yaml"), "--keep", str(keep)]) == 2
    assert "is not empty" in capsys.readouterr().err and [p.name for p in keep.iterdir()] == ["left.txt"]


def test_results_are_kept_with_their_origin_and_replace_an_older_copy(tmp_path):
    clone = finished_clone(tmp_path / "clone")
    out = tmp_path / "reports" / "chitchat"
    out.mkdir(parents=True)
    (out / "stale.md").write_text("from an older run", encoding="utf-8")
    overlay = profile.ROOT / "profiles" / "chitchat.yaml"
    profile.keep_results(clone, out, overlay, "abc1234")
    assert sorted(p.name for p in out.iterdir()) == ["evaluate.json", "report.md", "test_quality.png"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.startswith("> Profile `profiles/chitchat.yaml`") and "revision abc1234" in report
    assert "# Cube Bench report" in report
    assert not out.with_name("chitchat.partial").exists()
