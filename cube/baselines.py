"""Baselines fit on the training split, to stand beside the cube in every report.

Each is a ``Baseline``: a name, a prediction function and a parameter count.
Choices that need tuning (ridge's lambda, the MLP's stopping epoch) are made on
the validation split's MRR; the test split is never read here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cube.dataset import EmbeddedData, EmbeddedSplit
from cube.losses import cosine_loss

RIDGE_LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
BASELINE_ORDER = ("identity", "mean answer", "ridge", "procrustes", "mlp", "legacy q+0.15tanh(q)")


@dataclass
class Baseline:
    name: str
    predict: Callable[[torch.Tensor], torch.Tensor]
    parameters: int
    note: str = ""


def identity() -> Baseline:
    return Baseline("identity", lambda q: q.clone(), 0, "pred = q: the data's own question/answer similarity")


def legacy_transform() -> Baseline:
    return Baseline("legacy q+0.15tanh(q)", lambda q: q + 0.15 * torch.tanh(q), 0,
                    "the earlier system's fixed processor, for the record")


def mean_answer(train: EmbeddedSplit) -> Baseline:
    mean = train.answers.mean(0)
    return Baseline("mean answer", lambda q: mean.expand(len(q), -1).clone(), mean.numel(),
                    "the average training answer for every question")


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
    return Baseline("ridge", lambda q: q @ weight + bias, weight.numel() + bias.numel(), f"lambda={lam:g} chosen on val MRR")


def procrustes(train: EmbeddedSplit) -> Baseline:
    """The rotation W (orthogonal) minimising ||q W - a|| on the training pairs."""
    u, _, vh = torch.linalg.svd(train.questions.double().T @ train.answers.double())
    rotation = (u @ vh).float()
    return Baseline("procrustes", lambda q: q @ rotation, rotation.numel(), "orthogonal map fit on train")


class ResidualMLP(nn.Module):
    """q + W2 relu(W1 q): a 2-layer MLP with the same residual form as the cube."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q + self.net(q)


def mlp(train: EmbeddedSplit, val: EmbeddedSplit, seed: int, hidden: int = 256, epochs: int = 40,
        batch_size: int = 64, lr: float = 1e-3, patience: int = 5) -> Baseline:
    """A 2-layer MLP trained with cosine loss; the epoch with the best val MRR is kept."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ResidualMLP(train.questions.shape[1], hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    best_mrr, best_state, since_best = -1.0, None, 0
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(train), generator=generator).split(batch_size):
            loss = cosine_loss(model(train.questions[batch]), train.answers[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            mrr = val.score(model(val.questions))["mrr"]
        if mrr > best_mrr:
            best_mrr, best_state, since_best = mrr, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()

    def predict(q: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(q)

    count = sum(p.numel() for p in model.parameters())
    return Baseline("mlp", predict, count, f"hidden={hidden}, epoch chosen on val MRR")


def fit_all(data: EmbeddedData, seed: int) -> list[Baseline]:
    """Every baseline, fit on train (and tuned on val) of ``data``."""
    return [
        identity(),
        mean_answer(data.train),
        ridge(data.train, data.val),
        procrustes(data.train),
        mlp(data.train, data.val, seed),
        legacy_transform(),
    ]
