"""The learning curve's and the cube ablation's files, typed: ``reports/learning_curve/learning_curve.json`` through
``LearningCurve`` (read by the curve's page and plot and by the task summary), ``reports/cube_ablation/ablation.json``
through ``Ablation``."""

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


class AblationRun(Strict):
    """One row trained (or fitted) under one seed."""

    val_mrr: Number
    test_mrr: Number
    parameters: int
    seconds: Number
    best_epoch: int
    epochs_run: int
    train_loss: list[Number]  # per epoch


class AblationRow(Strict):
    """A design of the cube, a probe or a reference, over its seeds, with its paired test-MRR differences."""

    name: str
    kind: str  # design | probe | reference
    note: str
    parameters: int
    val_mrr: Number
    test_mrr: Number
    test_std: Number
    seconds: Number
    comparisons: dict[str, PairedDifference]  # against -> this row minus it
    runs: list[AblationRun]


class Ablation(Result):
    command: str
    wall_seconds: Number
    size: int
    seeds: list[int]
    test_pairs: int
    best_design: str  # chosen on validation MRR
    rows: list[AblationRow]
