"""The dictionary readers on small files in each source's real format (tests/data), odd and malformed entries included,
and the word tasks' no-leak split."""

from __future__ import annotations

import io
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from cube import sources
from cube.dictionaries import (
    DictionaryError,
    EnglishLemmas,
    definition_pairs,
    join_groups,
    parse_freedict_article,
    read_dictd,
    read_wordnet,
    translation_pairs,
)
from cube.pairs import Pair, split_by_question

DATA = Path(__file__).parent / "data"
FREEDICT_INDEX, FREEDICT_DATA = DATA / "freedict/test-eng.index", DATA / "freedict/test-eng.dict.dz"


@pytest.fixture(scope="module")
def lemmas() -> EnglishLemmas:
    return EnglishLemmas(DATA / "wordnet")


def test_dictd_reader_takes_each_article_once_and_skips_the_database_header():
    articles = list(read_dictd(FREEDICT_INDEX, FREEDICT_DATA))
    assert len(articles) == 13  # 15 index lines: one article listed under two headwords, and the header
    assert sum(a.startswith("Hund /") for a in articles) == 1
    assert not any(a.startswith("00-database") for a in articles)


def test_an_article_yields_headword_tags_and_translations_without_markup():
    headword, tags, items = parse_freedict_article(
        "Maus /mˈaʊs/ <fem, n, sg>\n [comp.] mouse <n> (pointing device); rodent (small) <n>\n   Synonym: {Computermaus}\n")
    assert (headword, tags) == ("Maus", {"fem", "n", "sg"})
    assert items == ["mouse", "rodent"]
    assert parse_freedict_article("gehen /ɡˈeːən/ <v, intr>\nto go <v>, to walk <v>\n")[2] == ["go", "walk"]
    examples = parse_freedict_article('Hund <n>\ndog <n>\n      "einen Hund abrichten"  - train a dog\n see: {Hunde}\n')
    assert examples[2] == ["dog"]  # examples and cross-references are not translations


def test_translation_pairs_keep_one_word_headwords_with_their_first_one_word_translation(lemmas):
    found = translation_pairs(FREEDICT_INDEX, FREEDICT_DATA, lemmas)
    pairs = {question: (answer, group) for question, answer, group in found.pairs}
    assert pairs == {"Hund": ("dog", "dog"), "Köter": ("cur", "cur"), "gehen": ("go", "go"),
                     "Maus": ("mouse", "mouse"), "Tisch": ("table", "table"), "online": ("online", "online")}
    assert found.counts == Counter({
        "articles": 13, "inflected form (plural)": 2,  # Hunde, Mäuse
        "untagged headword (mostly an inflected form)": 1,  # gegangen
        "multi-word or non-word headword": 1,  # aus dem Weg gehen
        "no one-word translation": 1,  # Dollarzeichen: only "dollar sign"
        "headword seen in an earlier article": 1,  # the second Maus
        "empty headword": 1,  # an article whose first line has no headword
    })


def test_a_malformed_index_names_the_file_and_line():
    with pytest.raises(DictionaryError, match=r"broken.index:2: 'B\?' is not a dictd base64 number"):
        list(read_dictd(DATA / "freedict/broken.index", FREEDICT_DATA))
    with pytest.raises(DictionaryError, match=r"truncated.index:1: article at .* is past the end"):
        list(read_dictd(DATA / "freedict/truncated.index", FREEDICT_DATA))


def test_an_article_that_is_not_utf8_names_the_file_and_its_index_line(tmp_path):
    (tmp_path / "bad.dict").write_bytes(b"Hund <n>\ndog\ncaf\xe9\n")
    (tmp_path / "bad.index").write_text("Hund\tA\tS\n", encoding="utf-8")  # offset 0, length 18
    with pytest.raises(DictionaryError, match=r"bad.dict: the article of bad.index:1 is not UTF-8 at byte 16"):
        list(read_dictd(tmp_path / "bad.index", tmp_path / "bad.dict"))


def test_wordnet_reader_drops_the_licence_header_examples_and_adjective_markers():
    entries = list(read_wordnet(DATA / "wordnet"))
    assert len(entries) == 10 + 2 + 2 + 1
    dog = entries[0]
    assert (dog.pos, dog.words, dog.gloss) == ("noun", ["dog", "domestic dog", "Canis familiaris"],
                                                "a member of the genus Canis")
    assert [e.words for e in entries if e.pos == "adj"][0] == ["good"]


