"""Word pairs from real dictionaries: FreeDict (dictd format) for translation, WordNet for definition -> word.

Each reader returns the pairs it keeps and counts what it dropped and why, for the data card. A pair's ``group`` is
the English target's lemma (WordNet's morphy: ``dogs`` -> ``dog``, ``mice`` -> ``mouse``), joined with the lemmas of
any pair sharing its question, so a split that keeps groups whole puts every inflection of a target, every source
word that shares it and every copy of a question on one side.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cube.sources import WORDNET_POS

_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
WORD = re.compile(r"^[^\W\d_]+(?:['-][^\W\d_]+)*$")  # one word: letters, inner hyphens or apostrophes
# FreeDict grammar tags of a headword that is a form of another headword (plurals, participles): dropped, so a word
# and its inflections are never two questions
INFLECTED_TAGS = {"pl"}


class DictionaryError(ValueError):
    """A dictionary file that cannot be read as its format."""


@dataclass
class WordPairs:
    pairs: list[tuple[str, str, str]]  # (question, answer, group)
    counts: Counter = field(default_factory=Counter)  # entries dropped or changed, by reason


def _base64_number(text: str, path: Path, line: int) -> int:
    value = 0
    for char in text:
        digit = _BASE64.find(char)
        if digit < 0:
            raise DictionaryError(f"{path}:{line}: {text!r} is not a dictd base64 number")
        value = value * 64 + digit
    return value


def read_dictd(index: Path, data: Path) -> Iterator[str]:
    """Each article of a dictd dictionary once, in index order (the index lists an article under each headword)."""
    text = gzip.decompress(data.read_bytes()) if data.suffix == ".dz" else data.read_bytes()
    seen: set[tuple[int, int]] = set()
    for number, line in enumerate(index.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise DictionaryError(f"{index}:{number}: expected headword, offset and length separated by tabs")
        where = (_base64_number(fields[1], index, number), _base64_number(fields[2], index, number))
        if where in seen:
            continue
        seen.add(where)
        if where[0] + where[1] > len(text):
            raise DictionaryError(f"{index}:{number}: article at {where[0]}+{where[1]} is past the end of {data}")
        try:
            article = text[where[0] : where[0] + where[1]].decode("utf-8")
        except UnicodeDecodeError as err:
            raise DictionaryError(f"{data}: the article of {index.name}:{number} is not UTF-8 at byte "
                                  f"{where[0] + err.start}; fetch the source again (python -m cube.sources fetch)") from None
        if not fields[0].startswith("00database") and not fields[0].startswith("00-database"):
            yield article


_MARKUP = re.compile(r"<[^>]*>|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}")


def _translations(line: str) -> list[str]:
    """The items of one translation line without grammar tags, labels and remarks."""
    items = re.split(r"[,;]\s*(?![^()]*\))", line)
    cleaned = []
    for item in items:
        item = " ".join(_MARKUP.sub(" ", item).split()).strip(" .!?")
        cleaned.append(item[3:] if item.startswith("to ") else item)  # English infinitives: "to go" -> "go"
    return cleaned


def parse_freedict_article(article: str) -> tuple[str, set[str], list[str]]:
    """An article's headword, grammar tags and translation items (examples, notes and cross-references left out)."""
    lines = article.splitlines()
    first = lines[0] if lines else ""
    headword = " ".join(re.split(r" /| <| \(", first)[0].split())
    tag = re.search(r"<([^>]*)>", first)
    tags = {t.strip() for t in tag.group(1).split(",")} if tag else set()
    items: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if not stripped or stripped.startswith(("Note:", '"', "Synonym", "see:")):
            continue
        items.extend(_translations(stripped))
    return headword, tags, items


def translation_pairs(index: Path, data: Path, lemma: EnglishLemmas) -> WordPairs:
    """One pair per source headword: the headword and its first one-word English translation."""
    result = WordPairs([])
    taken: set[str] = set()
    for article in read_dictd(index, data):
        result.counts["articles"] += 1
        headword, tags, items = parse_freedict_article(article)
        if not headword:
            result.counts["empty headword"] += 1
        elif not WORD.match(headword):
            result.counts["multi-word or non-word headword"] += 1
        elif not tags:
            result.counts["untagged headword (mostly an inflected form)"] += 1
        elif tags & INFLECTED_TAGS:
            result.counts["inflected form (plural)"] += 1
        elif headword in taken:
            result.counts["headword seen in an earlier article"] += 1
        else:
            words = [item for item in items if WORD.match(item)]
            if not words:
                result.counts["no one-word translation"] += 1
                continue
            taken.add(headword)
            result.pairs.append((headword, words[0], lemma(words[0])))
    return result


