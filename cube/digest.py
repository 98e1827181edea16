"""sha256 digests: of JSON-able values (cache and resume keys, params hashes) and of files (weights)."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BLOCK = 1 << 20


def json_digest(value: Any) -> str:
    """Hex sha256 of ``value``'s JSON with sorted keys: equal values give equal digests whatever their key order."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()


@functools.cache
def library_digest() -> str:
    """sha256 of the model library's source (every ``cube/*.py``): part of a resumable checkpoint's key, so a checkpoint
    written by other training code is never resumed."""
    package = Path(__file__).resolve().parent
    return files_digest(sorted(package.glob("*.py")), root=package)


def files_digest(files: Iterable[Path], root: Path | None = None) -> str:
    """Hex sha256 over the bytes of ``files`` in the order given, each preceded by its path under ``root`` when set."""
    digest = hashlib.sha256()
    for path in files:
        if root is not None:
            digest.update(str(path.relative_to(root)).encode("utf-8"))
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(BLOCK), b""):
                digest.update(block)
    return digest.hexdigest()
