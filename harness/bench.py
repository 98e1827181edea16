"""The `bench` stage: throughput, latency, memory, scaling, peers and roofline of the cube, in one run.

Every figure is measured here, on the device the doctor chose; the peers and
the device's peaks are measured in the same process so ratios compare like with like.
"""

from __future__ import annotations

import copy
import logging
import resource
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from cube import atomic
from cube.device import OutOfDeviceMemory, out_of_memory_message
from cube.processor import EmbeddingProcessor
from harness import memory_probe, paired, paths, peer_probe
from harness.config import Params
from harness.doctor import diagnose
from harness.nvml import nvml_memory
from harness.peers import Conv3dReference, EagerReference, PerSampleLoop, reference_processor
from harness.results import Bench, SpeedHeadline, read_card, write_result
from harness.roofline import measure_copy_bandwidth, measure_matmul_flops, roofline
from harness.scaling import run_scaling
from harness.trackers import (
    counted_flops,
    cuda_memory,
    saved_activation_bytes,
    summarise_latency,
    tensor_peak_bytes,
    time_calls,
    time_interleaved,
)

log = logging.getLogger(__name__)

# Forward + backward of a layer costs about 3x its forward (two matmuls back for one forward).
TRAIN_FLOPS_FACTOR = 3
PEERS = ("per_sample_loop", "conv3d_reference", "eager_reference")
COMPILED_PEER = "compiled_eager_reference"  # the eager reference under torch.compile: bench.compiled_peer adds it
# Issue 6's targets. Ratios are own ÷ eager reference in samples/s, measured in one run at bench.peer_batch_size;
# absolute CUDA figures are at TARGET_BATCH (the bench adds that batch to its sweep on a GPU).
TARGET_BATCH = 8192
GiB = 2**30