def join_groups(pairs: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The pairs with groups joined where a question is shared: one question is never on two sides of a split.

    A group is named by the alphabetically first lemma it holds, so the result does not depend on pair order.
    """
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    first_group: dict[str, str] = {}
    for question, _, group in pairs:
        a, b = root(first_group.setdefault(question, group)), root(group)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [(question, answer, root(group)) for question, answer, group in pairs]


# ---------------------------------------------------------------- WordNet

# morphy's detachment rules (WordNet's morph.c): suffix -> replacement, per part of speech
_DETACH = {
    "noun": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
             ("ies", "y")],
    "verb": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")],
    "adj": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "adv": [],
}


@dataclass
class WordNetEntry:
    pos: str
    words: list[str]  # lemmas, spaces for underscores, adjective markers dropped
    gloss: str  # the definition, without its quoted examples


def read_wordnet(folder: Path) -> Iterator[WordNetEntry]:
    """Every synset of ``data.<pos>`` (WordNet's wndb format)."""
    for pos in WORDNET_POS:
        path = folder / f"data.{pos}"
        for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
            if line.startswith("  ") or not line.strip():
                continue  # the licence header
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            try:
                count = int(fields[3], 16)
                words = [fields[4 + 2 * i] for i in range(count)]
            except (IndexError, ValueError):
                raise DictionaryError(f"{path}:{number}: not a WordNet synset line") from None
            words = [re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in words]
            definition = re.split(r';\s*"', gloss)[0].strip().strip(";").strip()
            yield WordNetEntry(pos, words, definition)


class EnglishLemmas:
    """WordNet's lemma of an English word (its morphy): exceptions first, then suffix rules, kept only if a lemma."""

    def __init__(self, folder: Path):
        self.lemmas: dict[str, set[str]] = {pos: set() for pos in WORDNET_POS}
        for entry in read_wordnet(folder):
            self.lemmas[entry.pos].update(w.lower() for w in entry.words)
        self.exceptions: dict[str, dict[str, str]] = {pos: {} for pos in WORDNET_POS}
        for pos in WORDNET_POS:
            for line in (folder / f"{pos}.exc").read_text(encoding="latin-1").splitlines():
                fields = line.split()
                if len(fields) >= 2:
                    self.exceptions[pos].setdefault(fields[0].replace("_", " "), fields[1].replace("_", " "))

    def __call__(self, word: str) -> str:
        word = word.lower()
        if any(word in lemmas for lemmas in self.lemmas.values()):
            return word
        found = []
        for pos in WORDNET_POS:
            if word in self.exceptions[pos]:
                found.append(self.exceptions[pos][word])
            for suffix, replacement in _DETACH[pos]:
                if word.endswith(suffix) and len(word) > len(suffix):
                    base = word[: len(word) - len(suffix)] + replacement
                    if base in self.lemmas[pos]:
                        found.append(base)
        return min(found, key=len) if found else word


def definition_pairs(folder: Path, lemma: EnglishLemmas) -> WordPairs:
    """One pair per synset: its definition and its first one-word lemma (the reverse-dictionary task)."""
    result = WordPairs([])
    taken: set[tuple[str, str]] = set()
    for entry in read_wordnet(folder):
        result.counts["synsets"] += 1
        words = [w for w in entry.words if WORD.match(w)]
        if not entry.gloss:
            result.counts["empty definition"] += 1
        elif not words:
            result.counts["no one-word lemma"] += 1
        elif (entry.gloss, words[0]) in taken:
            result.counts["duplicate definition and word"] += 1
        else:
            taken.add((entry.gloss, words[0]))
            result.pairs.append((entry.gloss, words[0], lemma(words[0])))
    result.pairs = join_groups(result.pairs)  # a definition shared by two words (521 in WordNet 3.0)
    return result
