"""The learning curve's training sets: nested, exactly the size asked, the same validation and test for all."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from cube.embedded import EmbeddedData, embed_split
from cube.pairs import Pair
from harness.render.task_summary import curve_section
from harness.store.curves import LearningCurve
from harness.store.results import read_result, write_result
from harness.workflows.learning_curve import CurveRuns, ModelRun, curve_params, render, subset, summarise

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


def test_a_curve_is_summarised_written_and_read_back_through_its_type_and_rendered_alike(tmp_path):
    """Three models at two sizes from made-up scores: the file reads back equal, and the page and the task summary's
    table come from it with every model in the curve's order."""
    card = {"task": "translation", "source": "made up", "raw_pairs": 60, "duplicates_dropped": 0, "empty_dropped": 0,
            "entries_dropped": {}, "pairs": {"train": 40, "val": 10, "test": 10}, "question_groups": {},
            "distinct_answers": {}, "autoencoder_sentences": 80, "sentences": 120, "dim": 8, "teachers": []}
    data = dataclasses.replace(fake_data(), card=card)
    n = len(data.test)
    rng = torch.Generator().manual_seed(0)

    def scores(level: float) -> dict[str, list[float]]:
        return {"mrr": (level + 0.1 * torch.rand(n, generator=rng)).tolist(),
                "recall@1": (torch.rand(n, generator=rng) < level).double().tolist()}

    def seed_run(level: float) -> ModelRun:
        pairs = scores(level)
        return ModelRun(test={m: sum(v) / n for m, v in pairs.items()}, pairs=pairs, val_mrr=level, parameters=7,
                       best_epoch=1, seconds=2.0)

    identity = scores(0.2)
    runs = CurveRuns(data, {m: sum(v) / n for m, v in identity.items()}, identity,
                     {"cube": {5: {0: seed_run(0.25), 1: seed_run(0.26)}, 20: {0: seed_run(0.3), 1: seed_run(0.31)}},
                      "ridge": {5: {0: seed_run(0.1)}, 20: {0: seed_run(0.2)}},
                      "linear (contrastive)": {5: {0: seed_run(0.4), 1: seed_run(0.41)},
                                               20: {0: seed_run(0.5), 1: seed_run(0.5)}}},
                     ["cube", "linear (contrastive)", "ridge"], ["cube", "linear (contrastive)"])
    curve = summarise(runs, [5, 20], [0, 1], "python -m harness learning-curve made-up", 60.0)
    assert list(curve.models) == ["cube", "linear (contrastive)", "ridge"]
    assert curve.models["cube"][1].gain["mrr"].verdict == "better"
    assert set(curve.cube_versus) == {"linear (contrastive)", "ridge"} and set(curve.growth) == {"cube", "linear (contrastive)"}

    path = write_result(tmp_path / "learning_curve.json", curve, LearningCurve)
    back = read_result(tmp_path / "learning_curve.json", LearningCurve)
    assert back == curve and render(back) == render(curve)
    page = render(curve)
    assert page.index("| cube | 5 |") < page.index("| linear (contrastive) | 5 |") < page.index("| ridge | 5 |")
    summary = "\n".join(curve_section(tmp_path / "learning_curve.json"))
    assert summary.index("| cube | 7 |") < summary.index("| ridge | 7 |")
    assert path == curve  # the written result is the typed value itself
