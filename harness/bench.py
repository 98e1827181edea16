"""Throughput, latency and memory of the cube over a batch-size sweep (forward, and a full training step)."""

from __future__ import annotations

import json
import resource
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psutil
import torch
import torch.nn.functional as F

from cube import atomic
from cube.config import Params
from cube.device import choose_device
from cube.processor import EmbeddingProcessor
from harness import paths


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds per call after ``warmup`` untimed calls, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise(times: list[float], batch: int) -> dict[str, float]:
    rates = [batch / t for t in times]
    return {
        "samples_per_s": statistics.median(rates), "samples_per_s_min": min(rates), "samples_per_s_max": max(rates),
        "latency_ms_mean": 1e3 * statistics.fmean(times), "latency_ms_p50": 1e3 * _percentile(times, 50),
        "latency_ms_p90": 1e3 * _percentile(times, 90), "latency_ms_p99": 1e3 * _percentile(times, 99),
    }


def _memory(device: torch.device) -> dict[str, float]:
    memory = {"rss_mib": psutil.Process().memory_info().rss / 2**20}
    if device.type == "cuda":
        memory["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        memory["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    return memory


def forward(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor) -> None:
    """Forward, cosine loss, backward and optimizer step: one training iteration."""
    loss = (1 - F.cosine_similarity(model(x), target)).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def run_bench(params: Params) -> dict[str, Any]:
    device = choose_device(params.train.device)
    dim = json.loads((paths.EMBEDDED / "card.json").read_text(encoding="utf-8"))["dim"]
    torch.manual_seed(params.seed)
    model = EmbeddingProcessor(dim, params.cube).to(device.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rows = []
    for batch in params.bench.batch_sizes:
        x = F.normalize(torch.randn(batch, dim), dim=-1).to(device.device)
        target = F.normalize(torch.randn(batch, dim), dim=-1).to(device.device)
        phases = {"forward": partial(forward, model, x), "train": partial(train_step, model, optimizer, x, target)}
        for phase, fn in phases.items():
            if device.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device.device)
            model.train(phase == "train")
            times = time_calls(fn, device.device, params.bench.warmup, params.bench.repeats)
            rows.append({"phase": phase, "batch_size": batch, **summarise(times, batch), **_memory(device.device)})
    result = {
        "device": str(device.device), "device_reason": device.reason, "dim": dim,
        "lattice": list(params.cube.lattice), "steps": params.cube.steps,
        "parameters": model.parameter_count(), "flops_per_sample_forward": model.flops_per_sample(),
        "warmup": params.bench.warmup, "repeats": params.bench.repeats, "rows": rows,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
    }
    atomic.write_json(paths.BENCH_METRICS, result)
    return result
