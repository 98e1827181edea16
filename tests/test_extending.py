"""docs/layout.md's "where to change what", tried: a toy baseline added the way the table says (its name in
``cube/rivals.py``, its fit in ``cube/baselines.py``) is fitted, scored, compared with the chosen cube stage and
reported, with nothing else changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cube import baselines, rivals
from harness.config import params_from_dict
from harness.render.report import build_report
from harness.stages.evaluate import evaluate_all

TOY = "toy: half the question"


def half_the_question(_: baselines.FitInputs) -> baselines.Baseline:
    return baselines.Baseline(TOY, lambda q: 0.5 * q, 0, "0.5 q: the identity's ranking at half the length")


def add_toy(monkeypatch: pytest.MonkeyPatch, fit=half_the_question, listed: bool = True) -> None:
    if listed:
        monkeypatch.setattr(rivals, "RIVALS", (*rivals.RIVALS, rivals.Rival(TOY)))
    monkeypatch.setitem(baselines.FITS, TOY, fit)


def test_a_toy_baseline_added_as_the_layout_says_is_evaluated_compared_and_reported(tiny_run, tmp_path, monkeypatch):
    repo = Path(shutil.copytree(tiny_run, tmp_path / "repo", symlinks=True))
    monkeypatch.chdir(repo)
    add_toy(monkeypatch)
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    params = params_from_dict(raw | {"quality": {"extra_seeds": []}})  # the pipeline's own seed: enough to show it

    result = evaluate_all(params)
    assert TOY in result.baselines and TOY in result.summary.models
    # cosine ranks 0.5 q exactly as it ranks q: its paired differences are the identity's
    for measure in ("recall@1", "mrr"):
        assert result.comparisons[TOY][measure].mean == pytest.approx(result.comparisons["identity"][measure].mean,
                                                                      abs=1e-12)
    assert TOY in json.loads(Path("metrics/evaluate.json").read_text(encoding="utf-8"))["comparisons"]

    report = build_report(params).read_text(encoding="utf-8")
    rows = [line for line in report.splitlines() if line.startswith(f"| {TOY} |")]
    assert len(rows) >= 3, "the toy is in the quality table, the paired differences and the baselines' tuning table"


def test_a_baseline_listed_without_a_fit_or_fitted_without_a_listing_is_refused(monkeypatch):
    """Refused before anything is fitted: no data is needed to see it."""
    with monkeypatch.context() as patch:
        patch.setattr(rivals, "RIVALS", (*rivals.RIVALS, rivals.Rival(TOY)))
        with pytest.raises(ValueError, match=r"lists the baseline\(s\) \['toy: half the question'\], which cube/baselines.py"):
            baselines.fit_all(None, 0, None, None)
    add_toy(monkeypatch, listed=False)
    with pytest.raises(ValueError, match=r"fits \['toy: half the question'\], which cube/rivals.py does not list"):
        baselines.fit_all(None, 0, None, None)


def test_a_fit_that_names_its_baseline_otherwise_is_refused(monkeypatch):
    add_toy(monkeypatch, fit=lambda _: baselines.identity())
    monkeypatch.setattr(rivals, "RIVALS", (rivals.Rival(TOY),))
    monkeypatch.setattr(baselines, "FITS", {TOY: lambda _: baselines.identity()})
    with pytest.raises(ValueError, match="the fit of baseline 'toy: half the question' returned one named 'identity'"):
        baselines.fit_all(None, 0, None, None)
