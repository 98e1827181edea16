"""The data card's record of each teacher: read back by the harness without loading the data or the teachers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass
class TeacherInfo:
    """One teacher as ``data/embedded/card.json`` records it (its ``teachers``; read back strictly by the harness)."""

    __pydantic_config__: ClassVar[dict[str, str]] = {"extra": "forbid"}  # pydantic reads it; cube needs no pydantic

    name: str
    width: int
    pooling: str
    dtype: str
    weights_sha256: str
    weight: float
    pair_agreement: float
    truncated: int  # texts longer than the teacher's max_length, of all the splits' sentences
