"""The two phases every implementation is timed in: a no-grad forward, and a training step (forward, cosine loss,
backward, AdamW step) on random unit inputs of the embedding width."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from cube.losses import cosine_loss
from harness.measure.nvml import nvml_memory
from harness.measure.trackers import cuda_memory, summarise_latency, tensor_peak_bytes, time_calls
from harness.store.results import BenchRow

FORWARD, TRAIN = "forward", "train"  # each phase's name: in every row, table and file
PHASES = (FORWARD, TRAIN)


def forward(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor) -> None:
    """Forward, cosine loss, backward and AdamW step: one training iteration."""
    loss = cosine_loss(model(x), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def phases(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> dict[str, Callable[[], None]]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return {"forward": partial(forward, model, x), "train": partial(train_step, model, optimizer, x, target)}


def batch_inputs(batch: int, dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.normalize(torch.randn(batch, dim), dim=-1).to(device)
    return x, F.normalize(torch.randn(batch, dim), dim=-1).to(device)


def measure_phase(model: torch.nn.Module, fn: Callable[[], None], phase: str, batch: int,
                  device: torch.device, warmup: int, repeats: int) -> BenchRow:
    model.train(phase == "train")
    with cuda_memory(device) as gpu:
        times = time_calls(fn, device, warmup, repeats)
    exact = {"tensor_peak_mib": tensor_peak_bytes(fn) / 2**20} if device.type == "cpu" else {}
    return BenchRow(phase=phase, batch_size=batch, **summarise_latency(times, batch).model_dump(), **gpu.row_fields(), **exact,
                    **nvml_memory(device))


def first_calls(steps: dict[str, Callable[[], None]], implementation: torch.nn.Module,
                device: torch.device) -> dict[str, float]:
    """Seconds of each phase's first call: where torch.compile traces and compiles, so its compile time is
    reported apart and the timed repeats see the compiled code only."""
    seconds = {}
    for phase, step in steps.items():
        implementation.train(phase == "train")
        seconds[phase] = sum(time_calls(step, device, 0, 1))
    return seconds
