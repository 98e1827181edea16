"""Paired comparisons: is model A better than model B on the same evaluation pairs, beyond the noise?

Every quality verdict in the harness comes from here. The unit is the per-pair difference of a measure
(cosine, hit@1, reciprocal rank) between two models scored on the same pairs, one row per training seed.
A difference counts only when it is larger than the spread over test pairs *and* over training runs, so its
95% interval is the union of two:

- a hierarchical bootstrap: seeds drawn with replacement, and pairs with replacement (the same draw for every
  seed when the seeds share one test split, as a crossed design needs). With one seed this is the plain paired
  bootstrap over pairs, percentile interval; a test checks it against ``scipy.stats.bootstrap``. scipy has no
  two-level resampling, hence the multinomial counts below;
- with two seeds or more, Student's t interval over the seeds' mean differences. A bootstrap over a handful
  of seeds cannot be wider than their range, so five trajectories that all happen to fall the same way would
  look significant; t with S - 1 degrees of freedom accounts for how little S runs tell about the next one.

The verdict is "better" when the whole interval is above 0, "worse" when below, and otherwise "no significant
difference"; ``borderline`` marks a verdict that a 90% or a 99% interval would change. ``detectable`` is the
smallest true difference this evaluation would call significant with 80% power at the 5% level:
(z_0.975 + z_0.8) times the larger of the two standard errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, computed_field, model_validator
from scipy.stats import norm
from scipy.stats import t as student_t

CONFIDENCE = 0.95
POWER = 0.8
RESAMPLES = 10_000
CHUNK = 1_000  # bootstrap draws per block, to keep the count matrices small
BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no significant difference"


class NonFiniteScores(ValueError):
    """Per-pair scores holding NaN or Inf: refused, never averaged or ranked."""


class PairedDifference(BaseModel):
    """Mean of (ours - theirs) over seeds and pairs, its interval and what it means. Stored with its verdict, which
    is checked against the interval when read back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    measure: str
    mean: float
    low: float
    high: float
    standard_error: float
    detectable: float
    pairs: int
    seeds: int
    confidence: float = CONFIDENCE
    borderline: bool = False  # a 90% or a 99% interval would give another verdict

    @model_validator(mode="before")
    @classmethod
    def _stored_verdict_agrees(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "verdict" in raw:
            raw = dict(raw)
            stored = raw.pop("verdict")
            if stored != _verdict(raw.get("low", 0.0), raw.get("high", 0.0)):
                raise ValueError(f"stored verdict {stored!r} disagrees with the interval [{raw.get('low')}, "
                                 f"{raw.get('high')}]")
        return raw

    @computed_field
    @property
    def verdict(self) -> str:
        return _verdict(self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def shown_verdict(self) -> str:
        return f"{self.verdict} (borderline)" if self.borderline else self.verdict

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PairedDifference:
        return cls.model_validate(raw)

    def interval(self) -> str:
        return f"[{self.low:+.4f}, {self.high:+.4f}]"


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return NO_DIFFERENCE


def _as_rows(scores: Sequence[Sequence[float]] | np.ndarray, label: str) -> list[np.ndarray]:
    rows = [np.asarray(row, dtype=np.float64) for row in scores]
    if not rows or any(row.ndim != 1 or len(row) == 0 for row in rows):
        raise ValueError(f"{label}: per-pair scores must be one non-empty list per seed")
    for seed, row in enumerate(rows):
        if not np.isfinite(row).all():
            raise NonFiniteScores(f"{label}: seed #{seed} has {int((~np.isfinite(row)).sum())} non-finite per-pair "
                                  "scores; non-finite scores are refused, not averaged")
    return rows


def paired_difference(ours: Sequence[Sequence[float]] | np.ndarray, theirs: Sequence[Sequence[float]] | np.ndarray,
                      measure: str, *, shared_pairs: bool = True, resamples: int = RESAMPLES,
                      seed: int = 0, confidence: float = CONFIDENCE) -> PairedDifference:
    """Compare two models' per-pair scores: one row per seed, the same pairs in the same order in both.

    ``shared_pairs``: every seed scored the same pairs (one test split), so pairs are drawn once for all seeds;
    otherwise each seed's pairs are drawn on their own (a split re-drawn per seed).
    """
    ours_rows, theirs_rows = _as_rows(ours, f"{measure} (ours)"), _as_rows(theirs, f"{measure} (theirs)")
    if [len(r) for r in ours_rows] != [len(r) for r in theirs_rows]:
        raise ValueError(f"{measure}: the two models were not scored on the same pairs "
                         f"({[len(r) for r in ours_rows]} vs {[len(r) for r in theirs_rows]} per seed)")
    diffs = [a - b for a, b in zip(ours_rows, theirs_rows)]
    stats = _bootstrap(diffs, shared_pairs, resamples, seed)
    mean = float(np.mean([d.mean() for d in diffs]))

    def interval(level: float) -> tuple[float, float]:
        tail = (1.0 - level) / 2.0
        low, high = (float(q) for q in np.quantile(stats, [tail, 1.0 - tail]))
        if len(diffs) > 1:
            half = float(student_t.ppf(1.0 - tail, len(diffs) - 1)) * _seed_error(diffs)
            low, high = min(low, mean - half), max(high, mean + half)
        return low, high

    low, high = interval(confidence)
    verdicts = {_verdict(*interval(level)) for level in (confidence - 0.05, min(confidence + 0.04, 0.999))}
    error = max(float(stats.std(ddof=1)), _seed_error(diffs))
    tail = (1.0 - CONFIDENCE) / 2.0
    return PairedDifference(
        measure=measure, mean=mean, low=low, high=high, standard_error=error,
        detectable=float((norm.ppf(1.0 - tail) + norm.ppf(POWER)) * error),
        pairs=int(round(np.mean([len(d) for d in diffs]))), seeds=len(diffs), confidence=confidence,
        borderline=verdicts != {_verdict(low, high)})


def _seed_error(diffs: list[np.ndarray]) -> float:
    """Standard error of the mean over seeds of each seed's mean difference (0 with one seed)."""
    if len(diffs) < 2:
        return 0.0
    means = np.array([np.sort(d).sum() / len(d) for d in diffs])  # sorted: the same sum whatever the pair order
    return float(means.std(ddof=1) / np.sqrt(len(means)))


def _bootstrap(diffs: list[np.ndarray], shared_pairs: bool, resamples: int, seed: int) -> np.ndarray:
    """``resamples`` bootstrap means of the differences, seeds and pairs drawn with replacement."""
    sizes = {len(d) for d in diffs}
    shared = shared_pairs and len(sizes) == 1
    scale = _exact_sum_scale(diffs)
    steps = [np.round(d * scale) for d in diffs]
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        if shared:
            n = len(steps[0])
            counts = rng.multinomial(n, np.full(n, 1.0 / n), size=size)  # (size, n)
            pair_means = counts @ np.stack(steps).T / (n * scale)  # (size, seeds)
        else:
            pair_means = np.stack([rng.multinomial(len(d), np.full(len(d), 1.0 / len(d)), size=size) @ d
                                   / (len(d) * scale) for d in steps], axis=1)
        s = len(diffs)
        seed_weights = rng.multinomial(s, np.full(s, 1.0 / s), size=size) / s if s > 1 else np.ones((size, 1))
        draws.append((pair_means * seed_weights).sum(axis=1))
    return np.concatenate(draws)


def _exact_sum_scale(diffs: list[np.ndarray]) -> float:
    """A power of two that turns every difference into an integer-valued float whose resampled sums stay below
    2**53, so the count-matrix products are exact: the interval is then the same bit for bit whatever order the
    BLAS in use adds in (thread count, CPU, container). At most 2**30: differences are kept to about 1e-9."""
    largest = max(float(np.abs(d).max()) * len(d) for d in diffs)
    if largest == 0.0:
        return 1.0
    return 2.0 ** min(30, int(np.floor(np.log2(2.0 ** 52 / largest))))


def pairs_needed(difference: PairedDifference, target: float) -> int:
    """About how many evaluation pairs would make ``target`` detectable, at this comparison's per-pair spread."""
    return int(np.ceil(difference.pairs * (difference.detectable / target) ** 2))


# ---------------------------------------------------------------- speed ratios

REGRESSED, FINE, INCONCLUSIVE = "regressed", "fine", "inconclusive"
MET, MISSED = "met", "missed"


class RatioEstimate(BaseModel):
    """How many times faster ``own`` is than a peer: the geometric mean of per-repeat ratios (peer time / own time,
    the two timed back to back in each repeat) with a 95% bootstrap interval over the repeats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio: float
    low: float
    high: float
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RatioEstimate:
        return cls.model_validate(raw)

    def against(self, floor: float) -> str:
        """regressed when the whole interval is below ``floor``, fine when the whole of it is at or above, else
        inconclusive: too noisy to decide, to be measured again rather than failed."""
        if self.high < floor:
            return REGRESSED
        if self.low >= floor:
            return FINE
        return INCONCLUSIVE

    def meets(self, goal: float) -> str:
        """A speed target: met, missed, or inconclusive when the interval spans the goal."""
        verdict = self.against(goal)
        return {REGRESSED: MISSED, FINE: MET}.get(verdict, INCONCLUSIVE)


def ratio_interval(own_seconds: Sequence[float], peer_seconds: Sequence[float], *, resamples: int = RESAMPLES,
                   seed: int = 0) -> RatioEstimate:
    """The speed ratio of ``own`` over a peer from interleaved timings (repeat i of each taken back to back)."""
    own, peer = _as_rows([own_seconds], "own timings")[0], _as_rows([peer_seconds], "peer timings")[0]
    if len(own) != len(peer):
        raise ValueError(f"timings are not paired: {len(own)} own vs {len(peer)} peer repeats")
    if (own <= 0).any() or (peer <= 0).any():
        raise ValueError("timings must be positive seconds")
    logs = np.log(peer / own)
    rng = np.random.default_rng(seed)
    n = len(logs)
    draws = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples) @ logs / n
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return RatioEstimate(ratio=float(np.exp(logs.mean())), low=float(np.exp(low)), high=float(np.exp(high)), repeats=n)
