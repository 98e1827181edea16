"""How time and memory per sample grow with the lattice side and with propagation steps (log-log fits).

Memory is counted two ways: the bytes autograd saves for backward (exact on any device: the
activation peak of a training step) and, on CUDA, the allocator's measured peak. Process RSS is
not used per configuration: glibc keeps freed heap resident, so RSS cannot attribute a peak to
one configuration after another has run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from cube.config import CubeConfig
from cube.lattice import CubeLattice
from harness.measure.trackers import cuda_memory, saved_activation_bytes, time_calls
from harness.store.results import Exponents, Scaling, ScalingBlock, ScalingRow


def fitted_exponent(xs: list[float], ys: list[float]) -> float | None:
    """Slope of log(y) against log(x) by least squares: y ~ x^slope. None with fewer than two usable points."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len({p[0] for p in points}) < 2:
        return None
    slope, _ = np.polyfit([p[0] for p in points], [p[1] for p in points], 1)
    return 0.0 if abs(slope) < 1e-9 else float(slope)  # a flat series reads 0, not least-squares round-off (-0.00)


def measure_point(config: CubeConfig, batch: int, device: torch.device, warmup: int, repeats: int,
                  side: int | None = None) -> ScalingRow:
    """One training forward+backward of the bare lattice: time and memory per sample."""
    lattice = CubeLattice(config.lattice, config.state_channels, config.hidden, config.steps, config.boundary,
                          config.position_code, config.activation_checkpointing).to(device)
    values = torch.randn(batch, *config.lattice, device=device)

    def step() -> None:
        lattice.zero_grad(set_to_none=True)
        lattice(values).square().mean().backward()

    times = time_calls(step, device, warmup, repeats)
    saved = saved_activation_bytes(lambda: lattice(values))
    on_gpu = {}
    if device.type == "cuda":  # the CUDA allocator's peak is exact per step; process RSS on CPU is not (see below)
        with cuda_memory(device) as gpu:
            step()
        on_gpu = {"cuda_peak_increase_mib_per_sample": gpu.allocated_increase_mib / batch}
    return ScalingRow(lattice=list(config.lattice), **({"side": side} if side is not None else {}),
                      cells=math.prod(config.lattice), steps=config.steps,
                      activation_checkpointing=config.activation_checkpointing, batch_size=batch,
                      ms_per_sample=1e3 * statistics.median(times) / batch,
                      saved_mib_per_sample=saved / batch / 2**20, **on_gpu)


def _fits(rows: list[ScalingRow], along: Callable[[ScalingRow], float]) -> Exponents:
    xs = [float(along(r)) for r in rows]
    cuda = [r.cuda_peak_increase_mib_per_sample for r in rows]
    return Exponents(time=fitted_exponent(xs, [r.ms_per_sample for r in rows]),
                     saved_memory=fitted_exponent(xs, [r.saved_mib_per_sample for r in rows]),
                     **({"cuda_peak_memory": fitted_exponent(xs, cuda)} if cuda[0] is not None else {}))


def run_scaling(base: CubeConfig, sides: tuple[int, ...], steps: tuple[int, ...], batch: int,
                device: torch.device, warmup: int, repeats: int) -> Scaling:
    """Sweep a cubic lattice's side at the configured steps, and the steps (checkpointing off and on) at the lattice."""
    by_side = [measure_point(replace(base, lattice=(s, s, s)), batch, device, warmup, repeats, side=s) for s in sides]
    by_steps = {
        label: [measure_point(replace(base, steps=t, activation_checkpointing=flag), batch, device, warmup, repeats)
                for t in steps]
        for label, flag in (("plain", False), ("checkpointed", True))
    }
    return Scaling(batch_size=batch, by_side=ScalingBlock(rows=by_side, exponent=_fits(by_side, lambda r: r.side)),
                   by_steps={label: ScalingBlock(rows=rows, exponent=_fits(rows, lambda r: r.steps))
                             for label, rows in by_steps.items()})
