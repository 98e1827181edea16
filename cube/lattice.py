"""The cell prototype and the synchronous propagation rule over an X x Y x Z lattice.

Layout is channels-last: states are (B, X, Y, Z, C). Every cell runs the same small MLP on
[own state, 6 face neighbours, external input] and adds the result to its state; all cells and all
samples update at once, T times. ``step`` is the rule as written here, differentiated by autograd; by
default the lattice computes the same function (to float rounding) with the CPU kernel of ``cube.cpu_kernel``
on an x86-64 CPU with AVX2 and FMA (seed, steps and readout in one call), and with ``cube.propagation`` (torch
ops with a hand-written backward) elsewhere, e.g. on a GPU. Autocast (mixed precision belongs to autograd's
ops) and ``fast=False`` use ``step``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cube import cpu_kernel
from cube.neighbours import SPATIAL_AXES, neighbour
from cube.propagation import BLOCKS, propagate

BOUNDARIES = ("walls", "periodic")


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

    ``fast`` (the default) runs the CPU kernel where it runs (``cube.cpu_kernel``), else propagates with
    ``Propagation``; ``fast=False`` (and autocast) with autograd over ``step``. The kernel keeps only the input
    for backward and recomputes each sample's states there. ``activation_checkpointing`` keeps the memory saved
    for backward flat in the number of steps on the other paths (``Propagation`` recomputes the states in
    backward; on the autograd path, each step is checkpointed).
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
        fast: bool = True,
    ) -> None:
        super().__init__()
        if boundary not in BOUNDARIES:
            raise ValueError(f"unknown boundary {boundary!r}; use one of {BOUNDARIES}")
        self.lattice = tuple(lattice)
        self.channels = channels
        self.steps = steps
        self.boundary = boundary
        self.activation_checkpointing = activation_checkpointing
        self.fast = fast
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
        fast = self.fast and not torch.is_autocast_enabled(values.device.type)
        if fast and cpu_kernel.runs(values, self.channels, self.cell.perceive.out_features):
            params = (self.seed_state.weight, self.seed_state.bias, self.position, self.cell.perceive.weight,
                      self.cell.perceive.bias, self.cell.update.weight, self.cell.update.bias, self.readout.weight,
                      self.readout.bias)
            return cpu_kernel.lattice(values, params, self.steps, self.boundary)
        external = values.unsqueeze(-1)
        state = self.seed_state(external)
        if self.position is not None:
            state = state + self.position
        if fast:
            state = propagate(state, values, self.cell.perceive, self.cell.update, self.steps, self.boundary,
                              self.activation_checkpointing)
        else:
            state = self._propagate_autograd(state, external)
        return self.readout(state).squeeze(-1)

    def _propagate_autograd(self, state: torch.Tensor, external: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            if self.activation_checkpointing and torch.is_grad_enabled():
                state = checkpoint(self.step, state, external, use_reentrant=False)
            else:
                state = self.step(state, external)
        return state

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 of the cell rule over all cells and steps (the dominant cost)."""
        per_cell = 2 * (self.cell.perceive.in_features * self.cell.perceive.out_features
                        + self.cell.update.in_features * self.cell.update.out_features)
        return per_cell * math.prod(self.lattice) * self.steps

    def bytes_per_sample(self, device: str | torch.device = "cpu", training: bool = False) -> int:
        """Memory traffic of one forward (or training step) as the fast path on ``device`` moves it, per sample.

        The CPU kernel, per cell and step: forward reads the state (C floats, padded to a multiple of 8) and the
        external input and writes the next state, the neighbourhood and hidden layer staying in registers; per
        cell it reads the input and position code and writes the output. Training computes the forward twice
        (backward recomputes it, keeping each state and hidden layer (H floats, padded) in the sample's scratch),
        reads them back with the external input, and reads and writes the state gradient twice (identity path,
        then neighbours); per cell it reads the final state with the output's gradient and writes the input's
        gradient and the position code's gradient, which the sum over samples reads again.
        Torch's fast path, per cell and step: the 7C-wide neighbourhood is read and written by the gather and
        read by ``perceive``; the hidden vector's constant term is read, the hidden vector written, read and
        rewritten by ReLU and read by ``update``; the state is read and written by the update and read and
        rewritten by its bias; training counts three times that.
        """
        hidden, cells = self.cell.perceive.out_features, math.prod(self.lattice)
        if cpu_kernel.runs(torch.empty(0, device=device), self.channels, hidden):
            cpad, hpad = (-(-width // cpu_kernel.LANES) * cpu_kernel.LANES for width in (self.channels, hidden))
            per_cell_step, per_cell = (10 * cpad + 2 * hpad + 3, 5 * cpad + 6) if training else (2 * cpad + 1, cpad + 2)
            return 4 * cells * (per_cell_step * self.steps + per_cell)
        width = BLOCKS * self.channels
        floats_per_cell_step = (3 if training else 1) * (3 * width + 5 * hidden + 4 * self.channels)
        return floats_per_cell_step * 4 * cells * self.steps
