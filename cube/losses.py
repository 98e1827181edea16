"""Training losses and the curriculum schedule. All take (B, D) predictions and targets."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cube.config import StageConfig


def _duplicate_targets(target: torch.Tensor) -> torch.Tensor:
    """(B, B) True where two different rows hold the same target (not a true negative)."""
    t = F.normalize(target, dim=-1)
    same = (t @ t.T) > 1.0 - 1e-6
    return same & ~torch.eye(len(t), dtype=torch.bool, device=t.device)


def similarity_matrix(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).T


# Each loss is written once, as a sum over this process's rows divided by the global batch ``n``: ``stage_loss``
# adds them up per process, and the one-argument forms below are the same code with every row in one process.


def _cosine_term(pred: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    return (1.0 - F.cosine_similarity(pred, target, dim=-1)).sum() / n


def _mse_term(pred: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    return (pred - target).pow(2).sum() / (n * target.shape[1])


def _infonce_term(sims: torch.Tensor, blocked: torch.Tensor, own: torch.Tensor, temperature: float,
                  n: int) -> torch.Tensor:
    """Each prediction must pick its own target among the batch's targets (in-batch negatives); ``sims`` is
    (rows, N) against every target, ``blocked`` masks duplicate targets, ``own`` is each row's target index."""
    logits = (sims / temperature).masked_fill(blocked, float("-inf"))
    return F.cross_entropy(logits, own, reduction="sum") / n


def _triplet_term(sims: torch.Tensor, blocked: torch.Tensor, own: torch.Tensor, margin: float,
                  valid_total: int) -> torch.Tensor:
    """Hinge on cos(pred, own target) vs. cos(pred, hardest other target), over the rows that have a negative;
    ``blocked`` masks each row's own and duplicate targets."""
    positive = sims[torch.arange(len(sims), device=sims.device), own]
    hardest = sims.masked_fill(blocked, float("-inf")).max(dim=1).values
    valid = torch.isfinite(hardest)
    return F.relu(margin - positive[valid] + hardest[valid]).sum() / valid_total


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _cosine_term(pred, target, len(pred))


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _mse_term(pred, target, len(pred))


def infonce_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    own = torch.arange(len(pred), device=pred.device)
    return _infonce_term(similarity_matrix(pred, target), _duplicate_targets(target), own, temperature, len(pred))


def _negatives_blocked(duplicates: torch.Tensor) -> torch.Tensor:
    """A row's own target and its duplicates: never its negatives."""
    return duplicates | torch.eye(len(duplicates), dtype=torch.bool, device=duplicates.device)


def triplet_loss(pred: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    blocked = _negatives_blocked(_duplicate_targets(target))
    valid_total = int((~blocked).any(dim=1).sum())
    if not valid_total:
        return pred.sum() * 0.0
    own = torch.arange(len(pred), device=pred.device)
    return _triplet_term(similarity_matrix(pred, target), blocked, own, margin, valid_total)


def diversity_penalty(pred: torch.Tensor) -> torch.Tensor:
    """Mean cosine between different predictions of a batch: high when outputs collapse together."""
    if len(pred) < 2:
        return pred.sum() * 0.0
    sims = similarity_matrix(pred, pred)
    off_diagonal = sims.sum() - sims.diagonal().sum()
    return off_diagonal / (len(pred) * (len(pred) - 1))


def curriculum_subset(difficulty: torch.Tensor, epoch: int, config: StageConfig) -> torch.Tensor:
    """Indices of the pairs used in ``epoch`` (0-based): the easiest fraction, growing to all.

    The fraction rises linearly from ``curriculum_start`` to 1 over ``curriculum_epochs``.
    """
    if not config.curriculum:
        return torch.arange(len(difficulty))
    progress = min(1.0, epoch / max(config.curriculum_epochs, 1))
    fraction = config.curriculum_start + (1.0 - config.curriculum_start) * progress
    count = max(1, round(fraction * len(difficulty)))
    return torch.argsort(difficulty, stable=True)[:count]


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def stage_loss(
    pred: torch.Tensor, target: torch.Tensor, config: StageConfig, rows: slice | None = None, world_size: int = 1,
    all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] = _identity,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The stage's weighted loss mix over a global batch; returns this process's total and weighted parts.

    ``target`` is the whole global batch's targets (N rows, every process holds them); ``pred`` holds the model's
    outputs for ``target[rows]`` (all N in one process, the default; one ignored row when ``rows`` is empty: a rank
    must still run forward and backward). Each part is normalised by the global batch, so the processes' parts add
    up to the one-process value of every loss, in-batch negatives included: InfoNCE and the triplet take their
    negatives from all N targets, and the diversity penalty, which couples predictions across processes, uses the
    sum of all N normalised predictions (``all_reduce_sum`` of a D-vector). Backward on ``world_size * total`` then
    gives, after DDP averages the gradients, the one-process gradient up to the order of float additions. Sum the
    total and the parts over the processes for their values.
    """
    n = len(target)
    rows = rows if rows is not None else slice(0, n)
    count = rows.stop - rows.start
    local_pred = pred[:count]
    local_target = target[rows]
    zero = pred.sum() * 0.0  # keeps every parameter in the graph when this process holds no rows
    parts: dict[str, torch.Tensor] = {}
    if config.cosine_weight:
        parts["cosine"] = config.cosine_weight * (_cosine_term(local_pred, local_target, n) + zero)
    if config.mse_weight:
        parts["mse"] = config.mse_weight * (_mse_term(local_pred, local_target, n) + zero)
    if config.infonce_weight or config.triplet_weight:
        duplicates = _duplicate_targets(target)  # (N, N) over the whole global batch
        sims = similarity_matrix(local_pred, target)  # (count, N), shared by both terms
        own = torch.arange(rows.start, rows.stop, device=pred.device)
    if config.infonce_weight:
        term = _infonce_term(sims, duplicates[rows], own, config.infonce_temperature, n) if count else zero
        parts["infonce"] = config.infonce_weight * (term + zero)
    if config.triplet_weight:
        blocked = _negatives_blocked(duplicates)
        valid_total = int((~blocked).any(dim=1).sum())  # rows with a negative, over the whole batch
        term = zero
        if count and valid_total:
            term = _triplet_term(sims, blocked[rows], own, config.triplet_margin, valid_total)
        parts["triplet"] = config.triplet_weight * (term + zero)
    if config.diversity_weight:
        parts["diversity"] = config.diversity_weight * _diversity_share(local_pred, n, world_size, all_reduce_sum, zero)
    total = torch.stack(list(parts.values())).sum()
    return total, parts


def _diversity_share(local_pred: torch.Tensor, n: int, world_size: int,
                     all_reduce_sum: Callable[[torch.Tensor], torch.Tensor], zero: torch.Tensor) -> torch.Tensor:
    """This process's share of ``diversity_penalty`` of the global batch: in one process the penalty itself."""
    if world_size == 1:
        return diversity_penalty(local_pred)
    unit = F.normalize(local_pred, dim=-1)
    local_sum = unit.sum(dim=0)
    total_sum = all_reduce_sum(local_sum.detach().clone())  # every rank calls this, rows or not
    if n < 2:
        return zero
    # D = (|S|^2 - sum_i |u_i|^2) / (N(N-1)); this share sums to D over the ranks, gradient (2S - 2u_i)/(N(N-1))
    return (2.0 * total_sum @ local_sum - total_sum @ total_sum / world_size - unit.pow(2).sum()) / (n * (n - 1)) + zero
