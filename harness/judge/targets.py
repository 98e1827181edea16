"""Every target the project holds itself to, as data, with the rules that judge a run against them.

Quality: the chosen cube stage significantly better (``harness/stats/paired.py``) than each listed baseline on
each listed measure. Speed and memory: the cube's training step against the eager reference, and absolute GPU
figures at ``TARGET_BATCH``. A target for the other kind of device is listed as not measured, never as met or missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cube import rivals
from harness.stats.paired import BETTER, INCONCLUSIVE, MET, PairedDifference, RatioEstimate
from harness.store.results import BenchRow, SpeedVerdict, ratio_key

# The quality target: the chosen stage significantly better than each of these baselines on these measures.
QUALITY_TARGET: dict[str, tuple[str, ...]] = {
    name: ("recall@1", "mrr", "cosine") if name in (rivals.IDENTITY, rivals.RIDGE) else ("recall@1", "mrr")
    for name in (rivals.IDENTITY, rivals.MEAN_ANSWER, rivals.RIDGE, rivals.PROCRUSTES, rivals.LINEAR, rivals.MLP)}

TARGET_BATCH = 8192  # the absolute GPU targets' batch size (the bench adds it to its sweep on a GPU)
GiB = 2**30


@dataclass(frozen=True)
class SpeedTarget:
    """What a speed or memory target asks: on which device, which figure, at least or at most what."""

    name: str
    device: str  # "cpu" or "cuda"
    goal: float
    at_least: bool
    unit: str
    figure: str  # "ratio" (own vs eager reference, per process) or "<phase>.<row field>" at TARGET_BATCH
    scale: float = 1.0  # the row's unit into the goal's (MiB -> GiB)

    @property
    def goal_text(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.goal:,g}{self.unit}"


RATIO = ratio_key("train", "eager_reference")
SPEED_TARGETS: tuple[SpeedTarget, ...] = (
    SpeedTarget(RATIO, "cpu", 1.5, True, "x", "ratio"),
    SpeedTarget(RATIO, "cuda", 3.5, True, "x", "ratio"),
    SpeedTarget(f"train samples/s at batch {TARGET_BATCH}", "cuda", 150_000, True, "", "train.samples_per_s"),
    SpeedTarget(f"train peak allocated GiB at batch {TARGET_BATCH}", "cuda", 4, False, " GiB",
                "train.cuda_max_allocated_mib", scale=2**20 / GiB),
    SpeedTarget(f"forward samples/s at batch {TARGET_BATCH}", "cuda", 400_000, True, "", "forward.samples_per_s"),
)


def describe_quality_target(required: dict[str, list[str]] | dict[str, tuple[str, ...]],
                            baselines: tuple[str, ...]) -> str:
    """The quality target in words, from its data: "every baseline on recall@1 and MRR and than identity and ridge on
    cosine" (``baselines``: those the report tables; "every baseline" when the target names them all)."""
    def word(measure: str) -> str:
        return "MRR" if measure == "mrr" else measure

    entries = list(required.items())
    common = [m for m in entries[0][1] if all(m in measures for _, measures in entries)]
    whom = "every baseline" if set(required) >= set(baselines) else ", ".join(required)
    text = f"{whom} on {' and '.join(word(m) for m in common)}"
    extra: dict[str, list[str]] = {}
    for name, measures in entries:
        for measure in measures:
            if measure not in common:
                extra.setdefault(measure, []).append(name)
    return text + "".join(f" and than {' and '.join(names)} on {word(m)}" for m, names in extra.items())


def quality_misses(comparisons: dict[str, dict[str, PairedDifference]],
                   required: dict[str, tuple[str, ...]] = QUALITY_TARGET) -> list[str]:
    """``measure against baseline (verdict)`` for each required comparison that is not a significant win: only a
    significant win counts towards a target."""
    missed = []
    for name, measures in required.items():
        for measure in measures:
            if name not in comparisons:
                missed.append(f"{measure} against {name} (not evaluated)")
                continue
            verdict = comparisons[name][measure].verdict
            if verdict != BETTER:
                missed.append(f"{measure} against {name} ({verdict})")
    return missed


def _judged(target: SpeedTarget, value: float | list[RatioEstimate] | None, run_device: str,
            missing: str) -> SpeedVerdict:
    """One target's verdict; ``value`` None with ``missing`` saying why (another device's target, or no such figure)."""
    row = {"target": target.name, "device": target.device, "goal": target.goal_text, "value": None, "met": None}
    if target.device != run_device:
        return SpeedVerdict(**row, note=f"not measured here ({run_device.upper()} run)")
    if value is None:
        return SpeedVerdict(**row, note=missing)
    if isinstance(value, list):  # one ratio estimate per process: the verdict stands only when they agree
        verdicts = [estimate.meets(target.goal) for estimate in value]
        agreed = verdicts[0] if len(set(verdicts)) == 1 else INCONCLUSIVE
        intervals = ", ".join(f"{e.ratio:.2f} [{e.low:.2f}, {e.high:.2f}]: {v}" for e, v in zip(value, verdicts))
        return SpeedVerdict(**row | {"value": value[0].ratio, "met": None if agreed == INCONCLUSIVE else agreed == MET},
                            note=f"{len(value)} processes, 95% intervals: {intervals}"
                                 + ("; inconclusive" if agreed == INCONCLUSIVE else ""))
    met = value >= target.goal if target.at_least else value <= target.goal
    return SpeedVerdict(**row | {"value": value, "met": met}, note="")


def speed_targets(device: str, rows: list[BenchRow], ratios: dict[str, RatioEstimate],
                  other_processes: Sequence[dict[str, RatioEstimate]] = ()) -> list[SpeedVerdict]:
    """The speed targets against a bench run on ``device`` (its ``rows`` and its peers' speed ``ratios``): what was
    asked, on which device, what this run measured, met or not.

    The ratio target is judged on the ratio's interval in this process and in each of ``other_processes`` (their
    speed ratios): met when all of every interval is at or above the goal, missed when every one is below,
    otherwise inconclusive.
    """
    run_device = "cuda" if device.startswith("cuda") else "cpu"
    ratio = [found[RATIO] for found in [ratios, *other_processes] if RATIO in found] or None
    at_batch = {r.phase: r for r in rows if r.batch_size == TARGET_BATCH}
    rows = []
    for target in SPEED_TARGETS:
        if target.figure == "ratio":
            rows.append(_judged(target, ratio, run_device, "no eager reference ratio"))
            continue
        phase, field = target.figure.split(".")
        figure = getattr(at_batch[phase], field) if phase in at_batch else None
        rows.append(_judged(target, None if figure is None else figure * target.scale, run_device,
                            f"not measured (no batch {TARGET_BATCH} figure in this run)"))
    return rows
