"""The quality table's arithmetic and its plain-words verdicts, on hand-made scores (the pipeline test runs them on
real ones)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.judge.targets import QUALITY_TARGET, quality_misses
from harness.render.report import detectable_lines, target_lines
from harness.stages.evaluate import chosen_stage, compare, summarise
from harness.stats.paired import PairedDifference
from harness.store.results import BaselineScores, Scores, SeedRun, StageScores

MEASURES = ("cosine", "recall@1", "recall@5", "recall@10", "mrr", "hubness")
BASELINES = ("identity", "mean answer", "ridge", "procrustes", "linear (contrastive)", "mlp")


def scores(value: float) -> Scores:
    return Scores.model_validate(dict.fromkeys(MEASURES, value) | {"candidates": 100})


def stage(value: float, parameters: int = 10, no_change: bool = False) -> StageScores:
    return StageScores(test=scores(value), val=scores(value), parameters=parameters, best_epoch=1, no_change=no_change)


def run(cube: float, baseline: float) -> SeedRun:
    return SeedRun(stages={"dialogue": stage(0.1), "advanced": stage(cube, 5217, no_change=cube < 0.55)},
                   baselines={name: BaselineScores(test=scores(baseline), val=scores(baseline), parameters=10,
                                                   tuning="none") for name in BASELINES}, test_pairs={})


def test_summary_is_the_mean_and_sample_standard_deviation_over_seeds():
    summary = summarise({"0": run(0.5, 0.4), "1": run(0.6, 0.4), "2": run(0.7, 0.4)})
    assert summary.seeds == [0, 1, 2]
    cube = summary.models["cube: advanced"].test["mrr"]
    assert cube.mean == pytest.approx(0.6) and cube.std == pytest.approx(0.1)  # sample std: n - 1
    assert summary.models["ridge"].test["mrr"].mean == pytest.approx(0.4) and summary.models["ridge"].test["mrr"].std == 0
    assert summary.models["cube: advanced"].parameters == 5217
    assert summary.models["cube: advanced"].no_change_in == ["0"]
    assert chosen_stage(summary) == "advanced"


def test_one_seed_has_zero_spread():
    assert summarise({"0": run(0.5, 0.4)}).models["cube: advanced"].test["cosine"].std == 0.0


def per_pair(rows: dict[str, np.ndarray]) -> dict[str, dict[str, list[float]]]:
    return {name: {m: list(values) for m in ("cosine", "recall@1", "mrr")} for name, values in rows.items()}


def comparisons(cube_offset: dict[str, float], n: int = 300) -> dict[str, dict[str, PairedDifference]]:
    """Three seeds of per-pair scores: each baseline random, the cube that plus a fixed offset and noise."""
    rng = np.random.default_rng(0)
    seeds = {}
    for seed in ("0", "1", "2"):
        rows = {name: rng.random(n) for name in BASELINES}
        for name, offset in cube_offset.items():
            rows[f"cube: advanced vs {name}"] = rows[name] + offset + rng.normal(0, 0.02, n)
        seeds[seed] = rows
    result = {}
    for name in cube_offset:  # one comparison at a time: the cube's scores for this baseline
        pairs = {seed: per_pair({"cube: advanced": rows[f"cube: advanced vs {name}"], name: rows[name]})
                 for seed, rows in seeds.items()}
        result |= compare("advanced", pairs, [name])
    return result


def test_the_target_counts_only_significant_wins():
    found = comparisons({name: 0.2 for name in BASELINES})
    assert quality_misses(found) == []
    text = "\n".join(target_lines(found, "advanced", quality_misses(found), QUALITY_TARGET))
    assert "**The quality target is met**" in text and "worse** than: none" in text


def test_a_lead_inside_the_noise_is_no_win_and_a_loss_is_named():
    found = comparisons({"identity": 0.2, "mean answer": 0.2, "ridge": 0.0, "procrustes": 0.2,
                         "linear (contrastive)": 0.2, "mlp": -0.2})
    text = "\n".join(target_lines(found, "advanced", quality_misses(found), QUALITY_TARGET))
    assert "**The quality target is not met**" in text
    assert "recall@1 against ridge (no significant difference)" in text
    assert "mrr against mlp (worse)" in text
    assert "significantly **better** than: identity on recall@1" in text


def test_the_detectable_difference_line_names_the_test_pairs_and_the_pairs_a_002_difference_needs():
    found = comparisons({name: 0.0 for name in BASELINES})
    text = detectable_lines(found, 300, list(QUALITY_TARGET))[0]
    assert "With 300 test pairs" in text and "mrr differences of" in text and "recall@1 differences of" in text
    assert "Detecting a 0.02 MRR difference would take about" in text


def test_the_target_is_described_from_its_data():
    from cube.rivals import names
    from harness.judge.targets import describe_quality_target

    assert describe_quality_target(QUALITY_TARGET, names(in_tables_only=True)) == (
        "every baseline on recall@1 and MRR and than identity and ridge on cosine")
    assert describe_quality_target({"identity": ("mrr",), "mlp": ("mrr", "recall@1")}, ("identity", "mlp", "ridge")) == (
        "identity, mlp on MRR and than mlp on recall@1")
