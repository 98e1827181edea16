"""Which cells a cell sees: its 6 face neighbours along X, Y and Z, with walls (zeros outside) or wrapping.

States are channels-last, (B, X, Y, Z, C). Both ways of computing the cell rule read neighbours through here.
"""

from __future__ import annotations

import torch

SPATIAL_AXES = (1, 2, 3)


def neighbour(state: torch.Tensor, axis: int, offset: int, boundary: str) -> torch.Tensor:
    """The state of each cell's neighbour at ``offset`` (+1 or -1) along ``axis``.

    ``walls``: cells outside the lattice read as zero. ``periodic``: the lattice wraps.
    """
    if boundary == "periodic":
        return torch.roll(state, shifts=-offset, dims=axis)
    size = state.shape[axis]
    zeros = state.new_zeros(state.shape[:axis] + (1,) + state.shape[axis + 1 :])
    if size == 1:
        return zeros
    if offset > 0:
        return torch.cat([state.narrow(axis, 1, size - 1), zeros], dim=axis)
    return torch.cat([zeros, state.narrow(axis, 0, size - 1)], dim=axis)


def lattice_edges(lattice: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The face edges between the cells of a walled lattice, as two index tensors over cells in reshape order."""
    index = torch.arange(lattice[0] * lattice[1] * lattice[2]).reshape(lattice)
    first, second = [], []
    for axis in range(3):
        size = lattice[axis]
        first.append(index.narrow(axis, 0, size - 1).reshape(-1))
        second.append(index.narrow(axis, 1, size - 1).reshape(-1))
    return torch.cat(first), torch.cat(second)
