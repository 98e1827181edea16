"""Pairs and teachers -> embedded train/val/test splits ready for the cube.

Embeddings come through the on-disk cache; with several teachers the alignment
and the ensemble weights are fit on the training split only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from cube import atomic, ensemble, measures, metrics
from cube.card import TeacherInfo
from cube.config import ModelParams
from cube.device import choose_device
from cube.embedding_cache import EmbeddingCache
from cube.pairs import Pair, Splits, load_pairs, split_by_question, unique_sentences
from cube.teachers import Teacher, get_teacher, weights_hash


@dataclass
class EmbeddedSplit:
    """One split as tensors: questions, answers, and the retrieval candidates (distinct answers)."""

    name: str
    pairs: list[Pair]
    questions: torch.Tensor  # (N, D)
    answers: torch.Tensor  # (N, D)
    candidates: torch.Tensor  # (M, D): each distinct answer text once
    answer_index: torch.Tensor  # (N,): row of each pair's answer in candidates
    group: torch.Tensor  # (N,): id of each pair's group (``Pair.group_key``: its normalised question by default)

    def __len__(self) -> int:
        return len(self.pairs)

    def difficulty(self) -> torch.Tensor:
        """1 - teacher cos(q, a): a pair is hard when its answer is far from its question."""
        return 1.0 - F.cosine_similarity(self.questions, self.answers, dim=-1)

    def score(self, pred: torch.Tensor) -> dict[str, float]:
        """Every quality metric of predictions for this split's pairs."""
        return metrics.evaluate(pred, self.answers, self.candidates, self.answer_index, self.gold_mask())

    def score_with_pairs(self, pred: torch.Tensor,
                         csls: bool = False) -> tuple[dict[str, float], dict[str, list[float]]]:
        """``score`` and each pair's cosine, hit@1 and reciprocal rank (``measures.PER_PAIR``), ranked once; ``csls``
        adds the hit and reciprocal rank under CSLS retrieval (``measures.CSLS_PER_PAIR``)."""
        pairs = metrics.per_pair(pred, self.answers, self.candidates, self.answer_index, self.gold_mask(), csls)
        kept = measures.PER_PAIR + (measures.CSLS_PER_PAIR if csls else ())
        return metrics.summarise(pairs, pred, self.candidates), {name: pairs[name].tolist() for name in kept}

    def gold_mask(self) -> torch.Tensor:
        """(N, M) True where a candidate is an answer to the same question group as the pair."""
        n_groups = int(self.group.max()) + 1 if len(self) else 0
        by_group = torch.zeros(n_groups, len(self.candidates), dtype=torch.bool)
        by_group[self.group, self.answer_index] = True
        return by_group[self.group]


@dataclass
class EmbeddedData:
    train: EmbeddedSplit
    val: EmbeddedSplit
    test: EmbeddedSplit
    sentences: torch.Tensor  # autoencoder set: unique sentences of the training split
    dim: int
    teachers: list[TeacherInfo]
    card: dict[str, Any] = field(default_factory=dict)  # what the inputs determine: identical on a re-run
    # how this build went (sentences encoded, cache hits): differs between identical runs, so kept out of the card
    run_facts: list[dict[str, Any]] = field(default_factory=list)

    def split(self, name: str) -> EmbeddedSplit:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def embed_split(name: str, pairs: list[Pair], lookup: dict[str, torch.Tensor]) -> EmbeddedSplit:
    answers_text = list(dict.fromkeys(p.answer for p in pairs))
    answer_row = {text: i for i, text in enumerate(answers_text)}
    groups: dict[str, int] = {}
    group_ids = [groups.setdefault(p.group_key(), len(groups)) for p in pairs]
    stack = lambda texts: torch.stack([lookup[t] for t in texts]) if texts else torch.empty(0)  # noqa: E731
    return EmbeddedSplit(
        name=name,
        pairs=pairs,
        questions=stack([p.question for p in pairs]),
        answers=stack([p.answer for p in pairs]),
        candidates=stack(answers_text),
        answer_index=torch.tensor([answer_row[p.answer] for p in pairs], dtype=torch.long),
        group=torch.tensor(group_ids, dtype=torch.long),
    )


