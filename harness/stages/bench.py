"""The `bench` stage: throughput, latency, memory, scaling, peers and roofline of the cube, in one run.

Every figure is measured here, on the device the doctor chose; the peers and
the device's peaks are measured in the same process so ratios compare like with like.
"""

from __future__ import annotations

import copy
import logging
import resource
import tempfile
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from cube import atomic
from cube.device import OutOfDeviceMemory, out_of_memory_message
from cube.processor import EmbeddingProcessor
from harness import paths
from harness.config import Params
from harness.judge.targets import TARGET_BATCH, speed_targets
from harness.measure import memory_probe, peer_probe
from harness.measure.doctor import diagnose
from harness.measure.numerics_cost import measure_numerics_cost
from harness.measure.peer_ratios import INDEPENDENT_PEERS, measure_peers
from harness.measure.phases import FORWARD, PHASES, TRAIN, batch_inputs, measure_phase, phases
from harness.measure.roofline import measure_copy_bandwidth, measure_peak_flops, roofline
from harness.measure.scaling import run_scaling
from harness.measure.trackers import counted_flops, saved_activation_bytes
from harness.store.results import Bench, BenchRow, Peers, SpeedHeadline, read_card, write_result

log = logging.getLogger(__name__)

# Forward + backward of a layer costs about 3x its forward (two matmuls back for one forward).
TRAIN_FLOPS_FACTOR = 3


def with_host_memory(params_file: Path, rows: list[BenchRow]) -> list[BenchRow]:
    """Each CPU row with its host memory, measured in a process of the phase's own (harness/measure/memory_probe.py)."""
    measured = []
    for row in tqdm(rows, desc="bench: host memory per phase", unit="phase"):
        found = memory_probe.probe(params_file, row.phase, row.batch_size)
        # validated again, not copied: the probe's figure is checked against the row's schema like the others
        measured.append(BenchRow.model_validate(row.model_dump(exclude_unset=True) | {"host_peak_increase_mib": found}))
    return measured


def work_per_sample(model: EmbeddingProcessor, dim: int, device: torch.device, batch: int = 8) -> dict[str, float]:
    """Deterministic figures of the cube's own implementation, whatever the machine's load: FLOPs its matmuls and
    convolutions execute (counted by torch.utils.flop_counter) in a forward and a training step, and the bytes
    autograd keeps for backward, per sample."""
    x, target = batch_inputs(batch, dim, device)
    model = copy.deepcopy(model)
    step = phases(model, x, target)
    model.eval()
    forward_flops = counted_flops(step[FORWARD])
    model.train()
    train_flops = counted_flops(step[TRAIN])
    saved = saved_activation_bytes(lambda: model(x))
    return {"counted_flops_forward": forward_flops / batch, "counted_flops_train": train_flops / batch,
            "saved_bytes_train": saved / batch}


def sweep_peers(model: EmbeddingProcessor, params: Params, dim: int, device: torch.device) -> list[Peers]:
    """The independent peers timed in alternation with the cube at every batch of the sweep (one warm-up call, then
    ``bench.repeats`` repeats each; the cube and the peers are warm already, and a call at batch 4,096 takes seconds):
    samples/s against batch for all of them, and a speed ratio with its interval per batch. A batch where a peer runs
    out of device memory is left out, with a warning."""
    points = []
    for batch in params.bench.batch_sizes:
        try:
            points.append(measure_peers(model, params, dim, device, repeats=params.bench.repeats,
                                        peers=INDEPENDENT_PEERS, batch=batch, warmup=1))
        except torch.OutOfMemoryError:
            log.warning("bench: out of %s memory timing the peers at batch %d; that batch is left out of the peer "
                        "sweep", device, batch)
            torch.cuda.empty_cache()
    return points


def run_bench(params: Params) -> Bench:
    doctor = diagnose(params.train.device)
    device = torch.device(doctor.chosen_device)
    dim = read_card(paths.EMBEDDED / "card.json").dim
    torch.manual_seed(params.seed)
    model = EmbeddingProcessor(dim, params.cube).to(device)
    bench = params.bench

    rows = []
    sweep = list(bench.batch_sizes)
    if device.type == "cuda" and TARGET_BATCH not in sweep:
        sweep.append(TARGET_BATCH)  # the GPU targets are figures at this batch
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
            rows = with_host_memory(params_file, rows)
        log.info("peers at batch %d", bench.peer_batch_size)
        peers = measure_peers(model, params, dim, device)
        log.info("the independent peers again, in a process of their own")
        second_process = peer_probe.probe(params_file)
    peer_sweep = sweep_peers(model, params, dim, device) if bench.peer_sweep else []
    work = work_per_sample(model, dim, device)
    log.info("the cube under portable and native numerics, in alternation")
    cost = measure_numerics_cost(params, dim, device.type)

    log.info("device peaks and roofline")
    (peak_flops, peak_by), bandwidth = measure_peak_flops(device, model), measure_copy_bandwidth(device)
    largest = max(bench.batch_sizes)
    best = {phase: next(r for r in rows if r.phase == phase and r.batch_size == largest) for phase in PHASES}
    flops, moved = model.flops_per_sample(), model.bytes_per_sample(device)
    train_moved = model.bytes_per_sample(device, training=True)
    lines = {
        "forward": roofline(flops, moved, best[FORWARD].samples_per_s, peak_flops, peak_by, bandwidth),
        "train": roofline(TRAIN_FLOPS_FACTOR * flops, train_moved, best[TRAIN].samples_per_s, peak_flops, peak_by,
                          bandwidth),
    }

    log.info("scaling against lattice side %s and steps %s", bench.lattice_sides, bench.steps_sweep)
    scaling = run_scaling(params.cube, bench.lattice_sides, bench.steps_sweep, bench.scaling_batch_size, device,
                          warmup=1, repeats=bench.scaling_repeats)

    result = Bench(
        device=str(device), device_reason=doctor.reason, doctor=doctor, dim=dim,
        lattice=list(params.cube.lattice), steps=params.cube.steps,
        parameters=model.parameter_count(), flops_per_sample_forward=flops, bytes_per_sample_forward=moved,
        warmup=bench.warmup, repeats=bench.repeats, rows=rows,
        peers=peers, peer_sweep=peer_sweep, second_process_speed_ratios=second_process, work_per_sample=work,
        roofline={"batch_size": largest, **lines}, scaling=scaling,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
        targets=speed_targets(str(device), rows, peers.speed_ratios, [second_process]),
        numerics_cost=cost,
    )
    write_result(paths.BENCH_METRICS, result, Bench)
    write_speed_headline(result.rows, params.bench.peer_batch_size)
    return result


def write_speed_headline(rows: list[BenchRow], batch_size: int) -> None:
    """``metrics/speed.json`` for dvc exp show: forward and training samples/s at the peers' batch size (the largest
    measured one when that size was not timed)."""
    sizes = {row.batch_size for row in rows}
    chosen = batch_size if batch_size in sizes else max(sizes)
    rate = {row.phase: row.samples_per_s for row in rows if row.batch_size == chosen}
    headline = SpeedHeadline(batch_size=chosen, forward_samples_per_s=rate[FORWARD], train_samples_per_s=rate[TRAIN])
    atomic.write_json(paths.SPEED_HEADLINE, headline.model_dump(mode="json"))
