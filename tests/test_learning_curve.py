"""The learning curve's training sets: nested, exactly the size asked, the same validation and test for all."""

from __future__ import annotations

from pathlib import Path

import torch

from cube.embedded import EmbeddedData, embed_split
from cube.pairs import Pair
from harness.workflows.learning_curve import curve_params, subset

ROOT = Path(__file__).resolve().parent.parent


def fake_data(n_train: int = 40) -> EmbeddedData:
    words = [f"w{i}" for i in range(n_train + 20)]
    lookup = {text: torch.randn(8, generator=torch.Generator().manual_seed(i))
              for i, text in enumerate(words + [w + "-en" for w in words])}
    pairs = [Pair(w, w + "-en", w) for w in words]
    train, val, test = (embed_split(name, part, lookup) for name, part in
                        (("train", pairs[:n_train]), ("val", pairs[n_train:n_train + 10]), ("test", pairs[n_train + 10:])))
    return EmbeddedData(train=train, val=val, test=test, sentences=train.questions, dim=8, teachers=[])


def test_training_sets_are_nested_and_exact_and_share_validation_and_test():
    data = fake_data()
    small, large = subset(data, 5), subset(data, 20)
    assert len(small.train) == 5 and len(large.train) == 20
    assert small.train.pairs == large.train.pairs[:5]  # nested: one fixed shuffle
    assert small.val is data.val and small.test is data.test
    assert len(small.sentences) == 10  # the subset's own questions and answers, for the cube's autoencoder stage
    for i, pair in enumerate(large.train.pairs):
        j = data.train.pairs.index(pair)
        assert torch.equal(large.train.questions[i], data.train.questions[j])


def test_the_profile_and_the_pool_are_laid_over_params_yaml():
    params = curve_params(ROOT / "profiles/translation.yaml", pool=14000, val=0.05, test=0.19)
    assert params.data.task == "translation" and params.data.max_pairs == 14000
    assert (params.data.val_fraction, params.data.test_fraction) == (0.05, 0.19)
