"""The device's measured peaks (dense matmul FLOP/s, copy bandwidth) and where the cube sits under them.

Peaks are measured in the same run on the same device rather than taken from a
data sheet, so the achieved fraction compares like with like.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from cube import cpu_kernel
from harness.measure.trackers import time_calls

PEAK_ROUNDS, PEAK_REPEATS = 60_000_000, 5  # 9.6 GFLOP per thread and run


def measure_matmul_flops(device: torch.device, size: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of a square float32 matmul: the practical compute ceiling for float32 work here."""
    size = size or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    times = time_calls(lambda: torch.mm(a, b), device, warmup=2, repeats=repeats)
    return 2 * size**3 / statistics.median(times)


def measure_peak_flops(device: torch.device, model: torch.nn.Module) -> tuple[float, str]:
    """The compute ceiling for the code that runs the cube here, and what measured it.

    Where the cube's CPU kernel runs, the ceiling is that of its instructions (AVX2 FMAs on every thread),
    which it can approach and a BLAS pinned to SSE2 cannot: a matmul there would be a bound the cube exceeds.
    Elsewhere, the square float32 matmul."""
    lattice = model.lattice
    probe = torch.zeros(1, device=device)
    if cpu_kernel.runs(probe, lattice.channels, lattice.cell.perceive.out_features):
        threads = torch.get_num_threads()
        # a ceiling: the best of several runs of about a quarter second each, so a late-starting thread or a
        # neighbour's burst on a shared machine does not pass for the CPU's limit
        best = max(cpu_kernel.fma_peak_flops(rounds=PEAK_ROUNDS) for _ in range(PEAK_REPEATS))
        return best, f"AVX2 FMA, 8 lanes, {threads} thread{'s' * (threads > 1)}, best of {PEAK_REPEATS}"
    return measure_matmul_flops(device), "square float32 matmul"


def measure_copy_bandwidth(device: torch.device, mebibytes: int | None = None, repeats: int = 5) -> float:
    """Bytes/s of a large tensor copy (one read + one write per element): the memory ceiling."""
    mebibytes = mebibytes or (2048 if device.type == "cuda" else 256)
    source = torch.empty(mebibytes * 2**20 // 4, device=device).normal_()
    target = torch.empty_like(source)
    times = time_calls(lambda: target.copy_(source), device, warmup=2, repeats=repeats)
    return 2 * source.numel() * 4 / statistics.median(times)


def roofline(flops_per_sample: float, bytes_per_sample: float, samples_per_s: float,
             peak_flops: float, peak_measured_by: str, bandwidth: float) -> dict[str, Any]:
    """Achieved FLOP/s against the compute peak and against the roofline bound at this arithmetic intensity."""
    intensity = flops_per_sample / bytes_per_sample
    bound = min(peak_flops, intensity * bandwidth)
    achieved = flops_per_sample * samples_per_s
    return {
        "flops_per_sample": flops_per_sample, "bytes_per_sample": bytes_per_sample,
        "arithmetic_intensity": intensity, "achieved_flops": achieved,
        "peak_flops": peak_flops, "peak_measured_by": peak_measured_by, "copy_bandwidth_bytes": bandwidth,
        "roofline_bound_flops": bound, "bound_by": "memory" if bound < peak_flops else "compute",
        "fraction_of_peak": achieved / peak_flops, "fraction_of_roofline": achieved / bound,
    }