def open_cache(teacher: Teacher, cache_dir: str | Path) -> EmbeddingCache:
    """The on-disk cache of ``teacher``'s embeddings (its file is named by ``Teacher.key``)."""
    description = {
        "model": teacher.config.name,
        "weights_sha256": weights_hash(teacher.model_dir),
        "pooling": teacher.config.pooling,
        "max_length": teacher.config.max_length,
        "dtype": teacher.config.dtype,
    }
    return EmbeddingCache(cache_dir, teacher.key, description)


def _teacher_embeddings(
    teacher: Teacher, texts: list[str], params: ModelParams, progress: bool
) -> tuple[torch.Tensor, EmbeddingCache]:
    cache = open_cache(teacher, params.data.cache_dir)
    vectors = cache.get(texts, lambda missing: teacher.encode(missing, progress))
    return vectors, cache


def build_embedded_data(params: ModelParams, splits: Splits | None = None, progress: bool = True) -> EmbeddedData:
    """Load the corpus, split it, embed every sentence with every teacher, and ensemble."""
    pair_set = None
    if splits is None:
        pair_set = load_pairs(params.data)
        splits = split_by_question(pair_set.pairs, params.data.val_fraction, params.data.test_fraction, params.seed)
    everything = unique_sentences(splits.train + splits.val + splits.test)
    train_sentences = unique_sentences(splits.train)
    row = {text: i for i, text in enumerate(everything)}
    train_rows = torch.tensor([row[t] for t in train_sentences])
    train_q = torch.tensor([row[p.question] for p in splits.train])
    train_a = torch.tensor([row[p.answer] for p in splits.train])

    device = choose_device(params.teacher.device).device
    aligned, infos, reference, run_facts = [], [], None, []
    for model_config in params.teacher.models:
        teacher = get_teacher(model_config, device, params.teacher.offline)
        vectors, cache = _teacher_embeddings(teacher, everything, params, progress)
        run_facts.append({"teacher": model_config.name, "encoded": cache.stats.encoded, "cache_hits": cache.stats.hits,
                          "cache_rebuilt": cache.stats.rebuilt})
        if reference is None:
            reference = vectors
            alignment = ensemble.Alignment.identity(vectors.shape[1])
        else:
            alignment = ensemble.fit_alignment(vectors[train_rows], reference[train_rows])
        mapped = alignment(vectors)
        aligned.append(mapped)
        infos.append(TeacherInfo(
            name=model_config.name, width=teacher.width, pooling=model_config.pooling, dtype=model_config.dtype,
            weights_sha256=weights_hash(teacher.model_dir), weight=0.0,
            pair_agreement=ensemble.pair_agreement(vectors[train_q], vectors[train_a]),
            truncated=teacher.count_truncated(everything),
        ))
    weights = ensemble.ensemble_weights([i.pair_agreement for i in infos], params.teacher.weighting)
    for info, weight in zip(infos, weights):
        info.weight = weight
    combined = ensemble.combine(aligned, weights)
    lookup = dict(zip(everything, combined))

    embedded = {name: embed_split(name, pairs, lookup) for name, pairs in splits.named().items()}
    dim = combined.shape[1]
    card = {
        "task": params.data.task,
        "source": pair_set.source if pair_set else "given splits",
        "raw_pairs": pair_set.raw_count if pair_set else None,
        "duplicates_dropped": pair_set.duplicates_dropped if pair_set else None,
        "empty_dropped": pair_set.empty_dropped if pair_set else None,
        "entries_dropped": pair_set.dropped if pair_set else {},
        "pairs": {name: len(s) for name, s in embedded.items()},
        "question_groups": splits.groups,
        "distinct_answers": {name: len(s.candidates) for name, s in embedded.items()},
        "autoencoder_sentences": len(train_sentences),
        "sentences": len(everything),
        "dim": dim,
        "teachers": [asdict(i) for i in infos],
    }
    return EmbeddedData(
        train=embedded["train"], val=embedded["val"], test=embedded["test"],
        sentences=combined[train_rows], dim=dim, teachers=infos, card=card, run_facts=run_facts,
    )


