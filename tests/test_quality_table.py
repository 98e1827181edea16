"""The quality table's arithmetic and its plain-words verdict, on hand-made scores (the pipeline test runs them on
real ones)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.evaluate import summarise
from harness.report import _verdict

MEASURES = ("cosine", "recall@1", "recall@5", "recall@10", "mrr", "hubness")
BASELINES = ("identity", "mean answer", "ridge", "procrustes", "mlp")


def scores(value: float, parameters: int = 10) -> dict[str, Any]:
    return {"test": dict.fromkeys(MEASURES, value), "val": dict.fromkeys(MEASURES, value), "parameters": parameters}


def run(cube: float, baseline: float, mlp: float | None = None) -> dict[str, Any]:
    stages = {"dialogue": scores(cube, 5217)}
    found = {name: scores(baseline) for name in BASELINES}
    found["mlp"] = scores(baseline if mlp is None else mlp, 197248)
    return {"stages": stages, "baselines": found}


def test_summary_is_the_mean_and_sample_standard_deviation_over_seeds():
    summary = summarise({"0": run(0.5, 0.4), "1": run(0.6, 0.4), "2": run(0.7, 0.4)})
    assert summary["seeds"] == [0, 1, 2]
    cube = summary["models"]["cube: dialogue"]["test"]["mrr"]
    assert cube["mean"] == pytest.approx(0.6) and cube["std"] == pytest.approx(0.1)  # sample std: n - 1
    assert summary["models"]["ridge"]["test"]["mrr"] == {"mean": pytest.approx(0.4), "std": 0.0}
    assert summary["models"]["cube: dialogue"]["parameters"] == 5217


def test_one_seed_has_zero_spread():
    assert summarise({"0": run(0.5, 0.4)})["models"]["cube: dialogue"]["test"]["cosine"]["std"] == 0.0


def verdict(runs: dict[str, Any]) -> str:
    return "\n".join(_verdict(summarise(runs), runs))


def test_a_cube_ahead_of_every_baseline_meets_the_target_and_counts_its_seeds():
    text = verdict({"0": run(0.6, 0.4), "1": run(0.5, 0.4), "2": run(0.45, 0.4)})
    assert "**The quality target is met**" in text
    assert "against **ridge**, the cube beats it on recall@1" in text and "higher in 3 of 3 seeds" in text
    assert "the MLP has 197,248 (38x as many)" in text


def test_a_cube_behind_the_mlp_on_the_mean_says_so_even_when_it_wins_one_seed():
    text = verdict({"0": run(0.6, 0.4, mlp=0.5), "1": run(0.4, 0.4, mlp=0.7), "2": run(0.4, 0.4, mlp=0.7)})
    assert "**The quality target is not met**" in text
    assert "against **mlp**, the cube does not beat it on recall@1" in text and "higher in 1 of 3 seeds" in text
    assert "recall@1 against mlp, mrr against mlp" in text
