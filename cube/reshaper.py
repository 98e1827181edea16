"""(B, D) embeddings <-> (B, X, Y, Z) lattices, in torch, gradients intact."""

from __future__ import annotations

import math

import torch
from torch import nn


class LatticeSizeError(ValueError):
    """The lattice cannot hold the embedding without an adapter."""


def factor_shapes(dim: int) -> list[tuple[int, int, int]]:
    """Every (x, y, z) with x * y * z == dim."""
    shapes = []
    for x in range(1, dim + 1):
        if dim % x:
            continue
        rest = dim // x
        for y in range(1, rest + 1):
            if rest % y == 0:
                shapes.append((x, y, rest // y))
    return shapes


def nearest_shapes(dim: int, lattice: tuple[int, int, int], count: int = 3) -> list[tuple[int, int, int]]:
    """Lattice shapes holding exactly ``dim`` cells, closest (in log-ratio per side) to ``lattice``."""

    def distance(shape: tuple[int, int, int]) -> float:
        return sum(abs(math.log(s / max(t, 1))) for s, t in zip(shape, lattice))

    return sorted(factor_shapes(dim), key=lambda s: (distance(s), s))[:count]


def check_lattice(dim: int, lattice: tuple[int, int, int], adapter: str) -> None:
    """Raise LatticeSizeError naming valid shapes when the lattice cannot hold ``dim`` values."""
    cells = math.prod(lattice)
    if adapter == "none" and cells != dim:
        shapes = ", ".join("x".join(map(str, s)) for s in nearest_shapes(dim, lattice))
        x, y, z = lattice
        raise LatticeSizeError(
            f"a {dim}-d embedding does not fit lattice {x}x{y}x{z} = {cells} cells; "
            f"lattices near it that hold exactly {dim}: {shapes}; "
            "or set cube.adapter: linear to project any width onto the lattice"
        )


class EmbeddingReshaper(nn.Module):
    """Embedding (B, D) to lattice (B, X, Y, Z) and back.

    With ``adapter="none"`` D must equal X*Y*Z and the mapping is a pure view, or, with ``placed``, a fixed
    permutation (cell c holds dimension ``order[c]``, a buffer set by ``place`` and kept in the state dict).
    With ``adapter="linear"`` a learned projection maps D -> X*Y*Z and back.
    """

    def __init__(self, dim: int, lattice: tuple[int, int, int], adapter: str = "none", placed: bool = False) -> None:
        super().__init__()
        check_lattice(dim, lattice, adapter)
        self.dim = dim
        self.lattice = tuple(lattice)
        self.cells = math.prod(lattice)
        self.adapter = adapter
        if adapter == "linear":
            self.into = nn.Linear(dim, self.cells)
            self.out_of = nn.Linear(self.cells, dim)
        elif adapter != "none":
            raise ValueError(f"unknown adapter {adapter!r}; use 'none' or 'linear'")
        if placed and adapter != "none":
            raise ValueError("a placement of dimensions on cells needs adapter 'none'")
        self.order: torch.Tensor | None
        if placed:
            self.register_buffer("order", torch.arange(dim))
        else:
            self.order = None

    def place(self, order: torch.Tensor) -> None:
        """Put dimension ``order[c]`` in cell ``c`` (``order`` a permutation of the D dimensions)."""
        if self.order is None:
            raise ValueError("this reshaper was built without a placement (placed=False)")
        if not torch.equal(torch.sort(order).values, torch.arange(self.dim)):
            raise ValueError(f"a placement must be a permutation of the {self.dim} dimensions")
        self.order.copy_(order)

    def to_lattice(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.dim() != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (batch, {self.dim}), got {tuple(embeddings.shape)}")
        if self.adapter == "linear":
            embeddings = self.into(embeddings)
        elif self.order is not None:
            embeddings = embeddings.index_select(1, self.order)
        return embeddings.reshape(embeddings.shape[0], *self.lattice)

    def to_embedding(self, lattice: torch.Tensor) -> torch.Tensor:
        if tuple(lattice.shape[1:]) != self.lattice:
            raise ValueError(f"expected a lattice of shape (batch, {self.lattice}), got {tuple(lattice.shape)}")
        flat = lattice.reshape(lattice.shape[0], self.cells)
        if self.order is not None:
            return flat.index_select(1, torch.argsort(self.order))
        return self.out_of(flat) if self.adapter == "linear" else flat
