"""Teachers on the real MiniLM weights, and multi-teacher / decoder-only pooling on tiny real models."""

import dataclasses
import json
import random

import pytest
import torch

from cube.config import DataConfig, TeacherConfig, TeacherModelConfig
from cube.embedded import build_embedded_data
from cube.ensemble import Alignment, ensemble_weights, fit_alignment
from cube.pairs import Pair, split_by_question
from cube.teachers import TeacherError, get_teacher, last_token_pool, rows_per_pass
from harness.config import Params

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def minilm():
    return get_teacher(TeacherModelConfig(), CPU)


def test_minilm_gives_unit_float32_embeddings_that_know_meaning(minilm):
    texts = ["How are you?", "How are you doing today?", "The stock market fell sharply."]
    e = minilm.encode(texts, progress=False)
    assert e.shape == (3, 384) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3


def _chatterbot_sentences(count: int) -> list[str]:
    from cube.pairs import chatterbot_pairs, unique_sentences

    return unique_sentences(chatterbot_pairs("english"))[:count]


def test_an_embedding_is_the_same_bits_whatever_it_is_encoded_with(minilm):
    texts = _chatterbot_sentences(150)  # lengths from 3 to dozens of tokens, many sharing a length
    reference = minilm.encode(texts, progress=False)
    rng = random.Random(0)
    shuffled = rng.sample(range(len(texts)), len(texts))
    in_other_order = minilm.encode([texts[i] for i in shuffled], progress=False)
    assert torch.equal(in_other_order, reference[shuffled])
    one_at_a_time = torch.cat([minilm.encode([text], progress=False) for text in texts[:40]])
    assert torch.equal(one_at_a_time, reference[:40])
    for size in (2, 5, 33, 70):  # other company: random subsets, some larger than one forward pass
        rows = rng.sample(range(len(texts)), size)
        assert torch.equal(minilm.encode([texts[i] for i in rows], progress=False), reference[rows]), size
    with_strangers = minilm.encode(texts[:60] + ["a sentence no other call encodes", "ok"] * 3, progress=False)
    assert torch.equal(with_strangers[:60], reference[:60])


def test_every_forward_pass_has_the_shape_its_token_length_sets_and_no_padding(minilm, monkeypatch):
    masks = []
    forward = minilm.model.forward
    monkeypatch.setattr(minilm.model, "forward", lambda **tokens: masks.append(tokens["attention_mask"])
                        or forward(**tokens))
    minilm.encode(_chatterbot_sentences(80), progress=False)
    assert masks and all(mask.shape[0] == rows_per_pass(mask.shape[1]) and bool(mask.all()) for mask in masks)
    assert rows_per_pass(8) == 64 and rows_per_pass(256) == 2


def test_cyrillic_and_emoji_encode(minilm):
    e = minilm.encode(["Привет, как дела? 🙂", "Хорошо 👍"], progress=False)
    assert torch.isfinite(e).all() and e.shape == (2, 384)


def test_each_model_is_loaded_once_per_process(minilm):
    again = get_teacher(TeacherModelConfig(pooling="cls", max_length=64), CPU)
    assert again.model is minilm.model


def test_unknown_teacher_is_a_clear_error_without_network():
    with pytest.raises(TeacherError, match="not in the local Hugging Face cache"):
        get_teacher(TeacherModelConfig(name="no-such-org/no-such-model"), CPU)


def test_fp16_teacher_still_returns_float32(tiny_models):
    teacher = get_teacher(TeacherModelConfig(name=str(tiny_models["bert48-fp16"]), dtype="float16"), CPU)
    assert next(teacher.model.parameters()).dtype == torch.float16
    e = teacher.encode(["one sentence", "and another one"], progress=False)
    assert e.dtype == torch.float32 and e.shape == (2, 48)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(2), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_token_pooling_reads_the_last_real_token_of_a_decoder(tiny_models, side):
    teacher = get_teacher(TeacherModelConfig(name=str(tiny_models["llama40"]), pooling="last_token"), CPU)
    teacher.tokenizer.padding_side = side
    texts = ["short", "a noticeably longer sentence than the first"]
    batched = teacher.encode(texts, progress=False)
    alone = torch.cat([teacher.encode([t], progress=False) for t in texts])
    assert torch.equal(batched, alone)
    teacher.tokenizer.padding_side = "right"


