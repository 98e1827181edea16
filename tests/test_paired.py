"""The paired-difference verdicts on hand-made per-pair scores whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.stats.paired import BETTER, NO_DIFFERENCE, WORSE, NonFiniteScores, paired_difference, pairs_needed


def scores(n: int = 200, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def test_a_clear_win_is_better():
    theirs = scores()
    ours = theirs + 0.1 + np.random.default_rng(1).normal(0, 0.05, len(theirs))
    result = paired_difference([ours], [theirs], "mrr")
    assert result.verdict == BETTER and 0.09 < result.mean < 0.11 and result.low > 0


def test_a_clear_loss_is_worse():
    theirs = scores()
    ours = theirs - 0.1 + np.random.default_rng(2).normal(0, 0.05, len(theirs))
    assert paired_difference([ours], [theirs], "mrr").verdict == WORSE


def test_a_tie_is_no_significant_difference():
    theirs = scores()
    swing = np.where(np.arange(len(theirs)) % 2 == 0, 0.2, -0.2)  # wins and losses of equal size, mean exactly 0
    result = paired_difference([theirs + swing], [theirs], "recall@1")
    assert result.verdict == NO_DIFFERENCE and result.mean == pytest.approx(0.0) and result.low < 0 < result.high


def test_identical_scores_have_a_zero_interval_and_no_verdict():
    theirs = scores()
    result = paired_difference([theirs], [theirs], "cosine")
    assert (result.low, result.high, result.verdict) == (0.0, 0.0, NO_DIFFERENCE)


def test_one_seed_matches_scipys_paired_bootstrap():
    theirs = scores(127)
    ours = theirs + np.random.default_rng(3).normal(0.01, 0.2, 127)
    ours_result = paired_difference([ours], [theirs], "mrr")
    scipy_result = stats.bootstrap((ours - theirs,), np.mean, method="percentile", n_resamples=10_000, random_state=0)
    assert ours_result.low == pytest.approx(scipy_result.confidence_interval.low, abs=0.003)
    assert ours_result.high == pytest.approx(scipy_result.confidence_interval.high, abs=0.003)
    assert ours_result.standard_error == pytest.approx(scipy_result.standard_error, rel=0.05)


def test_seeds_that_disagree_widen_the_interval():
    theirs = np.stack([scores(300)] * 3)
    offsets = np.array([[0.05], [0.0], [-0.05]])  # every pair moves with its seed: the spread is between seeds
    pairs_only = paired_difference(theirs[:1] + 0.05, theirs[:1], "mrr")
    over_seeds = paired_difference(theirs + offsets, theirs, "mrr")
    assert pairs_only.verdict == BETTER
    assert over_seeds.verdict == NO_DIFFERENCE and over_seeds.seeds == 3


def test_the_detectable_difference_shrinks_with_more_pairs():
    small = paired_difference([scores(100, 4)], [scores(100, 5)], "mrr")
    large = paired_difference([scores(1600, 4)], [scores(1600, 5)], "mrr")
    assert large.detectable == pytest.approx(small.detectable / 4, rel=0.2)
    assert pairs_needed(small, small.detectable / 2) == pytest.approx(400, rel=0.01)


def test_non_finite_scores_are_refused():
    theirs = scores()
    ours = theirs.copy()
    ours[3] = np.nan
    with pytest.raises(NonFiniteScores, match="non-finite"):
        paired_difference([ours], [theirs], "mrr")


def test_scores_of_different_pairs_are_refused():
    with pytest.raises(ValueError, match="not scored on the same pairs"):
        paired_difference([scores(10)], [scores(11)], "mrr")


def test_seeds_with_their_own_splits_are_compared_pair_by_pair_within_each_seed():
    theirs = [scores(120, 6), scores(90, 7)]
    ours = [t + 0.1 for t in theirs]
    result = paired_difference(ours, theirs, "mrr", shared_pairs=False)
    assert result.verdict == BETTER and result.seeds == 2 and result.mean == pytest.approx(0.1)


def test_resampled_sums_are_exact_so_any_blas_order_gives_the_same_interval() -> None:
    import math

    from harness.stats.paired import _exact_sum_scale

    rng = np.random.default_rng(3)
    diffs = [rng.uniform(-2, 2, 2655), rng.uniform(-2, 2, 2655)]
    scale = _exact_sum_scale(diffs)
    steps = [np.round(d * scale) for d in diffs]
    counts = rng.multinomial(2655, np.full(2655, 1 / 2655), size=50)
    blas = counts @ np.stack(steps).T
    for row in range(50):
        for seed in range(2):
            assert blas[row, seed] == math.fsum(counts[row] * steps[seed])
            assert blas[row, seed] == math.fsum((counts[row] * steps[seed])[::-1])


def test_with_several_seeds_the_interval_is_at_least_students_t_over_the_seed_means():
    from scipy.stats import t

    rng = np.random.default_rng(5)
    theirs = [rng.uniform(0, 1, 400) for _ in range(5)]
    offsets = [0.004, 0.006, 0.005, 0.007, -0.004]  # five runs, all but one better: a bootstrap stays in their range
    ours = [row + offset + rng.normal(0, 0.001, 400) for row, offset in zip(theirs, offsets)]
    result = paired_difference(ours, theirs, "cosine")
    means = np.array([(a - b).mean() for a, b in zip(ours, theirs)])
    half = t.ppf(0.975, 4) * means.std(ddof=1) / np.sqrt(5)
    assert result.low <= means.mean() - half + 1e-12 and result.high >= means.mean() + half - 1e-12
    assert result.verdict == NO_DIFFERENCE  # t: five runs say too little to call this better


def test_a_verdict_a_99_percent_interval_would_undo_is_borderline():
    rng = np.random.default_rng(6)
    theirs = rng.uniform(0, 1, 2000)
    noise = rng.normal(0, 0.1, 2000)
    noise -= noise.mean()
    ours = theirs + noise + 2.3 * 0.1 / np.sqrt(2000)  # z = 2.3: past 1.96, short of 2.58
    result = paired_difference([ours], [theirs], "cosine")
    assert result.verdict == BETTER and result.borderline and result.shown_verdict() == "better (borderline)"
    clear = paired_difference([theirs + noise + 0.05], [theirs], "cosine")
    assert clear.verdict == BETTER and not clear.borderline
