"""docs/layout.md's "where to change what", tried: a toy baseline added the way the table says (its name in
``cube/rivals.py``, its fit in ``cube/baselines.py``) is fitted, scored, compared with the chosen cube stage and
reported; a gated quality measure added the way it says (scored pair by pair, named in ``cube/measures.py``, its
tolerance in params.yaml) is recorded, judged and fails the gate when it falls; a task added the way it says is
split, embedded, scored and reported in its own words, with nothing else changed."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from cube import baselines, measures, metrics, pairs, rivals, tasks
from cube.stages import STAGE_NAMES
from harness.config import load_params, params_from_dict
from harness.judge.gate import OK, REGRESSION, run_gate
from harness.render.report import build_report
from harness.stages import evaluate
from harness.stages.datasets import run_datasets
from harness.stages.evaluate import evaluate_all
from harness.store.results import DataCardSummary

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


GATED = "recall@10"


def add_gated_measure(monkeypatch: pytest.MonkeyPatch, repo: Path) -> None:
    """recall@10 made a per-pair measure (``per_pair``, ``PER_PAIR``) and given a tolerance in the copy's params."""
    scored = metrics.per_pair

    def per_pair(*args, **kwargs):
        pairs = scored(*args, **kwargs)
        return pairs | {GATED: (pairs["ranks"] <= 10).double()}

    monkeypatch.setattr(metrics, "per_pair", per_pair)
    monkeypatch.setattr(measures, "PER_PAIR", (*measures.PER_PAIR, GATED))
    raw = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    raw["gate"]["quality_drops"][GATED] = 0.03
    raw["quality"]["extra_seeds"] = []  # the pipeline's own seed: enough to show it
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


@pytest.mark.slow
def test_a_gated_measure_added_as_the_layout_says_is_recorded_judged_and_fails_when_it_falls(tiny_run, tmp_path,
                                                                                              monkeypatch):
    repo = Path(shutil.copytree(tiny_run, tmp_path / "repo", symlinks=True))
    monkeypatch.chdir(repo)
    add_gated_measure(monkeypatch, repo)
    params = load_params("params.yaml")
    evaluate_all(params)
    run_gate(params, Path("baseline.json"), "tiny", update=True, remeasure=False)

    verdict = run_gate(params, Path("baseline.json"), "tiny", remeasure=False)
    gated = {check.metric: check.verdict for check in verdict.checks if check.metric.endswith(GATED)}
    assert gated == {f"{stage}.test.{GATED}": OK for stage in STAGE_NAMES}, gated

    # a fall in it: a fifth of the test predictions swapped with another pair's
    score = evaluate.score_or_refuse

    def swapped(split, pred, *args):
        if split.name == "test":
            rows = torch.randperm(len(pred), generator=torch.Generator().manual_seed(0))[: len(pred) // 5]
            pred = pred.clone()
            pred[rows] = pred[rows.roll(1)]
        return score(split, pred, *args)

    monkeypatch.setattr(evaluate, "score_or_refuse", swapped)
    evaluate_all(params)
    verdict = run_gate(params, Path("baseline.json"), "tiny", remeasure=False)
    fell = {check.metric: check for check in verdict.checks if check.metric.endswith(GATED)}
    assert fell[f"advanced.test.{GATED}"].verdict == REGRESSION, fell
    assert fell[f"advanced.test.{GATED}"].current < fell[f"advanced.test.{GATED}"].baseline
    assert not verdict.passed


PREVIOUS_TURN = tasks.Task("a conversational turn's reply", "the turn it replies to, among the split's distinct turns",
                           "every pair of one normalised reply")


def previous_turn_pairs(config) -> pairs.PairSet:
    """The dialogue's pairs the other way round: from a reply back to what it answered."""
    turns = pairs.dialogue_pairs(config)
    return dataclasses.replace(turns, pairs=[pairs.Pair(p.answer, p.question) for p in turns.pairs])


@pytest.mark.slow
def test_a_task_added_as_the_layout_says_is_split_embedded_scored_and_reported_in_its_words(tiny_run, tmp_path,
                                                                                            monkeypatch):
    repo = Path(shutil.copytree(tiny_run, tmp_path / "repo", symlinks=True))
    monkeypatch.chdir(repo)
    monkeypatch.setitem(tasks.TASKS, "previous_turn", PREVIOUS_TURN)
    monkeypatch.setitem(pairs.TASK_PAIRS, "previous_turn", previous_turn_pairs)
    raw = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    params = params_from_dict(raw | {"data": raw["data"] | {"task": "previous_turn"}, "quality": {"extra_seeds": []}})

    run_datasets(params)
    card = DataCardSummary.model_validate_json(Path("metrics/data_card.json").read_text(encoding="utf-8"))
    assert card.task == "previous_turn" and min(card.pairs.values()) > 0
    result = evaluate_all(params)  # the dialogue's checkpoints, scored on the new task's test split
    assert result.test_pairs > 0 and "advanced" in result.stages

    report = build_report(params).read_text(encoding="utf-8")
    assert f"{PREVIOUS_TURN.question} -> {PREVIOUS_TURN.answer}" in report
    assert PREVIOUS_TURN.kept_whole in report


def test_a_task_with_words_but_no_reader_or_a_reader_but_no_words_is_refused(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setitem(tasks.TASKS, "previous_turn", PREVIOUS_TURN)
        with pytest.raises(ValueError, match=r"lists task\(s\) \['previous_turn'\] that cube/pairs.py TASK_PAIRS"):
            pairs.load_pairs(params_from_dict({}).data)
    monkeypatch.setitem(pairs.TASK_PAIRS, "previous_turn", previous_turn_pairs)
    with pytest.raises(ValueError, match=r"TASK_PAIRS reads \['previous_turn'\] that TASKS does not list"):
        pairs.load_pairs(params_from_dict({}).data)


def test_a_task_the_registry_does_not_hold_is_refused_with_the_nearest_name():
    from cube.config import ConfigError

    with pytest.raises(ConfigError, match="data.task = 'previous_turn' is not a task; the tasks are 'dialogue'"):
        params_from_dict({"data": {"task": "previous_turn"}})
    with pytest.raises(ConfigError, match="did you mean 'translation'"):
        params_from_dict({"data": {"task": "translaton"}})
