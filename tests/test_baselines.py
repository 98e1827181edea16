import dataclasses

import pytest
import torch
import torch.nn.functional as F

from cube import baselines, rivals
from cube.config import BaselinesConfig, MLPBaselineConfig, TrainConfig, TunedStage
from cube.embedded import EmbeddedData, EmbeddedSplit


def synthetic_split(name: str, q: torch.Tensor, a: torch.Tensor) -> EmbeddedSplit:
    n = len(q)
    return EmbeddedSplit(name, [None] * n, q, a, a, torch.arange(n), torch.arange(n))


def rotated_data(seed: int, n: int = 300, d: int = 12):
    g = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    q = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    return q, q @ rotation, rotation


def rotated_embedded(seed: int) -> EmbeddedData:
    q, a, _ = rotated_data(seed)
    splits = [synthetic_split(name, q[lo:hi], a[lo:hi]) for name, lo, hi in
              (("train", 0, 200), ("val", 200, 250), ("test", 250, 300))]
    return EmbeddedData(*splits, sentences=q[:200], dim=q.shape[1], teachers=[])


def short_training(lr: float | None = None) -> TrainConfig:
    """The cube's stage settings with few epochs (and every stage's lr replaced when ``lr`` is given)."""
    train = TrainConfig()
    changes = {"epochs": 4} | ({"lr": lr} if lr is not None else {})
    return dataclasses.replace(train, **{s: dataclasses.replace(getattr(train, s), **changes)
                                         for s in baselines.TRAINED_STAGES})


def test_procrustes_and_ridge_recover_a_rotation_and_beat_identity():
    q, a, rotation = rotated_data(0)
    train = synthetic_split("train", q[:200], a[:200])
    val = synthetic_split("val", q[200:250], a[200:250])
    test = synthetic_split("test", q[250:], a[250:])
    fitted = baselines.procrustes(train)
    torch.testing.assert_close(fitted.predict(test.questions), test.answers, atol=1e-4, rtol=1e-4)
    ridge = baselines.ridge(train, val)
    assert test.score(ridge.predict(test.questions))["cosine"] > 0.99
    assert test.score(baselines.identity().predict(test.questions))["cosine"] < 0.5


@pytest.mark.parametrize("fit", [baselines.mlp, baselines.linear], ids=["mlp", "linear"])
def test_a_trainable_baseline_learns_through_the_cubes_stages(fit):
    data = rotated_embedded(1)
    config = BaselinesConfig(mlp=MLPBaselineConfig(hidden=32, lr=3e-3), linear=TunedStage(lr=3e-3))
    fitted = fit(data, 0, config, short_training(lr=1e-2))
    assert list(fitted.stages) == ["dialogue", "optimized", "advanced"]
    assert fitted.stages["advanced"]["monitor"] == "mrr" and fitted.stages["dialogue"]["monitor"] == "cosine"
    assert fitted.tuning == f"{rivals.SWEPT} (stages: dialogue -> optimized -> advanced)"
    identity = data.val.score(data.val.questions)["cosine"]
    assert data.val.score(fitted.predict(data.val.questions))["cosine"] > identity + 0.2


@pytest.mark.parametrize("fit", [baselines.mlp, baselines.linear], ids=["mlp", "linear"])
def test_a_baseline_trained_with_lr_0_keeps_its_starting_map(fit):
    data = rotated_embedded(2)
    config = BaselinesConfig(mlp=MLPBaselineConfig(hidden=32, lr=0.0), linear=TunedStage(lr=0.0))
    fitted = fit(data, 0, config, short_training(lr=0.0))
    assert all(stage["best_epoch"] == 0 for stage in fitted.stages.values()), fitted.stages
    torch.testing.assert_close(fitted.predict(data.test.questions), data.test.questions)  # the identity it started as
    assert "kept its starting map" in fitted.note


def test_parameter_counts():
    data = rotated_embedded(3)
    config = BaselinesConfig(mlp=MLPBaselineConfig(hidden=32))
    assert baselines.mlp(data, 0, config, short_training()).parameters == 12 * 32 + 32 + 32 * 12 + 12
    assert baselines.linear(data, 0, config, short_training()).parameters == 12 * 12 + 12


def test_tuned_values_change_the_advanced_stage_only():
    train = TrainConfig()
    stages = baselines.stage_configs(train, TunedStage(lr=1e-4, weight_decay=0.2, infonce_temperature=0.07))
    assert stages["dialogue"] == train.dialogue and stages["optimized"] == train.optimized
    assert (stages["advanced"].lr, stages["advanced"].weight_decay, stages["advanced"].infonce_temperature) == (
        1e-4, 0.2, 0.07)
    assert dataclasses.replace(stages["advanced"], lr=train.advanced.lr, weight_decay=train.advanced.weight_decay,
                               infonce_temperature=train.advanced.infonce_temperature) == train.advanced


def test_without_the_chain_a_baseline_trains_the_advanced_stage_alone():
    data = rotated_embedded(4)
    config = BaselinesConfig(linear=TunedStage(lr=3e-3, chain=False))
    fitted = baselines.linear(data, 0, config, short_training(lr=1e-2))
    assert list(fitted.stages) == ["advanced"] and fitted.tuning.endswith("(stages: advanced)")
    assert fitted.stages["advanced"]["best_epoch"] > 0


def test_mean_answer_and_legacy_transform():
    q, a, _ = rotated_data(2)
    train = synthetic_split("train", q, a)
    mean = baselines.mean_answer(train).predict(q[:3])
    assert torch.equal(mean[0], a.mean(0)) and torch.equal(mean[0], mean[2])
    legacy = baselines.legacy_transform().predict(q)
    torch.testing.assert_close(legacy, q + 0.15 * torch.tanh(q))