def forward(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor) -> None:
    """Forward, cosine loss, backward and AdamW step: one training iteration."""
    loss = (1 - F.cosine_similarity(model(x), target)).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def phases(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> dict[str, Callable[[], None]]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return {"forward": partial(forward, model, x), "train": partial(train_step, model, optimizer, x, target)}


def measure_phase(model: torch.nn.Module, fn: Callable[[], None], phase: str, batch: int,
                  device: torch.device, warmup: int, repeats: int) -> dict[str, Any]:
    model.train(phase == "train")
    with cuda_memory(device) as gpu:
        times = time_calls(fn, device, warmup, repeats)
    exact = {"tensor_peak_mib": tensor_peak_bytes(fn) / 2**20} if device.type == "cpu" else {}
    return {"phase": phase, "batch_size": batch, **summarise_latency(times, batch), **gpu, **exact,
            **nvml_memory(device)}


def probe_host_memory(params_file: Path, rows: list[dict[str, Any]]) -> None:
    """Each CPU row's host memory, measured in a process of the phase's own (harness.memory_probe)."""
    for row in tqdm(rows, desc="bench: host memory per phase", unit="phase"):
        found = memory_probe.probe(params_file, row["phase"], row["batch_size"])
        row["host_peak_increase_mib"] = found["peak_increase_mib"]


def batch_inputs(batch: int, dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.normalize(torch.randn(batch, dim), dim=-1).to(device)
    return x, F.normalize(torch.randn(batch, dim), dim=-1).to(device)


def first_calls(steps: dict[str, Callable[[], None]], implementation: torch.nn.Module,
                device: torch.device) -> dict[str, float]:
    """Seconds of each phase's first call: where torch.compile traces and compiles, so its compile time is
    reported apart and the timed repeats see the compiled code only."""
    seconds = {}
    for phase, step in steps.items():
        implementation.train(phase == "train")
        seconds[phase] = sum(time_calls(step, device, 0, 1))
    return seconds


def measure_peers(model: EmbeddingProcessor, params: Params, dim: int, device: torch.device,
                  repeats: int | None = None, peers: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The cube against the same computation done other ways, at one batch size, as speed ratios.

    Each implementation gets its own copy of the weights (one's optimizer steps never move another's).
    They are timed in alternation and each ratio is the geometric mean of per-repeat ratios with a 95%
    interval over the repeats, so load from elsewhere on a shared machine lands on all of them alike
    and shows as a wider interval rather than a wrong ratio. The compiled peer's first call per phase (its
    compile time) is timed apart; where torch.compile cannot run here (no C++ compiler, say) the peer is left
    out and the reason kept.
    """
    bench = params.bench
    repeats = repeats or bench.peer_repeats
    if peers is None:
        peers = PEERS + ((COMPILED_PEER,) if bench.compiled_peer else ())
    batch = bench.peer_batch_size
    x, target = batch_inputs(batch, dim, device)
    makers = {
        "per_sample_loop": lambda: PerSampleLoop(copy.deepcopy(model)),
        "conv3d_reference": lambda: reference_processor(model, Conv3dReference),
        "eager_reference": lambda: reference_processor(model, EagerReference),
        COMPILED_PEER: lambda: torch.compile(reference_processor(model, EagerReference)),
    }
    implementations = {"own": copy.deepcopy(model)} | {name: makers[name]() for name in peers}
    steps = {name: phases(implementation, x, target) for name, implementation in implementations.items()}
    compile_seconds, unavailable = {}, {}
    if COMPILED_PEER in implementations:
        try:
            with torch._inductor.config.patch(force_disable_caches=True):  # a cold compile, as on a first run
                compile_seconds = first_calls(steps[COMPILED_PEER], implementations[COMPILED_PEER], device)
        except Exception as error:  # inductor's failures have no common base class; the reason is reported
            unavailable[COMPILED_PEER] = f"torch.compile failed here: {type(error).__name__}: {str(error)[:300]}"
            log.warning("bench: %s", unavailable[COMPILED_PEER])
            del implementations[COMPILED_PEER], steps[COMPILED_PEER]
            peers = tuple(p for p in peers if p != COMPILED_PEER)
    rows, ratios = [], {}
    for phase in tqdm(("forward", "train"), desc="bench: peers", unit="phase"):
        for implementation in implementations.values():
            implementation.train(phase == "train")
        times = time_interleaved({name: steps[name][phase] for name in implementations}, device, bench.warmup,
                                 repeats)
        rows += [{"implementation": name, "phase": phase, "batch_size": batch, **summarise_latency(t, batch)}
                 for name, t in times.items()]
        for peer in peers:
            ratios[f"{phase}_own_vs_{peer}"] = paired.ratio_interval(times["own"], times[peer]).to_dict()
    return {"batch_size": batch, "repeats": repeats, "rows": rows, "speed_ratios": ratios,
            "compile_seconds": compile_seconds, "unavailable": unavailable,
            "own_at_least_as_fast": all(value["ratio"] >= 1.0 for value in ratios.values())}


def work_per_sample(model: EmbeddingProcessor, dim: int, device: torch.device, batch: int = 8) -> dict[str, float]:
    """Deterministic figures of the cube's own implementation, whatever the machine's load: FLOPs its matmuls and
    convolutions execute (counted by torch.utils.flop_counter) in a forward and a training step, and the bytes
    autograd keeps for backward, per sample."""
    x, target = batch_inputs(batch, dim, device)
    model = copy.deepcopy(model)
    step = phases(model, x, target)
    model.eval()
    forward_flops = counted_flops(step["forward"])
    model.train()
    train_flops = counted_flops(step["train"])
    saved = saved_activation_bytes(lambda: model(x))
    return {"counted_flops_forward": forward_flops / batch, "counted_flops_train": train_flops / batch,
            "saved_bytes_train": saved / batch}


def _target(name: str, device: str, goal: float, at_least: bool, unit: str,
            value: float | paired.RatioEstimate | None, run_device: str,
            missing: str) -> dict[str, Any]:
    """One target row; ``value`` None with ``missing`` saying why (another device's target, or no such row)."""
    row: dict[str, Any] = {"target": name, "device": device, "goal": f"{'≥' if at_least else '≤'} {goal:,g}{unit}",
                           "value": None, "met": None}
    if device != run_device:
        return row | {"note": f"not measured here ({run_device.upper()} run)"}
    if value is None:
        return row | {"note": missing}
    if isinstance(value, list):  # one ratio estimate per process: the verdict stands only when they agree
        verdicts = [estimate.meets(goal) for estimate in value]
        agreed = verdicts[0] if len(set(verdicts)) == 1 else paired.INCONCLUSIVE
        intervals = ", ".join(f"{e.ratio:.2f} [{e.low:.2f}, {e.high:.2f}]: {v}" for e, v in zip(value, verdicts))
        return row | {"value": value[0].ratio, "met": None if agreed == paired.INCONCLUSIVE else agreed == paired.MET,
                      "note": f"{len(value)} processes, 95% intervals: {intervals}"
                              + ("; inconclusive" if agreed == paired.INCONCLUSIVE else "")}
    return row | {"value": value, "met": value >= goal if at_least else value <= goal, "note": ""}


def issue_targets(result: dict[str, Any], other_processes: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Issue 6's targets against a bench result: what was asked, on which device, what this run measured, met or not.

    A target for the other kind of device is listed as not measured here, never as met or missed. The ratio target
    is judged on the ratio's interval in this process and in each of ``other_processes`` (their speed ratios): met
    when all of every interval is at or above the goal, missed when every one is below, otherwise inconclusive.
    """
    run_device = "cuda" if result["device"].startswith("cuda") else "cpu"
    name = "train_own_vs_eager_reference"
    found = [ratios[name] for ratios in [result["peers"]["speed_ratios"], *other_processes] if name in ratios]
    ratio = [paired.RatioEstimate.from_dict(estimate) for estimate in found] or None
    at_batch = {r["phase"]: r for r in result["rows"] if r["batch_size"] == TARGET_BATCH}
    train, forward = at_batch.get("train", {}), at_batch.get("forward", {})
    peak = train.get("cuda_max_allocated_mib")
    no_row = f"not measured (no batch {TARGET_BATCH} figure in this run)"
    return [
        _target("train_own_vs_eager_reference", "cpu", 1.5, True, "x", ratio, run_device, "no eager reference ratio"),
        _target("train_own_vs_eager_reference", "cuda", 3.5, True, "x", ratio, run_device, "no eager reference ratio"),
        _target(f"train samples/s at batch {TARGET_BATCH}", "cuda", 150_000, True, "", train.get("samples_per_s"),
                run_device, no_row),
        _target(f"train peak allocated GiB at batch {TARGET_BATCH}", "cuda", 4, False, " GiB",
                None if peak is None else peak * 2**20 / GiB, run_device, no_row),
        _target(f"forward samples/s at batch {TARGET_BATCH}", "cuda", 400_000, True, "", forward.get("samples_per_s"),
                run_device, no_row),
    ]


def run_bench(params: Params) -> dict[str, Any]:
    doctor = diagnose(params.train.device)
    device = torch.device(doctor["chosen_device"])
    dim = read_card(paths.EMBEDDED / "card.json").dim
    torch.manual_seed(params.seed)
    model = EmbeddingProcessor(dim, params.cube).to(device)
    bench = params.bench

    rows = []
    sweep = list(bench.batch_sizes)
    if device.type == "cuda" and TARGET_BATCH not in sweep:
        sweep.append(TARGET_BATCH)  # issue 6's GPU targets are figures at this batch
    for batch in tqdm(sweep, desc="bench: batch sweep", unit="batch"):
        x, target = batch_inputs(batch, dim, device)
        for phase, fn in phases(model, x, target).items():
            try:
                rows.append(measure_phase(model, fn, phase, batch, device, bench.warmup, bench.repeats))
            except torch.OutOfMemoryError:
                if batch not in bench.batch_sizes:  # only the added target batch: its targets read "not measured"
                    log.warning("bench: out of %s memory at the target batch %d; its targets stay unmeasured",
                                device, batch)
                    torch.cuda.empty_cache()
                    continue
                raise OutOfDeviceMemory(out_of_memory_message(f"bench, {phase}", batch, device,
                                                              "bench.batch_sizes")) from None

    with tempfile.TemporaryDirectory(prefix="cube-probe-") as scratch:  # the settings, for the probes' processes
        params_file = Path(scratch) / "params.yaml"
        params_file.write_text(yaml.safe_dump(params.to_dict()), encoding="utf-8")
        if device.type == "cpu":
            probe_host_memory(params_file, rows)
        log.info("peers at batch %d", bench.peer_batch_size)
        peers = measure_peers(model, params, dim, device)
        log.info("the independent peers again, in a process of their own")
        second_process = peer_probe.probe(params_file)
    work = work_per_sample(model, dim, device)

    log.info("device peaks and roofline")
    peak_flops, bandwidth = measure_matmul_flops(device), measure_copy_bandwidth(device)
    largest = max(bench.batch_sizes)
    best = {phase: next(r for r in rows if r["phase"] == phase and r["batch_size"] == largest) for phase in ("forward", "train")}
    flops, moved = model.flops_per_sample(), model.bytes_per_sample()
    lines = {
        "forward": roofline(flops, moved, best["forward"]["samples_per_s"], peak_flops, bandwidth),
        "train": roofline(TRAIN_FLOPS_FACTOR * flops, TRAIN_FLOPS_FACTOR * moved, best["train"]["samples_per_s"],
                          peak_flops, bandwidth),
    }

    log.info("scaling against lattice side %s and steps %s", bench.lattice_sides, bench.steps_sweep)
    scaling = run_scaling(params.cube, bench.lattice_sides, bench.steps_sweep, bench.scaling_batch_size, device,
                          warmup=1, repeats=bench.scaling_repeats)

    result = {
        "device": str(device), "device_reason": doctor["reason"], "doctor": doctor, "dim": dim,
        "lattice": list(params.cube.lattice), "steps": params.cube.steps,
        "parameters": model.parameter_count(), "flops_per_sample_forward": flops, "bytes_per_sample_forward": moved,
        "warmup": bench.warmup, "repeats": bench.repeats, "rows": rows,
        "peers": peers, "work_per_sample": work, "roofline": {"batch_size": largest, **lines}, "scaling": scaling,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
    }
    result["second_process_speed_ratios"] = second_process
    result["targets"] = issue_targets(result, [second_process])
    write_result(paths.BENCH_METRICS, result, Bench)
    write_speed_headline(result["rows"], params.bench.peer_batch_size)
    return result


def write_speed_headline(rows: list[dict[str, Any]], batch_size: int) -> None:
    """``metrics/speed.json`` for dvc exp show: forward and training samples/s at the peers' batch size (the largest
    measured one when that size was not timed)."""
    sizes = {row["batch_size"] for row in rows}
    chosen = batch_size if batch_size in sizes else max(sizes)
    rate = {row["phase"]: row["samples_per_s"] for row in rows if row["batch_size"] == chosen}
    headline = SpeedHeadline(batch_size=chosen, forward_samples_per_s=rate["forward"], train_samples_per_s=rate["train"])
    atomic.write_json(paths.SPEED_HEADLINE, headline.model_dump(mode="json"))
