"""The benchmark's measuring parts: doctor on faked GPUs, trackers, log-log fits, roofline arithmetic."""

from __future__ import annotations

import re

import pytest
import torch

from cube import cpu_kernel
from cube.device import CudaProbe, GpuInfo
from cube.lattice import CubeLattice
from harness.judge.targets import speed_targets
from harness.measure.doctor import diagnose, format_report
from harness.measure.nvml import nvml_memory
from harness.measure.roofline import roofline
from harness.measure.scaling import fitted_exponent
from harness.measure.trackers import percentile, saved_activation_bytes, summarise_latency, time_interleaved
from harness.render.report import ratio_table, targets_table
from harness.stats.paired import RatioEstimate
from harness.store.results import BenchRow, Peers

RTX_5090_OLD_BUILD = CudaProbe("2.5.0+cu124", "12.4", ("sm_50", "sm_80", "sm_86", "sm_90"),
                               (GpuInfo(0, "NVIDIA GeForce RTX 5090", (12, 0)),))


def test_doctor_reports_an_unsupported_gpu_and_falls_back_with_the_reason():
    found = diagnose("auto", RTX_5090_OLD_BUILD)
    assert found.chosen_device == "cpu"
    assert found.gpus[0].capability == "sm_120" and not found.gpus[0].supported_by_build
    text = format_report(found)
    assert "build arch list: sm_50, sm_80, sm_86, sm_90" in text
    assert "compute capability sm_120; build CANNOT run on it" in text and "cu128" in text


def test_doctor_on_a_supported_gpu_chooses_it():
    probe = CudaProbe("2.11.0+cu130", "13.0", ("sm_90", "sm_100", "sm_120"), (GpuInfo(0, "NVIDIA H100", (9, 0)),))
    found = diagnose("auto", probe)
    assert found.chosen_device == "cuda:0" and found.gpus[0].supported_by_build


def test_nvml_is_not_an_error_on_cpu():
    assert nvml_memory(torch.device("cpu")) == {"nvml": "not applicable (CPU run)"}


def test_latency_summary_uses_observed_values():
    times = [0.010, 0.020, 0.030, 0.040, 0.100]
    summary = summarise_latency(times, batch=10)
    assert summary.samples_per_s == pytest.approx(10 / 0.030)
    assert summary.samples_per_s_min == pytest.approx(100) and summary.latency_ms_p99 == pytest.approx(100)
    assert percentile(times, 50) == 0.030


def test_interleaved_timing_rotates_the_order_and_times_each_repeat():
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    times = time_interleaved(calls, torch.device("cpu"), warmup=1, repeats=3)
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert order == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_saved_activation_bytes_grow_with_steps_and_shrink_with_checkpointing(monkeypatch):
    monkeypatch.setattr(cpu_kernel, "runs", lambda *args: False)  # torch's path: it keeps every state without
    values = torch.randn(2, 4, 4, 4)
    saved = {(steps, ckpt): saved_activation_bytes(lambda s=steps, c=ckpt: CubeLattice((4, 4, 4), steps=s,
                                                                                       activation_checkpointing=c)(values))
             for steps in (2, 4) for ckpt in (False, True)}
    assert saved[(4, False)] > saved[(2, False)] > 0
    assert saved[(4, True)] < saved[(4, False)]
    assert saved[(4, True)] == saved[(2, True)]  # checkpointing keeps only the initial state, whatever the steps


def test_fitted_exponent_recovers_a_power_law():
    xs = [4.0, 8.0, 16.0, 24.0]
    assert fitted_exponent(xs, [x**3 for x in xs]) == pytest.approx(3.0)
    assert fitted_exponent(xs, [5.0] * 4) == pytest.approx(0.0, abs=1e-9)
    assert fitted_exponent([4.0], [1.0]) is None


def test_the_roofline_peak_is_that_of_the_code_that_runs_the_cube():
    import math

    import cube.cpu_kernel as cpu_kernel
    from cube.config import CubeConfig
    from cube.processor import EmbeddingProcessor
    from harness.measure.roofline import measure_peak_flops

    model = EmbeddingProcessor(384, CubeConfig())
    peak, measured_by = measure_peak_flops(torch.device("cpu"), model)
    assert math.isfinite(peak) and peak > 0
    assert measured_by.startswith("AVX2 FMA") == (cpu_kernel.supported() is None)
    assert model.bytes_per_sample("cpu", training=True) > model.bytes_per_sample("cpu")


