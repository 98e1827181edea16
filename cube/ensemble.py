"""Several teachers of different widths in one embedding space of the cube's width.

The first teacher is the reference: its width is the cube's width D. Every other
teacher is mapped into that space by a map fit on the training split only:
PCA via SVD down to D dimensions when it is wider (zero-padding when it is
narrower; nothing is truncated), then the orthogonal Procrustes rotation that
best aligns it with the reference. An orthogonal map keeps the teacher's own
geometry, so averaging aligned teachers is meaningful. The ensemble embedding is
the normalised weighted mean of the aligned, normalised teacher embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Alignment:
    """x -> ((x - source_mean) @ reduce) @ rotate + target_mean, fit on training sentences."""

    source_mean: torch.Tensor
    reduce: torch.Tensor  # (d_t, D)
    rotate: torch.Tensor  # (D, D), orthogonal
    target_mean: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.source_mean) @ self.reduce) @ self.rotate + self.target_mean

    @staticmethod
    def identity(dim: int) -> Alignment:
        zero = torch.zeros(dim)
        return Alignment(zero, torch.eye(dim), torch.eye(dim), zero)


def fit_alignment(source: torch.Tensor, reference: torch.Tensor) -> Alignment:
    """Map ``source`` rows (N, d_t) onto ``reference`` rows (N, D) of the same sentences."""
    source, reference = source.double(), reference.double()
    width, dim = source.shape[1], reference.shape[1]
    source_mean, target_mean = source.mean(0), reference.mean(0)
    centred = source - source_mean
    if width > dim:  # PCA via SVD: the D directions of largest variance
        _, _, vh = torch.linalg.svd(centred, full_matrices=True)  # D rows even when N < D
        reduce = vh[:dim].T
    else:  # zero-pad into D dimensions
        reduce = torch.eye(width, dim, dtype=source.dtype)
    reduced = centred @ reduce
    u, _, vh = torch.linalg.svd(reduced.T @ (reference - target_mean))  # orthogonal Procrustes
    return Alignment(source_mean.float(), reduce.float(), (u @ vh).float(), target_mean.float())


def pair_agreement(questions: torch.Tensor, answers: torch.Tensor) -> float:
    """How clearly a teacher pairs each question with its own answer on the training pairs:
    mean cos(q_i, a_i) minus the mean cos(q_i, a_j) over all pairs i != j."""
    q, a = F.normalize(questions, dim=-1), F.normalize(answers, dim=-1)
    sims = q @ a.T
    n = sims.shape[0]
    matched = sims.diagonal().mean()
    unmatched = (sims.sum() - sims.diagonal().sum()) / max(n * n - n, 1)
    return float(matched - unmatched)


def ensemble_weights(agreements: list[float], weighting: str) -> list[float]:
    """Equal weights, or weights proportional to each teacher's (positive) pair agreement."""
    if weighting == "equal" or len(agreements) == 1:
        return [1.0 / len(agreements)] * len(agreements)
    positive = [max(a, 0.0) for a in agreements]
    total = sum(positive)
    if total <= 0:
        return [1.0 / len(agreements)] * len(agreements)
    return [a / total for a in positive]


def combine(aligned: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Normalised weighted mean of normalised, aligned embeddings."""
    total = sum(w * F.normalize(x, dim=-1) for w, x in zip(weights, aligned))
    return F.normalize(total, dim=-1)
