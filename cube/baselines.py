"""Baselines fit on the training split, to stand beside the cube in every report.

Each is a ``Baseline``: a name, a prediction function, a parameter count and its tuning budget. ``cube/rivals.py``
lists them in order; ``FITS`` here says how each is fitted.
The trainable ones (the MLP and the contrastive linear map) are trained the way the cube is:
by the same ``CubeTrainer`` with the cube's stage settings, so the same loss mix, optimizer,
clipping, schedule, early stopping, monitor and epoch-0 fallback (a stage that no epoch improves
keeps the map it started from). Both start as the identity map, the state the cube's autoencoder
stage approximates, and go through the cube's dialogue, optimized and advanced stages, or (when
``chain`` is off) the advanced stage alone. Their advanced-stage values and ``chain`` come from
``params.yaml``'s ``baselines`` section, chosen on validation by ``scripts/val_sweep_baselines.py``
with the cube's budget. Choices that need tuning are made on validation; test is never read here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from cube import rivals
from cube.config import BaselinesConfig, StageConfig, TrainConfig, TunedStage
from cube.embedded import EmbeddedData, EmbeddedSplit
from cube.processor import Mode
from cube.rivals import LEGACY, LINEAR, SWEPT
from cube.trainer import CubeTrainer, predict

RIDGE_LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
TRAINED_STAGES = ("dialogue", "optimized", "advanced")


@dataclass
class Baseline:
    name: str
    predict: Callable[[torch.Tensor], torch.Tensor]
    parameters: int
    note: str = ""
    tuning: str = "none"
    stages: dict[str, Any] = field(default_factory=dict)  # trainable ones: best epoch and val monitor per stage


def identity() -> Baseline:
    return Baseline(rivals.IDENTITY, lambda q: q.clone(), 0, "pred = q: the data's own question/answer similarity")


def legacy_transform() -> Baseline:
    return Baseline(LEGACY, lambda q: q + 0.15 * torch.tanh(q), 0,
                    "the earlier system's fixed processor, for the record")


def mean_answer(train: EmbeddedSplit) -> Baseline:
    mean = train.answers.mean(0)
    return Baseline(rivals.MEAN_ANSWER, lambda q: mean.expand(len(q), -1).clone(), mean.numel(),
                    "the average training answer for every question", "none (closed form)")


def fit_ridge(q: torch.Tensor, a: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares a ~ q W + b with an L2 penalty on W (centred, closed form, float64)."""
    q, a = q.double(), a.double()
    q_mean, a_mean = q.mean(0), a.mean(0)
    qc = q - q_mean
    gram = qc.T @ qc + lam * torch.eye(q.shape[1], dtype=q.dtype)
    weight = torch.linalg.solve(gram, qc.T @ (a - a_mean))
    bias = a_mean - q_mean @ weight
    return weight.float(), bias.float()


def ridge(train: EmbeddedSplit, val: EmbeddedSplit) -> Baseline:
    best: tuple[float, float, torch.Tensor, torch.Tensor] | None = None
    for lam in RIDGE_LAMBDAS:
        weight, bias = fit_ridge(train.questions, train.answers, lam)
        mrr = val.score(val.questions @ weight + bias)["mrr"]
        if best is None or mrr > best[0]:
            best = (mrr, lam, weight, bias)
    assert best is not None
    _, lam, weight, bias = best
    return Baseline(rivals.RIDGE, lambda q: q @ weight + bias, weight.numel() + bias.numel(),
                    f"lambda={lam:g} chosen on val MRR", f"{len(RIDGE_LAMBDAS)} lambdas on val (closed form)")


def procrustes(train: EmbeddedSplit) -> Baseline:
    """The rotation W (orthogonal) minimising ||q W - a|| on the training pairs."""
    u, _, vh = torch.linalg.svd(train.questions.double().T @ train.answers.double())
    rotation = (u @ vh).float()
    return Baseline(rivals.PROCRUSTES, lambda q: q @ rotation, rotation.numel(), "orthogonal map fit on train",
                    "none (closed form)")


class ResidualMLP(nn.Module):
    """q + W2 relu(W1 q): a 2-layer MLP with the same residual form as the cube, starting as the identity."""

    mode = Mode.DIALOGUE

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dim = dim
        self.config = {"baseline": rivals.MLP, "hidden": hidden}
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q + self.net(q)


