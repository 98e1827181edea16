"""Measurement trackers: latency, memory (process RSS, torch CUDA, NVML, autograd activations).

Trackers only measure and return plain numbers; what the report makes of them
lives in ``harness/stages/bench.py`` and ``harness/render/report.py`` (the split
optimum-benchmark keeps between trackers and the report schema).
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from harness.store.results import Latency


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds per call after ``warmup`` untimed calls.

    On CUDA each call is bracketed by CUDA events (kernel time as the GPU saw it,
    host launch gaps included); on CPU by ``perf_counter``.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
    return times


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported latency was observed)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise_latency(times: list[float], batch: int) -> Latency:
    rates = [batch / t for t in times]
    return Latency(
        samples_per_s=statistics.median(rates), samples_per_s_min=min(rates), samples_per_s_max=max(rates),
        latency_ms_mean=1e3 * statistics.fmean(times), latency_ms_p50=1e3 * percentile(times, 50),
        latency_ms_p90=1e3 * percentile(times, 90), latency_ms_p99=1e3 * percentile(times, 99),
    )


@dataclass
class CudaPeaks:
    """torch's peak allocated/reserved CUDA memory over a block, filled in when it ends; None on the CPU."""

    max_allocated_mib: float | None = None
    max_reserved_mib: float | None = None
    allocated_increase_mib: float | None = None  # the peak above what was allocated when the block began

    def row_fields(self) -> dict[str, float]:
        """A bench row's CUDA columns (none on the CPU)."""
        if self.max_allocated_mib is None:
            return {}
        return {"cuda_max_allocated_mib": self.max_allocated_mib, "cuda_max_reserved_mib": self.max_reserved_mib}


@contextmanager
def cuda_memory(device: torch.device) -> Iterator[CudaPeaks]:
    """torch's peak allocated/reserved CUDA memory over the block (peaks reset on entry); empty on CPU."""
    found = CudaPeaks()
    if device.type != "cuda":
        yield found
        return
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    yield found
    synchronize(device)
    found.max_allocated_mib = torch.cuda.max_memory_allocated(device) / 2**20
    found.max_reserved_mib = torch.cuda.max_memory_reserved(device) / 2**20
    found.allocated_increase_mib = (torch.cuda.max_memory_allocated(device) - base) / 2**20


def counted_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matmuls and convolutions ``fn`` runs, as torch's FlopCounterMode counts them (exact, load-free)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of every tensor storage an op creates while they are alive; ``peak`` is the most at once."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.seen: set[tuple[int, int]] = set()

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key[1] == 0 or key in self.seen:  # a view of a storage already counted
            return
        self.seen.add(key)
        self.live += key[1]
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, key)

    def _release(self, key: tuple[int, int]) -> None:
        self.seen.discard(key)
        self.live -= key[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's signature
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor) and leaf.device.type == "cpu":
                self._count(leaf)
        return out


def tensor_peak_bytes(fn: Callable[[], Any]) -> int:
    """The most bytes of tensors created by ``fn`` alive at once on the CPU: an exact count, the same in every
    identical run, unlike the process's resident peak (allocator caching, thread pools, page faults)."""
    with _LiveTensorBytes() as counter:
        fn()
    return counter.peak


def saved_activation_bytes(fn: Callable[[], Any]) -> int:
    """Bytes autograd keeps for the backward pass while ``fn`` runs a forward (exact, device-independent).

    This is the activation memory a training step holds at its peak, counted tensor by tensor.
    """
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return total


def time_interleaved(calls: dict[str, Callable[[], Any]], device: torch.device, warmup: int,
                     repeats: int) -> dict[str, list[float]]:
    """Seconds per call of several implementations, timed in alternation (A B C, B C A, ...).

    Each repeat times every implementation back to back, so a burst of load from elsewhere on a
    shared machine hits all of them alike and their per-repeat ratios stay meaningful.
    """
    names = list(calls)
    for name in names:
        time_calls(calls[name], device, warmup, 0)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            times[name] += time_calls(calls[name], device, 0, 1)
    return times
