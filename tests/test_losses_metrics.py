import pytest
import torch
import torch.nn.functional as F

from cube.config import StageConfig
from cube.losses import (
    cosine_loss,
    curriculum_subset,
    diversity_penalty,
    infonce_loss,
    mse_loss,
    stage_loss,
    triplet_loss,
)
from cube.metrics import csls_scores, evaluate, hubness, retrieval_ranks


def unit(n: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_cosine_loss_is_zero_for_a_perfect_prediction_and_two_for_the_opposite():
    t = unit(8)
    assert cosine_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert cosine_loss(-t, t).item() == pytest.approx(2.0, abs=1e-6)


def test_infonce_prefers_matched_pairs_and_ignores_duplicate_targets():
    t = unit(16)
    assert infonce_loss(t, t, 0.05) < infonce_loss(t.roll(1, 0), t, 0.05)
    duplicated = torch.cat([t[:1], t[:1]])
    assert infonce_loss(duplicated, duplicated, 0.05).item() == pytest.approx(0.0, abs=1e-4)


def test_triplet_uses_the_hardest_negative():
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    pred = torch.tensor([[1.0, 0.0]] * 3)
    # hinge(0.5 - positive + hardest negative) per row: 0.5-1+0.8, 0.5-0+1, 0.5-0.8+1
    assert triplet_loss(pred, targets, 0.5).item() == pytest.approx((0.3 + 1.5 + 0.7) / 3, abs=1e-5)
    assert triplet_loss(targets, targets, 0.1).item() == pytest.approx(0.0, abs=1e-6)


def test_diversity_penalty_is_high_when_predictions_collapse():
    assert diversity_penalty(unit(1).expand(8, 16)).item() == pytest.approx(1.0, abs=1e-5)
    assert diversity_penalty(unit(8)) < 0.5


def test_stage_loss_mixes_only_the_weighted_parts():
    config = StageConfig(cosine_weight=1.0, mse_weight=0.5, infonce_weight=0.0, triplet_weight=0.25,
                         diversity_weight=0.1)
    total, parts = stage_loss(unit(8, seed=1), unit(8, seed=2), config)
    assert set(parts) == {"cosine", "mse", "triplet", "diversity"}
    assert total.item() == pytest.approx(sum(float(p) for p in parts.values()), rel=1e-5)


def textbook_losses(pred: torch.Tensor, target: torch.Tensor, temperature: float, margin: float) -> dict[str, torch.Tensor]:
    """Each loss written the plain way, independently of cube.losses: means over the batch, duplicates masked."""
    p, t = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    sims = p @ t.T
    same = (t @ t.T > 1 - 1e-6) & ~torch.eye(len(t), dtype=torch.bool)
    logits = (sims / temperature).masked_fill(same, float("-inf"))
    hardest = sims.masked_fill(same | torch.eye(len(t), dtype=torch.bool), float("-inf")).max(dim=1).values
    pp = p @ p.T
    return {"cosine": (1 - F.cosine_similarity(pred, target, dim=-1)).mean(), "mse": F.mse_loss(pred, target),
            "infonce": F.cross_entropy(logits, torch.arange(len(p))),
            "triplet": F.relu(margin - sims.diagonal() + hardest).mean(),
            "diversity": (pp.sum() - pp.diagonal().sum()) / (len(p) * (len(p) - 1))}


def test_each_loss_equals_its_textbook_definition_alone_and_times_its_weight_in_the_stage_mix():
    pred, target = unit(12, seed=3), unit(12, seed=4)
    target[5] = target[0]  # a duplicate target, masked as a negative by InfoNCE and the triplet
    config = StageConfig(cosine_weight=1.0, mse_weight=2.0, infonce_weight=0.5, infonce_temperature=0.1,
                         triplet_weight=0.25, triplet_margin=0.3, diversity_weight=0.05)
    _, parts = stage_loss(pred, target, config)
    textbook = textbook_losses(pred, target, 0.1, 0.3)
    alone = {"cosine": cosine_loss(pred, target), "mse": mse_loss(pred, target),
             "infonce": infonce_loss(pred, target, 0.1), "triplet": triplet_loss(pred, target, 0.3),
             "diversity": diversity_penalty(pred)}
    weights = {"cosine": 1.0, "mse": 2.0, "infonce": 0.5, "triplet": 0.25, "diversity": 0.05}
    for name, value in textbook.items():
        torch.testing.assert_close(alone[name], value, rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(parts[name], weights[name] * value, rtol=1e-5, atol=1e-6, msg=name)


def test_curriculum_goes_from_easy_to_all():
    difficulty = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])
    config = StageConfig(curriculum=True, curriculum_start=0.3, curriculum_epochs=2)
    first = curriculum_subset(difficulty, 0, config)
    assert sorted(difficulty[first].tolist()) == pytest.approx([0.0, 0.1, 0.2])
    assert len(curriculum_subset(difficulty, 1, config)) == round(0.65 * 10)
    assert len(curriculum_subset(difficulty, 2, config)) == 10
    assert len(curriculum_subset(difficulty, 0, StageConfig())) == 10