def test_roofline_bound_and_fractions():
    line = roofline(flops_per_sample=100.0, bytes_per_sample=50.0, samples_per_s=1e6, peak_flops=1e9,
                    peak_measured_by="square float32 matmul", bandwidth=1e8)
    assert line["arithmetic_intensity"] == 2.0 and line["bound_by"] == "memory"
    assert line["roofline_bound_flops"] == pytest.approx(2e8)
    assert line["fraction_of_peak"] == pytest.approx(0.1) and line["fraction_of_roofline"] == pytest.approx(0.5)


def estimate(ratio: float, spread: float = 0.05) -> dict:
    return {"ratio": ratio, "low": ratio * (1 - spread), "high": ratio * (1 + spread), "repeats": 21}


def fake_bench(device: str, ratio: float, rows: list[dict], spread: float = 0.05) -> dict:
    ratios = {"forward_own_vs_eager_reference": estimate(2.0), "train_own_vs_eager_reference": estimate(ratio, spread)}
    latency = dict.fromkeys(["samples_per_s_min", "samples_per_s_max", "latency_ms_mean", "latency_ms_p50",
                             "latency_ms_p90", "latency_ms_p99"], 1.0)
    return {"device": device, "rows": [BenchRow(nvml="-", **latency | row) for row in rows],
            "peers": {"batch_size": 64, "repeats": 21, "rows": [], "speed_ratios": ratios, "own_at_least_as_fast": True}}


def targets_of(bench: dict, other_processes: list[dict] = ()) -> list:
    """The speed targets judged on a fake bench result."""
    typed = [{name: RatioEstimate.model_validate(value) for name, value in found.items()} for found in other_processes]
    peers = Peers.model_validate(bench["peers"])
    return speed_targets(bench["device"], bench["rows"], peers.speed_ratios, typed)


def test_speed_targets_are_judged_on_their_own_device_and_left_unmeasured_on_the_other():
    cpu = {(t.target, t.device): t for t in targets_of(fake_bench("cpu", 1.7, []))}
    assert cpu[("train_own_vs_eager_reference", "cpu")].met is True
    assert cpu[("train_own_vs_eager_reference", "cpu")].goal == "≥ 1.5x"
    gpu_rows = [t for (_, device), t in cpu.items() if device == "cuda"]
    assert len(gpu_rows) == 4 and all(t.met is None and t.note == "not measured here (CPU run)" for t in gpu_rows)
    assert targets_of(fake_bench("cpu", 1.2, []))[0].met is False
    spanning = targets_of(fake_bench("cpu", 1.5, [], spread=0.2))[0]  # the interval spans the goal: undecided
    assert spanning.met is None and "inconclusive" in spanning.note


def test_a_ratio_target_stands_only_when_separate_processes_agree():
    second = {"train_own_vs_eager_reference": estimate(1.7)}
    assert targets_of(fake_bench("cpu", 1.8, []), [second])[0].met is True  # both met
    assert targets_of(fake_bench("cpu", 1.2, []), [{"train_own_vs_eager_reference": estimate(1.3)}])[0].met is False
    disagree = targets_of(fake_bench("cpu", 1.2, []), [second])[0]  # one missed, one met: no verdict
    assert disagree.met is None and "2 processes" in disagree.note and "inconclusive" in disagree.note

    rows = [{"phase": "forward", "batch_size": 8192, "samples_per_s": 500_000.0},
            {"phase": "train", "batch_size": 8192, "samples_per_s": 200_000.0, "cuda_max_allocated_mib": 5 * 1024.0}]
    cuda = {t.target: t for t in targets_of(fake_bench("cuda:0", 3.0, rows)) if t.device == "cuda"}
    assert cuda["train_own_vs_eager_reference"].met is False
    assert cuda["train samples/s at batch 8192"].met is True
    assert cuda["train peak allocated GiB at batch 8192"].value == pytest.approx(5.0)
    assert cuda["train peak allocated GiB at batch 8192"].met is False
    assert cuda["forward samples/s at batch 8192"].met is True
    unmeasured = targets_of(fake_bench("cuda:0", 4.0, []))
    assert [t.note for t in unmeasured][2:] == ["not measured (no batch 8192 figure in this run)"] * 3


