"""Restricted linear maps that measure what limits the cube, trained like the contrastive linear map.

Each is q + q M + b with M = 0 at the start (the identity map, as the linear map starts) and M restricted:
``diagonal`` (each dimension scaled on its own: what one value per cell with its own code can do without
neighbours), ``lattice_local`` (each dimension mixes only the dimensions in its lattice cell's 6 face neighbours,
under a placement: what one step of linear propagation can reach) and ``low_rank`` (M = U V of rank r: what a
parameter budget buys with no locality at all).
"""

from __future__ import annotations

import torch
from torch import nn

from cube.neighbours import lattice_edges
from cube.processor import Mode


class RestrictedLinear(nn.Module):
    """q + q (M * mask) + b, M and b from zero; parameters counted as the mask's free entries plus the bias."""

    mode = Mode.DIALOGUE

    def __init__(self, mask: torch.Tensor, name: str) -> None:
        super().__init__()
        self.dim = mask.shape[0]
        self.config = {"probe": name}
        self.register_buffer("mask", mask.float())
        self.weight = nn.Parameter(torch.zeros(self.dim, self.dim))
        self.bias = nn.Parameter(torch.zeros(self.dim))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q + q @ (self.weight * self.mask) + self.bias

    def free_parameters(self) -> int:
        return int(self.mask.sum()) + self.dim


class LowRankLinear(nn.Module):
    """q + (q U) V + b with U small and random, V and b zero: rank ``rank``."""

    mode = Mode.DIALOGUE

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.dim = dim
        self.config = {"probe": f"low rank {rank}"}
        self.down = nn.Parameter(torch.randn(dim, rank) / dim ** 0.5)
        self.up = nn.Parameter(torch.zeros(rank, dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q + (q @ self.down) @ self.up + self.bias

    def free_parameters(self) -> int:
        return self.down.numel() + self.up.numel() + self.bias.numel()


def diagonal(dim: int) -> RestrictedLinear:
    return RestrictedLinear(torch.eye(dim), "diagonal")


def lattice_local(order: torch.Tensor, lattice: tuple[int, int, int], name: str) -> RestrictedLinear:
    """Dimension order[c] of the output mixes the input dimensions in cell c and its face neighbours."""
    first, second = lattice_edges(lattice)
    cells = torch.eye(len(order))
    cells[first, second] = cells[second, first] = 1.0
    mask = torch.zeros_like(cells)
    mask[order[:, None], order[None, :]] = cells  # from cell pairs to the dimension pairs they hold
    return RestrictedLinear(mask, name)
