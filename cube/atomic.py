"""Atomic file writes: write a temporary file beside the target, fsync, rename over it.

A reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target``, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | Path, obj: Any, sort_keys: bool = True) -> None:
    """Indented JSON; keys sorted unless the object's own order means something (``sort_keys=False``)."""
    write_text(target, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n")


def write_with(target: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomic write through a function that writes to a path (e.g. safetensors' save_file)."""
    with atomic_path(target) as tmp:
        writer(tmp)