def test_english_lemmas_follow_wordnet_exceptions_and_suffix_rules(lemmas):
    assert [lemmas(w) for w in ("dogs", "mice", "went", "tables", "Dog", "better", "zebras")] == \
        ["dog", "mouse", "go", "table", "dog", "good", "zebras"]  # an unknown word is its own lemma


def test_definition_pairs_count_empty_multi_word_and_duplicate_synsets(lemmas):
    found = definition_pairs(DATA / "wordnet", lemmas)
    assert ("any of numerous small rodents typically resembling diminutive rats", "mouse", "mouse") in found.pairs
    assert ("in no way", "not at all", "not at all") not in found.pairs
    assert found.counts == Counter({"synsets": 15, "no one-word lemma": 2, "empty definition": 1,
                                    "duplicate definition and word": 1})
    assert len(found.pairs) == 15 - 4


def test_words_sharing_a_definition_share_a_group_so_the_definition_is_on_one_side(lemmas):
    found = definition_pairs(DATA / "wordnet", lemmas)
    shared = [(answer, group) for question, answer, group in found.pairs if question == "the act of swimming"]
    assert shared == [("swim", "swim"), ("swimming", "swim")]
    assert join_groups([("q1", "b", "b"), ("q2", "c", "c"), ("q1", "c", "c"), ("q3", "a", "a"), ("q2", "a", "a")]) == \
        [("q1", "b", "a"), ("q2", "c", "a"), ("q1", "c", "a"), ("q3", "a", "a"), ("q2", "a", "a")]


def test_a_malformed_wordnet_line_names_the_file_and_line(tmp_path):
    folder = Path(shutil.copytree(DATA / "wordnet", tmp_path / "wordnet"))
    (folder / "broken.noun").replace(folder / "data.noun")
    with pytest.raises(DictionaryError, match=r"data.noun:3: not a WordNet synset line"):
        list(read_wordnet(folder))


def test_the_split_keeps_every_target_lemma_on_one_side(lemmas):
    """Inflections and synonyms that share a target never straddle train and test."""
    words = [(f"wort{i}", target) for i, target in enumerate(["dog", "dogs", "dog", "mouse", "mice", "table", "tables",
                                                               "go", "went", "goes"] * 3)]
    words += [(f"extra{i}", f"word{i}") for i in range(30)]
    pairs = [Pair(q, a, lemmas(a)) for q, a in words]
    for seed in range(5):
        splits = split_by_question(pairs, 0.2, 0.3, seed)
        sides = {name: {lemmas(p.answer) for p in part} for name, part in splits.named().items()}
        assert not sides["train"] & sides["test"] and not sides["train"] & sides["val"] and not sides["val"] & sides["test"]


def test_a_missing_source_says_how_to_get_it(tmp_path):
    with pytest.raises(sources.SourceMissing, match=r"make setup.*cube:cpu and cube:cuda"):
        sources.require("wordnet", tmp_path)


def test_a_debian_package_is_unpacked_without_dpkg_keeping_only_the_listed_files(tmp_path):
    """A .deb built here (ar archive, data.tar.xz) with the listed files and one more."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as archive:
        for name, content in (("./usr/share/wordnet/data.noun", b"synsets"), ("./usr/share/other", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))

    def member(name: str, content: bytes) -> bytes:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(content):<10}`\n".encode()
        return header + content + (b"\n" if len(content) % 2 else b"")

    deb = b"!<arch>\n" + member("debian-binary", b"2.0\n") + member("data.tar.xz", data.getvalue())
    source = sources.DebianSource("mini", "mini", "1", "pool/mini.deb", "0" * 64, ("./usr/share/wordnet/data.noun",),
                                  "a test package")
    sources.unpack(deb, source, tmp_path / "mini")
    assert [p.name for p in (tmp_path / "mini").iterdir()] == ["data.noun"]
    assert source.installed(tmp_path)
    with pytest.raises(ValueError, match="not a Debian package"):
        sources.unpack(b"PK\x03\x04", source, tmp_path / "other")