class LinearMap(nn.Module):
    """q W + b, starting at W = I, b = 0: the simplest mapper a contrastive loss can train."""

    mode = Mode.DIALOGUE

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.config = {"baseline": "linear"}
        self.weight = nn.Parameter(torch.eye(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q @ self.weight + self.bias


def stage_configs(train: TrainConfig, tuned: TunedStage) -> dict[str, StageConfig]:
    """The cube's dialogue, optimized and advanced settings (only advanced without ``chain``), with the baseline's
    tuned advanced-stage values."""
    stages = {name: getattr(train, name) for name in (TRAINED_STAGES if tuned.chain else ("advanced",))}
    stages["advanced"] = replace(stages["advanced"], lr=tuned.lr, weight_decay=tuned.weight_decay,
                                 infonce_temperature=tuned.infonce_temperature)
    return stages


def train_like_the_cube(model: nn.Module, data: EmbeddedData, stages: dict[str, StageConfig], seed: int,
                        device: torch.device | str = "cpu") -> dict[str, Any]:
    """Train ``model`` through ``stages`` in order, each from the previous one's kept weights.

    Returns each stage's best epoch, monitor and validation value; ``model`` ends with the last stage's kept weights.
    """
    record = {}
    for stage, config in stages.items():
        torch.manual_seed(seed)
        result = CubeTrainer(model, stage, config, data, seed=seed, device=device).fit()
        record[stage] = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                         "monitor": result.monitor, "best_value": result.best_value}
    model.cpu().eval()
    return record


def _trained(name: str, model: nn.Module, data: EmbeddedData, stages: dict[str, StageConfig], seed: int,
             device: torch.device | str, note: str) -> Baseline:
    record = train_like_the_cube(model, data, stages, seed, device)
    kept = [stage for stage, r in record.items() if r["best_epoch"] == 0]
    note += "; trained through " + " -> ".join(record) + " with the cube's stage settings"
    if kept:
        note += f" ({', '.join(kept)} kept its starting map)"
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Baseline(name, lambda q: predict(model, q, torch.device("cpu")), count, note,
                    f"{SWEPT} (stages: {' -> '.join(record)})", record)


def mlp(data: EmbeddedData, seed: int, config: BaselinesConfig, train: TrainConfig,
        device: torch.device | str = "cpu") -> Baseline:
    torch.manual_seed(seed)
    model = ResidualMLP(data.dim, config.mlp.hidden)
    return _trained(rivals.MLP, model, data, stage_configs(train, config.mlp), seed, device, f"hidden={config.mlp.hidden}")


def linear(data: EmbeddedData, seed: int, config: BaselinesConfig, train: TrainConfig,
           device: torch.device | str = "cpu") -> Baseline:
    return _trained(LINEAR, LinearMap(data.dim), data, stage_configs(train, config.linear), seed, device,
                    "q W + b from W = I")


@dataclass(frozen=True)
class FitInputs:
    """What a baseline may fit on: train (and val for tuning) of ``data``, the run's seed and settings."""

    data: EmbeddedData
    seed: int
    config: BaselinesConfig
    train: TrainConfig
    device: torch.device | str = "cpu"


FITS: dict[str, Callable[[FitInputs], Baseline]] = {  # how each of cube/rivals.py's baselines is fitted
    rivals.IDENTITY: lambda _: identity(),
    rivals.MEAN_ANSWER: lambda run: mean_answer(run.data.train),
    rivals.RIDGE: lambda run: ridge(run.data.train, run.data.val),
    rivals.PROCRUSTES: lambda run: procrustes(run.data.train),
    LINEAR: lambda run: linear(run.data, run.seed, run.config, run.train, run.device),
    rivals.MLP: lambda run: mlp(run.data, run.seed, run.config, run.train, run.device),
    LEGACY: lambda _: legacy_transform(),
}


def fit_all(data: EmbeddedData, seed: int, config: BaselinesConfig, train: TrainConfig,
            device: torch.device | str = "cpu") -> list[Baseline]:
    """Every baseline of ``cube/rivals.py``, fit on train (and tuned on val) of ``data``, in that order."""
    unlisted = sorted(set(FITS) - set(rivals.names()))
    if unlisted:
        raise ValueError(f"cube/baselines.py fits {unlisted}, which cube/rivals.py does not list: add them to RIVALS")
    unfitted = [name for name in rivals.names() if name not in FITS]
    if unfitted:
        raise ValueError(f"cube/rivals.py lists the baseline(s) {unfitted}, which cube/baselines.py cannot fit: add "
                         "their functions to FITS")
    run = FitInputs(data, seed, config, train, device)
    fitted = []
    for rival in rivals.RIVALS:
        baseline = FITS[rival.name](run)
        if baseline.name != rival.name:
            raise ValueError(f"the fit of baseline {rival.name!r} returned one named {baseline.name!r}")
        fitted.append(baseline)
    return fitted
