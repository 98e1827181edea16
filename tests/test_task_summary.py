"""reports/tasks.md: each task's committed run rendered from its own files, a stale one named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.render.task_summary import StaleRun, section

ROOT = Path(__file__).resolve().parent.parent
TRANSLATION = ROOT / "reports" / "translation"


@pytest.mark.skipif(not (TRANSLATION / "evaluate.json").exists(), reason="no committed translation run")
def test_a_task_section_has_its_verdicts_detectable_differences_and_share_of_the_linear_gain():
    text = "\n".join(section("translation", TRANSLATION))
    assert "| identity | mrr |" in text and "| linear (contrastive) | csls mrr |" in text
    assert "the cube captures" in text and "**What this evaluation can decide.**" in text


@pytest.mark.skipif(not (ROOT / "metrics" / "evaluate.json").exists(), reason="no default run in this checkout")
def test_no_share_of_a_gain_the_split_cannot_detect():
    """On the dialogue data the linear map is level with identity: a share of that difference would be noise."""
    text = "\n".join(section("dialogue", ROOT / "metrics"))
    assert "the cube captures" not in text and "there is no gain to take a share of" in text, text


def test_a_run_that_predates_tasks_is_named_not_rendered(tmp_path):
    folder = ROOT / "reports" / "translation"
    if not (folder / "evaluate.json").exists():
        pytest.skip("no committed translation run")
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    card = json.loads((old / "data_card.json").read_text(encoding="utf-8"))
    del card["task"]
    (old / "data_card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(StaleRun, match="predates tasks"):
        section("old", old)


@pytest.mark.skipif(not (TRANSLATION / "evaluate.json").exists(), reason="no committed translation run")
def test_a_section_says_under_which_numerics_its_figures_were_computed_and_where_they_recompute(tmp_path):
    text = "\n".join(section("translation", TRANSLATION))
    assert "Numerics `portable`" in text and "MKL_CBWR=COMPATIBLE" in text and "any x86-64 CPU with AVX2" in text
    old = tmp_path / "old"
    shutil.copytree(TRANSLATION, old)
    bench = json.loads((old / "bench.json").read_text(encoding="utf-8"))
    bench["doctor"]["cpu"] |= {"numerics": "", "pins": {}}  # as a bench written before the numerics were recorded
    (old / "bench.json").write_text(json.dumps(bench), encoding="utf-8")
    text = "\n".join(section("old", old))
    assert "Computed before the numerics were recorded" in text and "Numerics `" not in text
