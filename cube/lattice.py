"""The cell prototype and the synchronous propagation rule over an X x Y x Z lattice.

Layout is channels-last: states are (B, X, Y, Z, C). Every cell runs the same
small MLP on [own state, 6 face neighbours, external input] and adds the result
to its state; all cells and all samples update at once, T times.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

BOUNDARIES = ("walls", "periodic")
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


def neighbourhood(state: torch.Tensor, external: torch.Tensor, boundary: str) -> torch.Tensor:
    """[own state, 6 face neighbours, external input] per cell: (B, X, Y, Z, 7C + E)."""
    faces = [neighbour(state, axis, offset, boundary) for axis in SPATIAL_AXES for offset in (1, -1)]
    return torch.cat([state, *faces, external], dim=-1)


class CellPrototype(nn.Module):
    """The one small network every cell shares: neighbourhood -> hidden -> state update."""

    def __init__(self, channels: int, hidden: int, external: int = 1, update_scale: float = 0.1) -> None:
        super().__init__()
        self.perceive = nn.Linear(7 * channels + external, hidden)
        self.update = nn.Linear(hidden, channels)
        with torch.no_grad():  # small updates so T steps start close to the input, yet every weight gets a gradient
            self.update.weight.mul_(update_scale)
            self.update.bias.mul_(update_scale)

    def forward(self, neighbourhood: torch.Tensor) -> torch.Tensor:
        return self.update(torch.relu(self.perceive(neighbourhood)))


class CubeLattice(nn.Module):
    """X x Y x Z cells of C channels, T synchronous steps of the shared cell rule.

    Input: one external value per cell, (B, X, Y, Z). It seeds each cell's state
    (through a shared C-vector, plus an optional learned per-cell position code)
    and is fed to the cell rule at every step. Output: one value per cell read
    from the final state by a shared linear readout, (B, X, Y, Z).
    """

    def __init__(
        self,
        lattice: tuple[int, int, int],
        channels: int = 8,
        hidden: int = 32,
        steps: int = 10,
        boundary: str = "walls",
        position_code: bool = True,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if boundary not in BOUNDARIES:
            raise ValueError(f"unknown boundary {boundary!r}; use one of {BOUNDARIES}")
        self.lattice = tuple(lattice)
        self.channels = channels
        self.steps = steps
        self.boundary = boundary
        self.activation_checkpointing = activation_checkpointing
        self.seed_state = nn.Linear(1, channels)
        self.cell = CellPrototype(channels, hidden)
        self.readout = nn.Linear(channels, 1)
        with torch.no_grad():
            self.readout.weight.mul_(0.1)
            self.readout.bias.zero_()
        self.position = nn.Parameter(0.1 * torch.randn(*self.lattice, channels)) if position_code else None

    def step(self, state: torch.Tensor, external: torch.Tensor) -> torch.Tensor:
        return state + self.cell(neighbourhood(state, external, self.boundary))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if tuple(values.shape[1:]) != self.lattice:
            raise ValueError(f"expected (batch, {self.lattice}) cell inputs, got {tuple(values.shape)}")
        external = values.unsqueeze(-1)
        state = self.seed_state(external)
        if self.position is not None:
            state = state + self.position
        for _ in range(self.steps):
            if self.activation_checkpointing and torch.is_grad_enabled():
                state = checkpoint(self.step, state, external, use_reentrant=False)
            else:
                state = self.step(state, external)
        return self.readout(state).squeeze(-1)

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 of the cell rule over all cells and steps (the dominant cost)."""
        per_cell = 2 * (self.cell.perceive.in_features * self.cell.perceive.out_features
                        + self.cell.update.in_features * self.cell.update.out_features)
        return per_cell * math.prod(self.lattice) * self.steps

    def bytes_per_sample(self, element_size: int = 4) -> int:
        """Memory traffic of one forward as this eager implementation moves it, per sample.

        Per cell and step: the neighbourhood is read 2x and written 1x (built by cat, then read
        by ``perceive``), the hidden vector written, read and rewritten by ReLU and read by
        ``update``, and the state update written, read and added to the read state.
        """
        width = self.cell.perceive.in_features
        hidden = self.cell.perceive.out_features
        floats_per_cell_step = 3 * width + 4 * hidden + 4 * self.channels
        return floats_per_cell_step * element_size * math.prod(self.lattice) * self.steps
