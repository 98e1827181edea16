"""Quality metrics: cosine to the true answer, retrieval among a split's distinct answers, hubness.

Predictions must be finite: a NaN compares false with everything, so a NaN row would
otherwise count no competitor ahead of it and score a perfect rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cube.measures import CSLS_PER_PAIR

RECALL_AT = (1, 5, 10)


class NonFinitePredictions(ValueError):
    """Predictions holding NaN or Inf: refused, never scored."""


def check_finite(pred: torch.Tensor, what: str = "predictions") -> None:
    bad = ~torch.isfinite(pred)
    if bad.any():
        rows = bad.reshape(len(pred), -1).any(dim=1).nonzero().flatten()
        raise NonFinitePredictions(
            f"{what}: {len(rows)} of {len(pred)} rows hold NaN or Inf (first at row {int(rows[0])}); "
            "non-finite predictions are refused, not scored: retrain or fix the model that made them")


def retrieval_ranks(pred: torch.Tensor, candidates: torch.Tensor, answer_index: torch.Tensor,
                    gold: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each pair's true answer among ``candidates`` by cosine.

    Other answers of the same question (``gold``) are not counted as competitors
    (the "filtered" ranking), so a question with several right answers is not
    penalised for ranking the others high. Ties count against the true answer.
    """
    check_finite(pred)
    return ranks_by_scores(F.normalize(pred, dim=-1) @ F.normalize(candidates, dim=-1).T, answer_index, gold)


def ranks_by_scores(scores: torch.Tensor, answer_index: torch.Tensor, gold: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each row's true answer in an (N, M) score matrix, filtered as ``retrieval_ranks`` says."""
    true = scores.gather(1, answer_index.unsqueeze(1))
    competitors = scores
    if gold is not None:
        competitors = scores.masked_fill(gold, float("-inf"))
    ahead = (competitors >= true).sum(dim=1)
    # the true answer itself is masked out when gold is given; otherwise it ties with itself
    return ahead + 1 if gold is not None else ahead


def csls_scores(pred: torch.Tensor, candidates: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Cross-domain similarity local scaling (Conneau et al., 2018, the MUSE benchmark's retrieval): (N, M) scores
    ``2 cos(x, y) - r(x) - r(y)``, ``r`` a vector's mean cosine to its ``k`` nearest neighbours on the other side.

    A hub, a candidate near many predictions, has a large ``r(y)`` and loses its pull; ``r(x)`` is constant along a
    row, so it never changes a ranking but keeps the scores comparable across rows.
    """
    check_finite(pred)
    cos = F.normalize(pred.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T
    r_pred = cos.topk(min(k, cos.shape[1]), dim=1).values.mean(dim=1)
    r_candidates = cos.topk(min(k, cos.shape[0]), dim=0).values.mean(dim=0)
    return 2 * cos - r_pred[:, None] - r_candidates[None, :]


def hubness(pred: torch.Tensor, candidates: torch.Tensor, k: int = 10) -> float:
    """Skewness of the k-occurrence distribution: how unevenly candidates appear in top-k lists.

    Near 0: every candidate is retrieved about equally often; large: a few "hubs" dominate.
    """
    k = min(k, len(candidates))
    scores = F.normalize(pred, dim=-1) @ F.normalize(candidates, dim=-1).T
    top = scores.topk(k, dim=1).indices.flatten()
    counts = torch.bincount(top, minlength=len(candidates)).double()
    std = counts.std(unbiased=False)
    if std == 0:
        return 0.0
    return float(((counts - counts.mean()) ** 3).mean() / std**3)


def per_pair(pred: torch.Tensor, answers: torch.Tensor, candidates: torch.Tensor,
             answer_index: torch.Tensor, gold: torch.Tensor | None = None, csls: bool = False) -> dict[str, torch.Tensor]:
    """Each pair's cosine to its answer, hit at rank 1 (0/1) and reciprocal rank: the means are the split's scores.

    ``csls`` adds the hit and reciprocal rank under CSLS retrieval (``csls_scores``), the bilingual-lexicon
    benchmarks' ranking."""
    pred = pred.float()
    ranks = retrieval_ranks(pred, candidates, answer_index, gold).double()
    pairs = {"cosine": F.cosine_similarity(pred, answers, dim=-1).double(),
             "recall@1": (ranks <= 1).double(), "mrr": 1.0 / ranks, "ranks": ranks}
    if csls:
        csls_ranks = ranks_by_scores(csls_scores(pred, candidates), answer_index, gold).double()
        pairs |= {"csls recall@1": (csls_ranks <= 1).double(), "csls mrr": 1.0 / csls_ranks}
    return pairs


def evaluate(pred: torch.Tensor, answers: torch.Tensor, candidates: torch.Tensor,
             answer_index: torch.Tensor, gold: torch.Tensor | None = None) -> dict[str, float]:
    """Mean cosine to the true answer, recall@1/5/10, MRR and hubness."""
    return summarise(per_pair(pred, answers, candidates, answer_index, gold), pred, candidates)


def summarise(pairs: dict[str, torch.Tensor], pred: torch.Tensor, candidates: torch.Tensor) -> dict[str, float]:
    """The split's scores from its per-pair ones (``per_pair``) and hubness."""
    ranks = pairs["ranks"]
    result = {"cosine": float(pairs["cosine"].mean())}
    for k in RECALL_AT:
        result[f"recall@{k}"] = float((ranks <= k).double().mean())
    result["mrr"] = float(pairs["mrr"].mean())
    for name in CSLS_PER_PAIR:
        if name in pairs:
            result[name] = float(pairs[name].mean())
    result["hubness"] = hubness(pred.float(), candidates)
    result["candidates"] = len(candidates)
    return result
