"""The learning curve's file (``reports/learning_curve/learning_curve.json``), typed: written and read through
``LearningCurve``, by the curve's own page and plot and by the task summary."""

from __future__ import annotations

from harness.stats.paired import PairedDifference
from harness.store.results import MeanStd, Number, Result, Strict


class CurvePoint(Strict):
    """One model at one training size: its figures over its seeds."""

    parameters: int
    seeds: list[int]
    seconds: Number  # per run, mean over seeds
    val_mrr: Number  # mean over seeds
    test: dict[str, MeanStd]  # measure -> mean ± std over seeds
    gain: dict[str, PairedDifference]  # measure -> paired difference against identity on the same test pairs


class LearningCurve(Result):
    """Every model at every size, the cube against each rival, and the growth between the two largest sizes."""

    command: str
    wall_seconds: Number
    task: str
    source: str
    sizes: list[int]
    seeds: list[int]
    test_pairs: int
    test_candidates: int
    val_pairs: int
    train_pool: int
    measures: list[str]
    identity: dict[str, Number]  # measure -> identity's test figure
    models: dict[str, list[CurvePoint]]  # model -> one point per size, in ``sizes``' order
    cube_versus: dict[str, list[PairedDifference]]  # rival -> cube minus rival on MRR, per size
    growth: dict[str, PairedDifference]  # trained model -> MRR at the largest size minus at the one before

    def parameters(self, model: str) -> int:
        return self.models[model][0].parameters