def test_last_token_pool_on_a_hand_made_mask():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]])
    assert last_token_pool(hidden, mask).flatten().tolist() == [1.0, 7.0]


def test_alignment_recovers_a_rotated_wider_teacher():
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(400, 16, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(24, 24, generator=g))
    wider = torch.cat([reference, torch.zeros(400, 8)], dim=1) @ rotation  # 24-d, same geometry
    mapped = fit_alignment(wider, reference)(wider)
    torch.testing.assert_close(mapped, reference, atol=1e-3, rtol=1e-3)


def test_alignment_of_a_narrower_teacher_pads_instead_of_truncating():
    g = torch.Generator().manual_seed(1)
    narrow = torch.randn(300, 8, generator=g)
    reference = torch.cat([narrow, torch.zeros(300, 8)], dim=1) @ torch.linalg.qr(torch.randn(16, 16, generator=g))[0]
    alignment = fit_alignment(narrow, reference)
    assert alignment.reduce.shape == (8, 16)
    torch.testing.assert_close(alignment(narrow), reference, atol=1e-3, rtol=1e-3)
    assert Alignment.identity(4)(torch.ones(2, 4)).equal(torch.ones(2, 4))


def test_agreement_weights_follow_agreement_and_sum_to_one():
    assert ensemble_weights([0.3, 0.1], "agreement") == pytest.approx([0.75, 0.25])
    assert ensemble_weights([0.3, 0.1], "equal") == [0.5, 0.5]
    assert ensemble_weights([-0.1, -0.2], "agreement") == [0.5, 0.5]


def unicode_splits():
    pairs = [Pair(f"Вопрос {i}: как дела? 🙂", f"Ответ {i}: хорошо 👍") for i in range(12)]
    return split_by_question(pairs, 0.25, 0.25, seed=0)


def test_multi_teacher_of_two_widths_one_fp16_is_projected_and_weighted(tiny_models, tmp_path):
    params = Params(
        data=DataConfig(cache_dir=str(tmp_path)),
        teacher=TeacherConfig(models=(
            TeacherModelConfig(name=str(tiny_models["bert32"])),
            TeacherModelConfig(name=str(tiny_models["bert48-fp16"]), dtype="float16"),
        ), weighting="agreement", device="cpu"),
    )
    data = build_embedded_data(params, splits=unicode_splits(), progress=False)
    assert data.dim == 32
    assert [t.width for t in data.teachers] == [32, 48]
    assert sum(t.weight for t in data.teachers) == pytest.approx(1.0)
    assert data.train.questions.dtype == torch.float32 and data.train.questions.shape[1] == 32
    torch.testing.assert_close(data.train.questions.norm(dim=-1), torch.ones(len(data.train)))
    json.dumps(data.card)  # the data card, with the weights, is plain JSON


def test_real_teacher_cache_hit_on_second_build_and_unicode_survives(tmp_path):
    params = Params(data=DataConfig(cache_dir=str(tmp_path)), teacher=TeacherConfig(device="cpu"))
    first = build_embedded_data(params, splits=unicode_splits(), progress=False)
    second = build_embedded_data(params, splits=unicode_splits(), progress=False)
    assert first.run_facts[0]["encoded"] == 24 and first.run_facts[0]["cache_hits"] == 0
    assert second.run_facts[0]["encoded"] == 0 and second.run_facts[0]["cache_hits"] == 24
    assert first.card == second.card  # the card records what the inputs determine, not how this build went
    assert torch.equal(first.test.questions, second.test.questions)
    assert second.train.pairs[0].answer.endswith("хорошо 👍")


def test_multi_teacher_weights_are_reported_in_the_card(tiny_models, tmp_path):
    params = dataclasses.replace(Params(data=DataConfig(cache_dir=str(tmp_path))), teacher=TeacherConfig(models=(
        TeacherModelConfig(name=str(tiny_models["bert32"])), TeacherModelConfig(name=str(tiny_models["llama40"]),
                                                                                pooling="last_token"),
    ), device="cpu"))
    card = build_embedded_data(params, splits=unicode_splits(), progress=False).card
    assert [t["weight"] for t in card["teachers"]] == [0.5, 0.5]
