import json

import pytest
import torch

from cube.config import DataConfig
from cube.embedding_cache import EmbeddingCache
from cube.pairs import (
    DataError,
    Pair,
    chatterbot_pairs,
    file_pairs,
    load_pairs,
    normalise_question,
    split_by_question,
    unique_sentences,
)

UNICODE_PAIRS = [
    ("Привет! Как дела?", "Хорошо, спасибо 🙂"),
    ("Do you like 🍕?", "Yes — with extra cheese 🧀"),
    ("Ça va?", "Très bien, merci."),
]


CHATTERBOT = DataConfig(corpus="chatterbot", max_pairs=0)  # every English pair


def test_chatterbot_english_gives_real_pairs_and_drops_exact_duplicates():
    raw = chatterbot_pairs("english")
    pair_set = load_pairs(CHATTERBOT)
    assert len(raw) > 2000
    assert pair_set.duplicates_dropped > 1000  # tech_support repeats ten pairs about a hundred times
    assert len(pair_set.pairs) == len(set(pair_set.pairs))
    assert Pair("What is AI?", "Artificial Intelligence is the branch of engineering and science devoted to "
                "constructing machines that think.") in pair_set.pairs


def test_splits_are_disjoint_by_question_group_and_cover_everything():
    pairs = load_pairs(CHATTERBOT).pairs
    splits = split_by_question(pairs, 0.1, 0.1, seed=0)
    groups = {name: {normalise_question(p.question) for p in part} for name, part in splits.named().items()}
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert sorted(splits.train + splits.val + splits.test, key=repr) == sorted(pairs, key=repr)
    assert len(splits.test) > 50 and len(splits.val) > 50


def test_split_depends_on_the_seed_only():
    pairs = load_pairs(CHATTERBOT).pairs
    assert split_by_question(pairs, 0.1, 0.1, 3).test == split_by_question(list(pairs), 0.1, 0.1, 3).test
    assert split_by_question(pairs, 0.1, 0.1, 3).test != split_by_question(pairs, 0.1, 0.1, 4).test


def test_question_grouping_ignores_case_spacing_and_punctuation():
    assert normalise_question("  What is AI? ") == normalise_question("what is  ai")
    assert normalise_question("Что такое ИИ?") == normalise_question("что такое ии")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_cyrillic_and_emoji_round_trip_through_pair_files(tmp_path, suffix):
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".jsonl":
        lines = [json.dumps({"question": q, "answer": a}, ensure_ascii=False) for q, a in UNICODE_PAIRS]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        import csv

        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["question", "answer"])
            writer.writerows(UNICODE_PAIRS)
    assert [(p.question, p.answer) for p in file_pairs(path)] == UNICODE_PAIRS


def test_non_utf8_file_names_the_file_and_byte_offset(tmp_path):
    path = tmp_path / "pairs.jsonl"
    raw = b'{"question": "ok", "answer": "caf\xe9"}\n'
    path.write_bytes(raw)
    with pytest.raises(DataError, match=rf"pairs.jsonl is not valid UTF-8: byte offset {raw.index(0xE9)}\b"):
        file_pairs(path)


def test_missing_field_names_line_and_fields(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"question": "a", "answer": "b"}\n{"q": "c", "answer": "d"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.jsonl:2: missing field\(s\) 'question'.*data.question_field"):
        file_pairs(path)


def test_empty_corpus_is_a_clear_error(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("question,answer\n", encoding="utf-8")
    with pytest.raises(DataError, match="no question/answer pairs"):
        load_pairs(DataConfig(corpus="file", path=str(path)))


def test_unique_sentences_keep_first_seen_order():
    pairs = [Pair("a", "b"), Pair("b", "c"), Pair("a", "c")]
    assert unique_sentences(pairs) == ["a", "b", "c"]


def fake_encoder(calls: list[int]):
    def encode(texts: list[str]) -> torch.Tensor:
        calls.append(len(texts))
        return torch.stack([torch.tensor([float(len(t)), float(sum(map(ord, t)) % 97)]) for t in texts])

    return encode


def test_cache_round_trips_unicode_text_and_encodes_nothing_the_second_time(tmp_path):
    texts = [t for pair in UNICODE_PAIRS for t in pair]
    calls: list[int] = []
    first = EmbeddingCache(tmp_path, "key", {"model": "fake"}).get(texts, fake_encoder(calls))
    second_cache = EmbeddingCache(tmp_path, "key", {"model": "fake"})
    second = second_cache.get(list(reversed(texts)), fake_encoder(calls))
    assert calls == [len(texts)]
    assert second_cache.stats.encoded == 0 and second_cache.stats.hits == len(texts)
    assert torch.equal(second, first.flip(0))


@pytest.mark.fault
def test_corrupted_cache_is_detected_and_rebuilt(tmp_path):
    texts = ["one", "two", "three"]
    calls: list[int] = []
    EmbeddingCache(tmp_path, "key", {}).get(texts, fake_encoder(calls))
    path = tmp_path / "key.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the embeddings
    path.write_bytes(bytes(data))
    cache = EmbeddingCache(tmp_path, "key", {})
    assert cache.stats.rebuilt
    cache.get(texts, fake_encoder(calls))
    assert calls == [3, 3]
    assert not EmbeddingCache(tmp_path, "key", {}).stats.rebuilt


def test_a_redrawn_split_keeps_every_pair_and_its_embeddings_and_keeps_questions_in_one_split():
    import torch

    from cube.embedded import EmbeddedData, embed_split, redraw_split
    from cube.pairs import Pair

    pairs = [Pair(f"question {i % 40}?", f"answer {i}") for i in range(120)]
    lookup = {text: torch.randn(8) for p in pairs for text in (p.question, p.answer)}
    first = split_by_question(pairs, 0.2, 0.2, 0)
    splits = {name: embed_split(name, chosen, lookup) for name, chosen in first.named().items()}
    data = EmbeddedData(splits["train"], splits["val"], splits["test"], torch.zeros(1, 8), 8, [], {})
    again = redraw_split(data, 0.2, 0.2, 1)
    assert sorted(p.answer for s in (again.train, again.val, again.test) for p in s.pairs) == sorted(
        p.answer for p in pairs)
    assert {p.question for p in again.test.pairs} != {p.question for p in data.test.pairs}
    assert not {p.question for p in again.test.pairs} & {p.question for p in again.train.pairs}
    row = again.test.pairs.index(again.test.pairs[0])
    assert torch.equal(again.test.questions[row], lookup[again.test.pairs[0].question])
    assert len(again.sentences) == len({t for p in again.train.pairs for t in (p.question, p.answer)})
