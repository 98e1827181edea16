import torch
import torch.nn.functional as F

from cube import baselines
from cube.dataset import EmbeddedSplit


def synthetic_split(name: str, q: torch.Tensor, a: torch.Tensor) -> EmbeddedSplit:
    n = len(q)
    return EmbeddedSplit(name, [None] * n, q, a, a, torch.arange(n), torch.arange(n))


def rotated_data(seed: int, n: int = 300, d: int = 12):
    g = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    q = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    return q, q @ rotation, rotation


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


def test_mlp_learns_the_map_and_counts_its_parameters():
    q, a, _ = rotated_data(1)
    train = synthetic_split("train", q[:250], a[:250])
    val = synthetic_split("val", q[250:], a[250:])
    mlp = baselines.mlp(train, val, seed=0, hidden=32, epochs=30)
    assert mlp.parameters == 12 * 32 + 32 + 32 * 12 + 12
    assert val.score(mlp.predict(val.questions))["cosine"] > val.score(val.questions)["cosine"] + 0.2


def test_mean_answer_and_legacy_transform():
    q, a, _ = rotated_data(2)
    train = synthetic_split("train", q, a)
    mean = baselines.mean_answer(train).predict(q[:3])
    assert torch.equal(mean[0], a.mean(0)) and torch.equal(mean[0], mean[2])
    legacy = baselines.legacy_transform().predict(q)
    torch.testing.assert_close(legacy, q + 0.15 * torch.tanh(q))