def test_report_shows_the_ratio_targets_next_to_the_ratios():
    bench = fake_bench("cpu", 1.7, [])
    targets = targets_of(bench)
    text = ratio_table(Peers.model_validate(bench["peers"]), targets, "cpu") + "\n" + targets_table(targets)
    assert "| train own vs eager reference | 1.70 | [1.61, 1.78] | ≥ 1.5x (CPU) | **yes** |" in text
    assert "| forward own vs eager reference | 2.00 | [1.90, 2.10] | - | - |" in text
    assert "| train samples/s at batch 8192 | CUDA | ≥ 150,000 | not measured here (CPU run) | n/a |" in text


def test_the_peer_sweep_times_each_independent_peer_beside_the_cube_at_every_batch_and_the_report_judges_each(tmp_path):
    from cube.config import CubeConfig
    from cube.processor import EmbeddingProcessor
    from harness.config import params_from_dict
    from harness.render.plots import throughput
    from harness.render.report import _peer_sweep_line, _peer_sweep_table
    from harness.stages.bench import sweep_peers
    from harness.store.results import Bench

    params = params_from_dict({"cube": {"lattice": [2, 2, 2], "steps": 2},
                               "bench": {"batch_sizes": [1, 4], "warmup": 0, "repeats": 3}})
    torch.manual_seed(0)
    model = EmbeddingProcessor(8, CubeConfig(lattice=(2, 2, 2), steps=2))
    points = [Peers.model_validate(p) for p in sweep_peers(model, params, 8, torch.device("cpu"))]

    assert [p.batch_size for p in points] == [1, 4]
    for point in points:
        assert {(r.implementation, r.phase) for r in point.rows} == {
            (name, phase) for name in ("own", "conv3d_reference", "eager_reference") for phase in ("forward", "train")}
        assert set(point.speed_ratios) == {f"{phase}_own_vs_{peer}" for phase in ("forward", "train")
                                           for peer in ("conv3d_reference", "eager_reference")}
        assert all(r.repeats == 3 and r.low <= r.ratio <= r.high for r in point.speed_ratios.values())
    table = _peer_sweep_table(points).splitlines()
    assert table[0].startswith("| batch | phase | cube samples/s | NCA-style reference samples/s |")
    assert len(table) == 2 + 2 * 2  # header, rule, then forward and train at each batch
    assert all(row.count("faster") + row.count("slower") + row.count("no significant difference") == 2
               for row in table[2:])
    assert _peer_sweep_table([]) == ""
    line = _peer_sweep_line(points)
    counts = [int(n) for n in re.findall(r"(?:faster in|slower in|difference in) (\d+)", line)]
    assert line.startswith("; across the peer sweep (batch 1 to 4, 8 comparisons)") and sum(counts) == 8, line
    committed = Bench.model_validate_json(open("metrics/bench.json", encoding="utf-8").read())
    throughput(committed.model_copy(update={"peer_sweep": points}), tmp_path / "throughput.png")
    assert (tmp_path / "throughput.png").stat().st_size > 0


def test_the_cuda_peaks_a_block_records_are_columns_a_bench_row_has(monkeypatch):
    """The CUDA path, with torch's CUDA calls faked (no GPU here): what ``cuda_memory`` yields fits ``BenchRow``."""
    from harness.measure import trackers
    from harness.store.results import BenchRow

    allocated = iter([10 * 2**20])
    monkeypatch.setattr(trackers, "synchronize", lambda device: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: next(allocated))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 30 * 2**20)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device: 40 * 2**20)
    with trackers.cuda_memory(torch.device("cuda")) as gpu:
        pass
    assert gpu.allocated_increase_mib == 20.0
    row = BenchRow(phase="train", batch_size=8, nvml="n/a", **trackers.summarise_latency([0.1, 0.2], 8).model_dump(),
                   **gpu.row_fields())
    assert (row.cuda_max_allocated_mib, row.cuda_max_reserved_mib) == (30.0, 40.0)
    with trackers.cuda_memory(torch.device("cpu")) as none:
        pass
    assert none.row_fields() == {}