def redraw_split(data: EmbeddedData, val_fraction: float, test_fraction: float, seed: int) -> EmbeddedData:
    """The same embedded pairs split again by question under ``seed`` (nothing is re-encoded).

    With several teachers the ensemble alignment was fit on the first split's training pairs, which the new
    split may test on, so only a single teacher may be re-split.
    """
    if len(data.teachers) > 1:
        raise ValueError("quality.resplit needs a single teacher: the ensemble alignment was fit on the first split's "
                         "training pairs; set quality.resplit: false or use one teacher")
    lookup: dict[str, torch.Tensor] = {}
    for split in (data.train, data.val, data.test):
        lookup.update(zip((p.question for p in split.pairs), split.questions))
        lookup.update(zip((p.answer for p in split.pairs), split.answers))
    splits = split_by_question(data.train.pairs + data.val.pairs + data.test.pairs, val_fraction, test_fraction, seed)
    embedded = {name: embed_split(name, pairs, lookup) for name, pairs in splits.named().items()}
    sentences = torch.stack([lookup[t] for t in unique_sentences(splits.train)])
    card = data.card | {"pairs": {name: len(s) for name, s in embedded.items()}, "question_groups": splits.groups,
                        "distinct_answers": {name: len(s.candidates) for name, s in embedded.items()},
                        "autoencoder_sentences": len(sentences), "split_seed": seed}
    return EmbeddedData(embedded["train"], embedded["val"], embedded["test"], sentences, data.dim, data.teachers, card)


# ---------------------------------------------------------------- on disk

SPLIT_TENSORS = ("questions", "answers", "candidates", "answer_index", "group")


def save_embedded(data: EmbeddedData, directory: str | Path) -> None:
    """Write embedded splits as ``embeddings.safetensors`` + ``pairs.json`` + ``card.json`` (atomically)."""
    directory = Path(directory)
    tensors = {"sentences": data.sentences.contiguous()}
    texts: dict[str, list[list[str]]] = {}
    for name in ("train", "val", "test"):
        split = data.split(name)
        tensors.update({f"{name}.{key}": getattr(split, key).contiguous() for key in SPLIT_TENSORS})
        texts[name] = [[p.question, p.answer, p.group] if p.group else [p.question, p.answer] for p in split.pairs]
    atomic.write_with(directory / "embeddings.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    atomic.write_json(directory / "pairs.json", texts)
    atomic.write_json(directory / "card.json", data.card)


def load_embedded(directory: str | Path) -> EmbeddedData:
    """Read what ``save_embedded`` wrote; a missing folder says which stage makes it."""
    directory = Path(directory)
    needed = [directory / name for name in ("embeddings.safetensors", "pairs.json", "card.json")]
    missing = [p.name for p in needed if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{directory} lacks {', '.join(missing)}; run the datasets stage first (dvc repro datasets)")
    tensors = load_file(needed[0])
    texts = json.loads(needed[1].read_text(encoding="utf-8"))
    card = json.loads(needed[2].read_text(encoding="utf-8"))
    splits = {}
    for name in ("train", "val", "test"):
        pairs = [Pair(*row) for row in texts[name]]
        splits[name] = EmbeddedSplit(name, pairs, **{key: tensors[f"{name}.{key}"] for key in SPLIT_TENSORS})
    teachers = [TeacherInfo(**t) for t in card["teachers"]]
    return EmbeddedData(splits["train"], splits["val"], splits["test"], tensors["sentences"], card["dim"], teachers, card)
