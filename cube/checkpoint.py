"""Checkpoints: a folder holding a safetensors weights file and a JSON sidecar.

The sidecar (``checkpoint.json``) names the weights file and its sha256. Saving
writes a new, uniquely named weights file first, then atomically replaces the
sidecar: that rename is the commit point, so a kill at any moment leaves the
previous checkpoint whole. Loading verifies the hash and refuses anything else.
Weights are only ever read as safetensors: pickle files are refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from cube import atomic
from cube.digest import files_digest

FORMAT_VERSION = 1
SIDECAR = "checkpoint.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


@dataclass
class Checkpoint:
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def sha256(self) -> str:
        """The digest of its weights file, as its sidecar records it."""
        return self.meta["sha256"]

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors saved under ``prefix.`` with the prefix removed (e.g. ``model``, ``best``)."""
        start = prefix + "."
        return {k[len(start):]: v for k, v in self.tensors.items() if k.startswith(start)}


def sha256_file(path: Path) -> str:
    return files_digest([path])


def save_checkpoint(directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and ``meta`` as the folder's current checkpoint; returns the sidecar path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    epoch = meta.get("epoch", 0)
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    digest = hashlib.sha256(data).hexdigest()
    # named by content: a new file never replaces the one the current sidecar names (unless it is the same bytes),
    # and the same training writes the same folder, so a re-run's outputs hash as the committed ones do
    weights_name = f"weights-e{epoch:04d}-{digest[:8]}.safetensors"
    weights_path = directory / weights_name
    atomic.write_bytes(weights_path, data)
    sidecar = dict(meta, format=FORMAT_VERSION, weights_file=weights_name, sha256=sha256_file(weights_path))
    atomic.write_json(directory / SIDECAR, sidecar)
    for stale in directory.glob("weights-*.safetensors"):  # only after the new sidecar is in place
        if stale.name != weights_name:
            stale.unlink(missing_ok=True)
    return directory / SIDECAR


def has_checkpoint(directory: str | Path) -> bool:
    return (Path(directory) / SIDECAR).exists()


def load_checkpoint(directory: str | Path) -> Checkpoint:
    """Read and verify a checkpoint folder (or its sidecar path); every failure names the fix."""
    path = Path(directory)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: pickle checkpoints are refused (loading one can run arbitrary code); "
            "only safetensors checkpoints written by this project are read"
        )
    if path.name == SIDECAR:
        path = path.parent
    sidecar = path / SIDECAR
    if not sidecar.exists():
        raise CheckpointError(f"no checkpoint in {path} ({SIDECAR} missing); run the stage that writes it first")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{sidecar} is not valid JSON ({err}); delete {path} and re-run the stage") from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{sidecar} has checkpoint format {meta.get('format')!r}, this code reads format {FORMAT_VERSION}; "
            "re-run the stage to write a current checkpoint"
        )
    weights = path / str(meta.get("weights_file", ""))
    if not weights.is_file():
        raise CheckpointError(f"{sidecar} names weights file {weights.name!r}, which is missing; re-run the stage")
    actual = sha256_file(weights)
    if actual != meta.get("sha256"):
        raise CheckpointError(
            f"{weights} is corrupt or truncated: sha256 {actual[:12]}... does not match "
            f"{str(meta.get('sha256'))[:12]}... recorded in {SIDECAR}; delete {path} and re-run the stage"
        )
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights} cannot be read as safetensors ({err}); re-run the stage") from None
    return Checkpoint(meta, tensors)


def load_model_weights(model: torch.nn.Module, checkpoint: Checkpoint, group: str = "best") -> None:
    """Put a checkpoint's weights into ``model``; a shape mismatch names both shapes."""
    state = checkpoint.group(group)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint (stage {checkpoint.meta.get('stage')!r}) does not fit this model: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}; "
            f"it was written for cube {checkpoint.meta.get('cube')}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"checkpoint weight {name!r} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[name].shape)}: the checkpoint was written for cube {checkpoint.meta.get('cube')}, "
                "a different lattice or width; re-run the earlier stage with the current params"
            )
    model.load_state_dict(state)
