"""Choosing the torch device for a run, with the reason written down."""

from __future__ import annotations

from dataclasses import dataclass

import torch


class DeviceError(RuntimeError):
    """The requested device cannot be used."""


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    reason: str


def choose_device(requested: str) -> DeviceChoice:
    """``auto``: CUDA when torch can use it, else CPU; ``cpu``; ``cuda``: fail clearly when absent."""
    if requested == "cpu":
        return DeviceChoice(torch.device("cpu"), "cpu requested")
    available = torch.cuda.is_available()
    if requested == "cuda":
        if not available:
            raise DeviceError(
                f"device 'cuda' was requested but torch {torch.__version__} sees no usable CUDA GPU "
                f"(torch build CUDA: {torch.version.cuda}); set device: auto or cpu, or install a CUDA build of torch"
            )
        return DeviceChoice(torch.device("cuda"), f"cuda requested; using {torch.cuda.get_device_name(0)}")
    if requested != "auto":
        raise DeviceError(f"unknown device {requested!r}; use auto, cpu or cuda")
    if available:
        return DeviceChoice(torch.device("cuda"), f"auto: CUDA available ({torch.cuda.get_device_name(0)})")
    return DeviceChoice(torch.device("cpu"), "auto: no CUDA device visible to torch")
