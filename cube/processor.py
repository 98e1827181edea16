"""The embedding processor: reshaper -> lattice -> reshaper, as one nn.Module."""

from __future__ import annotations

import math
from enum import StrEnum

import torch
from torch import nn

from cube import placement
from cube.config import CubeConfig
from cube.lattice import CubeLattice
from cube.reshaper import EmbeddingReshaper


class Mode(StrEnum):
    """What the processor is trained to produce from an embedding."""

    AUTOENCODER = "autoencoder"  # reconstruct the (clean) input
    DIALOGUE = "dialogue"  # question embedding -> answer embedding


class EmbeddingProcessor(nn.Module):
    """Maps a batch of D-d embeddings to D-d embeddings through the cube.

    Embedding values are scaled by sqrt(D) on the way in (unit-norm embeddings
    then give cells values of order 1) and back on the way out. With
    ``residual`` the output is ``input + cube(input)``.
    """

    def __init__(self, dim: int, config: CubeConfig, mode: Mode | str = Mode.DIALOGUE) -> None:
        super().__init__()
        self.dim = dim
        self.config = config
        self.mode = Mode(mode)
        self.reshaper = EmbeddingReshaper(dim, config.lattice, config.adapter, config.placement != "reshape")
        self.lattice = CubeLattice(
            config.lattice,
            channels=config.state_channels,
            hidden=config.hidden,
            steps=config.steps,
            boundary=config.boundary,
            position_code=config.position_code,
            activation_checkpointing=config.activation_checkpointing,
        )
        self.scale = math.sqrt(dim)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        cells = self.reshaper.to_lattice(embeddings * self.scale)
        delta = self.reshaper.to_embedding(self.lattice(cells)) / self.scale
        return embeddings + delta if self.config.residual else delta

    def place_dimensions(self, questions: torch.Tensor, answers: torch.Tensor) -> None:
        """Compute ``config.placement`` from training pairs and put each dimension in its cell (reshape: nothing).

        The first stage calls it; later stages load the placement with the weights."""
        if self.config.placement != "reshape":
            self.reshaper.place(placement.compute(self.config.placement, questions, answers, self.config.lattice))

    def target(self, question: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """The training target for this mode: the input itself, or the answer."""
        return question if self.mode is Mode.AUTOENCODER else answer

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def flops_per_sample(self) -> int:
        return self.lattice.flops_per_sample()

    def bytes_per_sample(self, device: str | torch.device = "cpu", training: bool = False) -> int:
        return self.lattice.bytes_per_sample(device, training)
