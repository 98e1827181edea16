"""reports/report.md: provenance, data card, quality against baselines, training curves, speed and memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cube import atomic
from cube.baselines import BASELINE_ORDER
from cube.checkpoint import SIDECAR
from cube.config import Params
from cube.device import choose_device
from harness import paths, plots
from harness.provenance import provenance

QUALITY = ["cosine", "recall@1", "recall@5", "recall@10", "mrr", "hubness"]


def _in_order(results: dict[str, Any], order: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """JSON files are written with sorted keys; the report lists stages in pipeline order."""
    known = [k for k in order if k in results]
    return {k: results[k] for k in known + sorted(set(results) - set(known))}


def _read(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run the stage that writes it first (dvc repro)")
    return json.loads(path.read_text(encoding="utf-8"))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            if abs(value) < 1:
                return f"{value:.4f}"
            return f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(evaluation: dict[str, Any]) -> list[str]:
    """Plain sentences: does the stage chosen on validation MRR beat each baseline on the test split?"""
    stages = evaluation["stages"]
    best = max(stages, key=lambda s: stages[s]["val"]["mrr"])
    scores = stages[best]["test"]
    lines = [f"The cube stage chosen on validation MRR is **{best}**. On the test split:", ""]
    for name, baseline in evaluation["baselines"].items():
        parts = []
        for measure in ("recall@1", "mrr", "cosine"):
            ours, theirs = scores[measure], baseline["test"][measure]
            word = "beats" if ours > theirs else ("ties" if ours == theirs else "does not beat")
            parts.append(f"{word} it on {measure} ({ours:.4f} vs {theirs:.4f})")
        lines.append(f"- against **{name}**, the cube " + "; ".join(parts) + ".")
    return lines


def build_report(params: Params) -> Path:
    card = _read(paths.EMBEDDED / "card.json")
    evaluation = _read(paths.EVALUATE_METRICS)
    evaluation["stages"] = _in_order(evaluation["stages"], paths.STAGES)
    evaluation["baselines"] = _in_order(evaluation["baselines"], BASELINE_ORDER)
    bench = _read(paths.BENCH_METRICS)
    trained = {stage: _read(paths.train_metrics(stage)) for stage in paths.STAGES}
    histories = {
        stage: _read(paths.checkpoint_dir(stage) / SIDECAR)["history"]
        for stage in paths.STAGES
    }
    device = choose_device(params.train.device)
    origin = provenance(params, device)

    plots.loss_curves(histories, paths.REPORTS / "loss_curves.png")
    plots.quality_bars(evaluation, paths.REPORTS / "test_quality.png")
    plots.throughput(bench, paths.REPORTS / "throughput.png")

    out: list[str] = ["# Cube Bench report", ""]
    out += ["Every figure below was measured by this pipeline run (`dvc repro`); none is copied from elsewhere.",
            "Quality is on the test split, which no training or tuning step reads.", ""]

    out += ["## Provenance", ""]
    out.append(_table(["item", "value"], [
        ["git revision", origin["git_revision"]], ["params hash (sha256)", origin["params_hash"]],
        ["seed", origin["seed"]], ["device", origin["device"]], ["why this device", origin["device_reason"]],
        ["cpu threads", origin["cpu_threads"]],
        *[[name, version] for name, version in origin["libraries"].items()],
        ["written at (UTC)", origin["written_at"]],
    ]))

    out += ["", "## Data", ""]
    out.append(_table(["item", "value"], [
        ["source", card["source"]], ["raw pairs", card["raw_pairs"]],
        ["exact duplicate pairs dropped", card["duplicates_dropped"]], ["empty turns dropped", card["empty_dropped"]],
        *[[f"{name} pairs / question groups / distinct answers", f"{card['pairs'][name]} / "
           f"{card['question_groups'][name]} / {card['distinct_answers'][name]}"] for name in ("train", "val", "test")],
        ["autoencoder sentences (train split only)", card["autoencoder_sentences"]],
        ["embedding width", card["dim"]],
    ]))
    out += ["", "Teachers (the first is the reference space; weights are the ensemble weights):", ""]
    out.append(_table(["teacher", "width", "pooling", "dtype", "weight", "pair agreement", "encoded", "cache hits",
                       "truncated"],
                      [[t["name"], t["width"], t["pooling"], t["dtype"], t["weight"], t["pair_agreement"],
                        t["encoded"], t["cache_hits"], t["truncated"]] for t in card["teachers"]]))

    out += ["", "## Quality on the test split", "",
            f"{evaluation['test_pairs']} test pairs; each answer is ranked among the split's "
            f"{evaluation['test_candidates']} distinct answers (other answers of the same question are not "
            "competitors). Baselines are fit on the training split and tuned on validation.", ""]
    rows = [[f"cube: {s}", *[v["test"][m] for m in QUALITY], v["parameters"]] for s, v in evaluation["stages"].items()]
    rows += [[name, *[v["test"][m] for m in QUALITY], v["parameters"]] for name, v in evaluation["baselines"].items()]
    out.append(_table(["model", *QUALITY, "parameters"], rows))
    out += [""] + _verdict(evaluation)
    out += ["", "![test quality by stage and baseline](test_quality.png)", ""]

    out += ["## Stages", ""]
    baseline_rows = [[f"baseline: {name}", "", "", v["val"]["cosine"], v["test"]["cosine"], v["test"]["recall@1"],
                      v["test"]["recall@5"], v["test"]["recall@10"], v["test"]["mrr"], "", ""]
                     for name, v in evaluation["baselines"].items()]
    for stage in paths.STAGES:
        summary, result = trained[stage], evaluation["stages"][stage]
        out += [f"### {stage}", "",
                f"Initialised from {summary['initialised_from']}; best epoch {summary['best_epoch']} of "
                f"{summary['epochs_run']} by validation {summary['monitor']}"
                + (" (stopped early)" if summary["stopped_early"] else "") + f"; trained on {summary['device']}.", ""]
        row = [f"cube: {stage}", summary["final_train_loss"], summary["epochs_run"], result["val"]["cosine"],
               result["test"]["cosine"], result["test"]["recall@1"], result["test"]["recall@5"],
               result["test"]["recall@10"], result["test"]["mrr"], f"{summary['wall_seconds']:.1f}", summary["parameters"]]
        out.append(_table(["model", "final loss", "epochs", "val cosine", "test cosine", "R@1", "R@5", "R@10", "MRR",
                           "wall s", "parameters"], [row, *baseline_rows]))
        out.append("")
    out += ["![training curves](loss_curves.png)", ""]

    out += ["## Throughput and latency", "",
            f"Lattice {'x'.join(map(str, bench['lattice']))}, {bench['steps']} steps, {bench['parameters']:,} "
            f"parameters, {bench['flops_per_sample_forward'] / 1e6:.1f} MFLOP per sample forward, on "
            f"{bench['device']} ({bench['device_reason']}). Median of {bench['repeats']} timed repeats after "
            f"{bench['warmup']} warm-up calls; min and max beside it.", ""]
    out.append(_table(["phase", "batch", "samples/s", "min", "max", "latency ms mean", "p50", "p90", "p99"],
                      [[r["phase"], r["batch_size"], r["samples_per_s"], r["samples_per_s_min"], r["samples_per_s_max"],
                        r["latency_ms_mean"], r["latency_ms_p50"], r["latency_ms_p90"], r["latency_ms_p99"]]
                       for r in bench["rows"]]))
    out += ["", "![throughput against batch size](throughput.png)", "", "## Memory", ""]
    labels = {"rss_mib": "process RSS after phase (MiB)", "cuda_max_allocated_mib": "CUDA peak allocated (MiB)",
              "cuda_max_reserved_mib": "CUDA peak reserved (MiB)"}
    memory_keys = [k for k in labels if k in bench["rows"][0]]
    out.append(_table(["phase", "batch", *[labels[k] for k in memory_keys]],
                      [[r["phase"], r["batch_size"], *[r[k] for k in memory_keys]] for r in bench["rows"]]))
    out += ["", f"Peak resident memory of the benchmark process: {bench['peak_rss_mib']:.0f} MiB.", ""]

    atomic.write_text(paths.REPORT, "\n".join(out))
    return paths.REPORT
