"""On-disk cache of teacher embeddings (safetensors), so a second run encodes nothing.

One file per teacher identity (model, weights hash, pooling, max length, dtype,
forward-pass layout: ``Teacher.key``). Rows are keyed by the sha256 of the UTF-8
text. The file's metadata carries a sha256 of its contents: a corrupted file is
detected, reported and rebuilt rather than read. A teacher's vector depends on
its sentence alone (``Teacher.encode``), so whether a row comes from here or is
encoded afresh never changes an output.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from cube import atomic

log = logging.getLogger(__name__)


def text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _content_hash(keys: torch.Tensor, embeddings: torch.Tensor) -> str:
    digest = hashlib.sha256(keys.contiguous().numpy().tobytes())
    digest.update(embeddings.contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    encoded: int = 0
    rebuilt: bool = False


class EmbeddingCache:
    def __init__(self, directory: str | Path, teacher_key: str, description: dict[str, str]) -> None:
        self.path = Path(directory) / f"{teacher_key}.safetensors"
        self.description = {k: str(v) for k, v in description.items()}
        self.rows: dict[bytes, int] = {}
        self.keys = torch.empty(0, 32, dtype=torch.uint8)
        self.embeddings: torch.Tensor | None = None
        self.stats = CacheStats()
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            tensors = load_file(self.path)
            with safe_open(self.path, "pt") as handle:
                meta = handle.metadata() or {}
            keys, embeddings = tensors["keys"], tensors["embeddings"]
            if meta.get("content_sha256") != _content_hash(keys, embeddings):
                raise ValueError("content hash mismatch")
        except (SafetensorError, ValueError, KeyError, OSError) as err:
            log.warning("embedding cache %s is corrupt (%s); it will be rebuilt", self.path, err)
            self.stats.rebuilt = True
            return
        self.keys, self.embeddings = keys, embeddings
        self.rows = {bytes(k.tolist()): i for i, k in enumerate(keys)}

    def get(self, texts: Sequence[str], encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        """Embeddings of ``texts`` in order; only texts never seen before go through ``encode``."""
        digests = [text_digest(t) for t in texts]
        missing: dict[bytes, str] = {}
        for digest, text in zip(digests, texts):
            if digest not in self.rows and digest not in missing:
                missing[digest] = text
        self.stats.hits += len(texts) - len(missing)
        if missing:
            fresh = encode(list(missing.values())).float().cpu()
            self.stats.encoded += len(missing)
            self._append(list(missing), fresh)
        index = torch.tensor([self.rows[d] for d in digests], dtype=torch.long)
        if self.embeddings is None:
            return torch.empty(0, 0)
        return self.embeddings[index]

    def _append(self, digests: list[bytes], fresh: torch.Tensor) -> None:
        new_keys = torch.tensor([list(d) for d in digests], dtype=torch.uint8)
        start = len(self.rows)
        self.keys = torch.cat([self.keys, new_keys])
        self.embeddings = fresh if self.embeddings is None else torch.cat([self.embeddings, fresh])
        self.rows.update({d: start + i for i, d in enumerate(digests)})
        meta = dict(self.description, content_sha256=_content_hash(self.keys, self.embeddings))
        tensors = {"keys": self.keys.contiguous(), "embeddings": self.embeddings.contiguous()}
        atomic.write_with(self.path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
