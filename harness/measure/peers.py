"""Peers: other implementations of the very same cube computation, benchmarked against the project's own.

``Conv3dReference`` is the cell rule written the common neural-cellular-automata way (as in the Growing
Neural Cellular Automata reference code): channels-first, one dense 3x3x3 perceive conv per step, ReLU,
a 1x1x1 update conv. It holds a copy of a ``CubeLattice``'s weights and computes the same function, so any
speed difference is the implementation, not the model. It pays for all 27 stencil taps although only 7
are nonzero, as the usual NCA code does.

``EagerReference`` is the default cube written the straightforward eager way, as one would first write it:
the channels-last state zero-padded with ``F.pad`` (wrapped for periodic), the 6 face neighbours sliced out of
the padded tensor, concatenated with the own state and the external input, then ``Linear`` -> ReLU ->
``Linear`` and ``state += update``, T times, all differentiated by autograd. Its parameters are named as
``CubeLattice``'s, so it loads a lattice's state_dict as it is. It is the peer the project's own propagation
must beat (``harness/judge/targets.py``: training at least 1.5x on a 2-core CPU, 3.5x on a GPU).

``PerSampleLoop`` runs a model one sample at a time in a Python loop, the way the earlier trainer did.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
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


class _Layers(nn.Module):
    """Just the two Linear layers, under the names ``CubeLattice.cell`` gives them."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.perceive = nn.Linear(7 * channels + 1, hidden)
        self.update = nn.Linear(hidden, channels)


class EagerReference(nn.Module):
    """The cube's cell rule in plain eager PyTorch over (B, X, Y, Z, C); same inputs and outputs as ``CubeLattice``."""

    # F.pad pads the last dimensions first: channels by 0, then Z, Y and X by 1 on each side
    PADDING = (0, 0, 1, 1, 1, 1, 1, 1)

    def __init__(self, lattice: tuple[int, int, int], channels: int = 8, hidden: int = 32, steps: int = 10,
                 boundary: str = "walls", position_code: bool = True) -> None:
        super().__init__()
        self.lattice = tuple(lattice)
        self.steps = steps
        self.boundary = boundary
        self.seed_state = nn.Linear(1, channels)
        self.cell = _Layers(channels, hidden)
        self.readout = nn.Linear(channels, 1)
        self.position = nn.Parameter(torch.zeros(*self.lattice, channels)) if position_code else None

    @classmethod
    def from_lattice(cls, lattice: CubeLattice) -> EagerReference:
        """A reference holding copies (fresh Parameters, trainable on their own) of ``lattice``'s weights."""
        cell = lattice.cell
        ref = cls(lattice.lattice, lattice.channels, cell.perceive.out_features, lattice.steps, lattice.boundary,
                  lattice.position is not None)
        ref.load_state_dict(lattice.state_dict())  # same parameter names; load_state_dict copies
        weight = cell.perceive.weight
        return ref.to(device=weight.device, dtype=weight.dtype)

    def pad(self, state: torch.Tensor) -> torch.Tensor:
        """(B, X+2, Y+2, Z+2, C): zeros around the lattice (walls), or its opposite faces (periodic)."""
        if self.boundary == "periodic":  # circular padding works on the trailing dims of a channels-first tensor
            return F.pad(state.movedim(-1, 1), self.PADDING[2:], mode="circular").movedim(1, -1)
        return F.pad(state, self.PADDING)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        external = values.unsqueeze(-1)  # (B, X, Y, Z, 1)
        state = self.seed_state(external)
        if self.position is not None:
            state = state + self.position
        inner = slice(1, -1)
        for _ in range(self.steps):
            padded = self.pad(state)
            faces = [padded[:, 2:, inner, inner], padded[:, :-2, inner, inner],  # +X, -X
                     padded[:, inner, 2:, inner], padded[:, inner, :-2, inner],  # +Y, -Y
                     padded[:, inner, inner, 2:], padded[:, inner, inner, :-2]]  # +Z, -Z
            hidden = torch.relu(self.cell.perceive(torch.cat([state, *faces, external], dim=-1)))
            state = state + self.cell.update(hidden)
        return self.readout(state).squeeze(-1)


class ReferenceProcessor(nn.Module):
    """The (B, D) -> (B, D) map around a reference lattice, written apart from ``EmbeddingProcessor``: scale by
    sqrt(D), reshape onto the lattice, the lattice, reshape back, unscale, residual. Nothing of the cube's own code
    runs in it, so a slowdown anywhere in the cube shows against it. A linear adapter is the cube's own module,
    copied (its weights are part of the map)."""

    def __init__(self, model: EmbeddingProcessor, lattice: nn.Module) -> None:
        super().__init__()
        self.lattice = lattice
        self.shape = tuple(model.config.lattice)
        self.scale = math.sqrt(model.dim)
        self.residual = model.config.residual
        linear = model.config.adapter == "linear"
        self.into = copy.deepcopy(model.reshaper.into) if linear else None
        self.out_of = copy.deepcopy(model.reshaper.out_of) if linear else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = x * self.scale
        if self.into is not None:
            values = self.into(values)
        cells = self.lattice(values.reshape(len(x), *self.shape)).reshape(len(x), -1)
        if self.out_of is not None:
            cells = self.out_of(cells)
        delta = cells / self.scale
        return x + delta if self.residual else delta


def reference_processor(model: EmbeddingProcessor, peer: type[Conv3dReference] | type[EagerReference] = Conv3dReference,
                        ) -> ReferenceProcessor:
    """``model``'s map with its cube run as ``peer`` (``Conv3dReference`` or ``EagerReference``), same weights."""
    return ReferenceProcessor(model, peer.from_lattice(model.lattice))


class PerSampleLoop(nn.Module):
    """Calls ``model`` one sample at a time in a Python loop over the batch; shares its parameters (no copy)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(x[i : i + 1]) for i in range(len(x))])