def test_perfect_predictions_rank_first():
    answers = unit(20)
    result = evaluate(answers, answers, answers, torch.arange(20))
    assert result["recall@1"] == 1.0 and result["mrr"] == 1.0 and result["cosine"] == pytest.approx(1.0)


def test_ranks_count_better_candidates_and_skip_other_gold_answers():
    candidates = torch.eye(3)
    pred = torch.tensor([[0.1, 1.0, 0.5]])  # prefers candidate 1, then 2, then 0
    assert retrieval_ranks(pred, candidates, torch.tensor([0])).tolist() == [3]
    gold = torch.tensor([[True, True, False]])  # candidate 1 is another right answer of the same question
    assert retrieval_ranks(pred, candidates, torch.tensor([0]), gold).tolist() == [2]


def test_recall_and_mrr_on_a_known_ranking():
    candidates = torch.eye(4)
    pred = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.5]])
    result = evaluate(pred, candidates[[0, 3]], candidates, torch.tensor([0, 3]))
    assert result["recall@1"] == 0.5 and result["mrr"] == pytest.approx((1 + 1 / 2) / 2)


def test_hubness_is_zero_when_even_and_large_with_a_hub():
    candidates = unit(50, seed=3)
    assert hubness(candidates, candidates, k=1) == 0.0
    hub_queries = candidates[:1].expand(50, -1) + 0.01 * unit(50, seed=4)
    assert hubness(hub_queries, candidates, k=1) > 3.0


def test_csls_takes_a_hubs_pull_away_and_matches_its_definition():
    """Every query leans towards one candidate (a hub) a little more than towards its own: cosine ranks the hub
    first for all, CSLS ranks each query's own candidate first."""
    candidates = unit(20, seed=5)
    hub = candidates[0]
    queries = candidates + 1.2 * hub
    cos = F.normalize(queries, dim=-1) @ candidates.T
    assert (cos.argmax(dim=1) == 0).all()
    scores = csls_scores(queries, candidates, k=3)
    assert (scores.argmax(dim=1) == torch.arange(20)).all()
    r_queries, r_candidates = cos.topk(3, dim=1).values.mean(1), cos.topk(3, dim=0).values.mean(0)
    assert torch.allclose(scores, 2 * cos - r_queries[:, None] - r_candidates[None, :], atol=1e-6)


def test_a_task_ranked_by_csls_scores_each_pair_both_ways_and_the_others_only_by_cosine():
    from cube.metrics import CSLS_PER_PAIR, per_pair, summarise

    candidates = unit(20, seed=5)
    queries = candidates + 1.2 * candidates[0]  # every query nearer the hub than its own candidate
    index = torch.arange(20)
    plain = per_pair(queries, candidates, candidates, index)
    assert not set(CSLS_PER_PAIR) & set(plain)
    both = per_pair(queries, candidates, candidates, index, csls=True)
    assert both["recall@1"].sum() == 1  # only the hub's own query
    assert (both["csls recall@1"] == 1).all() and (both["csls mrr"] == 1).all()
    assert summarise(both, queries, candidates)["csls mrr"] == 1.0
    assert "csls mrr" not in summarise(plain, queries, candidates)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_predictions_are_refused_never_ranked_as_hits(bad):
    from cube.metrics import NonFinitePredictions

    answers = unit(6, seed=4)
    pred = answers.clone()
    pred[2] = bad
    with pytest.raises(NonFinitePredictions, match="1 of 6 rows hold NaN or Inf"):
        evaluate(pred, answers, answers, torch.arange(6))
    with pytest.raises(NonFinitePredictions):
        retrieval_ranks(torch.full_like(answers, bad), answers, torch.arange(6))
