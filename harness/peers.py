"""Peers: other implementations of the very same cube computation, benchmarked against the project's own.

``Conv3dReference`` is the cell rule written the common neural-cellular-automata way (as in the Growing
Neural Cellular Automata reference code): channels-first, one dense 3x3x3 perceive conv per step, ReLU,
a 1x1x1 update conv. It holds a copy of a ``CubeLattice``'s weights and computes the same function, so any
speed difference is the implementation, not the model. It pays for all 27 stencil taps although only 7
are nonzero, as the usual NCA code does.

``PerSampleLoop`` runs a model one sample at a time in a Python loop, the way the earlier trainer did.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from cube.lattice import CubeLattice
from cube.processor import EmbeddingProcessor

# Kernel position of each block of the cube's neighbourhood, in the order ``neighbourhood()`` concatenates them:
# own state, then +1 / -1 along X, Y, Z. conv3d computes out[i] = sum_k w[k] * in[i + k - 1], so the neighbour
# at +1 (state[i + 1]) sits at kernel index 2 and the one at -1 at kernel index 0.
TAPS: tuple[tuple[int, int, int], ...] = (
    (1, 1, 1),
    (2, 1, 1), (0, 1, 1),
    (1, 2, 1), (1, 0, 1),
    (1, 1, 2), (1, 1, 0),
)


def dense_kernel(perceive: torch.Tensor, channels: int) -> torch.Tensor:
    """The cube's perceive weight (H, 7C + 1) as a 3x3x3 conv kernel (H, C + 1, 3, 3, 3), zero off the 7 taps.

    Channel C of the kernel is the external input; it only feeds the centre tap.
    """
    kernel = perceive.new_zeros(perceive.shape[0], channels + 1, 3, 3, 3)
    for block, (i, j, k) in enumerate(TAPS):
        kernel[:, :channels, i, j, k] = perceive[:, block * channels : (block + 1) * channels]
    kernel[:, channels, 1, 1, 1] = perceive[:, 7 * channels]
    return kernel


def used_taps(kernel: torch.Tensor) -> torch.Tensor:
    """The inverse of ``dense_kernel``: the 7 used taps of a kernel (or of its gradient) in the cube's (H, 7C + 1) layout."""
    channels = kernel.shape[1] - 1
    blocks = [kernel[:, :channels, i, j, k] for i, j, k in TAPS]
    return torch.cat([*blocks, kernel[:, channels:, 1, 1, 1]], dim=1)


def _as_1x1(weight: torch.Tensor) -> torch.Tensor:
    """A Linear weight (out, in) as the equivalent 1x1x1 conv kernel (out, in, 1, 1, 1)."""
    return weight.detach().reshape(*weight.shape, 1, 1, 1)


class Conv3dReference(nn.Module):
    """The cube's cell rule as a GNCA-style conv net over (B, C, X, Y, Z); same inputs and outputs as ``CubeLattice``."""

    def __init__(self, lattice: tuple[int, int, int], channels: int = 8, hidden: int = 32, steps: int = 10,
                 boundary: str = "walls", position_code: bool = True) -> None:
        super().__init__()
        self.lattice = tuple(lattice)
        self.channels = channels
        self.steps = steps
        self.boundary = boundary
        padding_mode = "circular" if boundary == "periodic" else "zeros"  # circular: F.pad(mode='circular'), then no padding
        self.seed_state = nn.Conv3d(1, channels, 1)
        self.perceive = nn.Conv3d(channels + 1, hidden, 3, padding=1, padding_mode=padding_mode)
        self.update = nn.Conv3d(hidden, channels, 1)
        self.readout = nn.Conv3d(channels, 1, 1)
        self.position = nn.Parameter(torch.zeros(channels, *self.lattice)) if position_code else None

    @classmethod
    def from_lattice(cls, lattice: CubeLattice) -> Conv3dReference:
        """A reference holding copies (fresh Parameters, trainable on their own) of ``lattice``'s weights."""
        cell = lattice.cell
        ref = cls(lattice.lattice, lattice.channels, cell.perceive.out_features, lattice.steps, lattice.boundary,
                  lattice.position is not None)
        with torch.no_grad():
            ref.seed_state.weight.copy_(_as_1x1(lattice.seed_state.weight))
            ref.seed_state.bias.copy_(lattice.seed_state.bias)
            ref.perceive.weight.copy_(dense_kernel(cell.perceive.weight.detach(), lattice.channels))
            ref.perceive.bias.copy_(cell.perceive.bias)
            ref.update.weight.copy_(_as_1x1(cell.update.weight))
            ref.update.bias.copy_(cell.update.bias)
            ref.readout.weight.copy_(_as_1x1(lattice.readout.weight))
            ref.readout.bias.copy_(lattice.readout.bias)
            if lattice.position is not None:
                ref.position.copy_(lattice.position.permute(3, 0, 1, 2))
        weight = cell.perceive.weight
        return ref.to(device=weight.device, dtype=weight.dtype)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        external = values.unsqueeze(1)  # (B, 1, X, Y, Z)
        state = self.seed_state(external)
        if self.position is not None:
            state = state + self.position
        for _ in range(self.steps):
            state = state + self.update(torch.relu(self.perceive(torch.cat([state, external], dim=1))))
        return self.readout(state).squeeze(1)

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 actually spent: the dense 27-tap perceive conv plus the update, over all cells and steps."""
        per_cell = 2 * (self.perceive.weight[0].numel() * self.perceive.out_channels
                        + self.update.in_channels * self.update.out_channels)
        return per_cell * math.prod(self.lattice) * self.steps


def reference_processor(model: EmbeddingProcessor) -> EmbeddingProcessor:
    """A deep copy of ``model`` whose cube runs as ``Conv3dReference``: same (B, D) -> (B, D) map, same
    reshaper, scaling and residual (``EmbeddingProcessor.forward`` only calls ``self.lattice(cells)``)."""
    reference = copy.deepcopy(model)
    reference.lattice = Conv3dReference.from_lattice(model.lattice)
    return reference


class PerSampleLoop(nn.Module):
    """Calls ``model`` one sample at a time in a Python loop over the batch; shares its parameters (no copy)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(x[i : i + 1]) for i in range(len(x))])
