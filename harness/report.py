"""reports/report.md: provenance, data card, quality against baselines, training curves, speed and memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from cube import atomic
from cube.baselines import BASELINE_ORDER, LINEAR, SWEPT
from cube.checkpoint import SIDECAR
from cube.device import choose_device
from cube.metrics import CSLS_PER_PAIR
from cube.tasks import TASKS
from harness import paired, paths, plots
from harness.config import Params
from harness.evaluate import SUMMARISED
from harness.provenance import provenance
from harness.results import (
    Bench,
    Comparison,
    DataCard,
    Doctor,
    Evaluation,
    MeanStd,
    ModelSummary,
    Peers,
    Reliability,
    Roofline,
    Scaling,
    ScalingRow,
    SpeedTarget,
    TrainSummary,
    read_card,
    read_result,
)

COMPARED = ("recall@1", "mrr", "cosine")
CUBE_TUNING = {"advanced": f"loss mix: {SWEPT}"}  # scripts/val_sweep_advanced.py; the other stages were not swept
DETECT = 0.02  # the MRR difference the report says how many pairs would be needed to detect


V = TypeVar("V")


LEGACY = BASELINE_ORDER[-1]  # the earlier system's fixed processor: in evaluate.json, one sentence in the report
REPORTED = tuple(name for name in BASELINE_ORDER if name != LEGACY)


def in_order(results: dict[str, V], order: tuple[str, ...] | list[str]) -> dict[str, V]:
    """JSON files are written with sorted keys; the report lists stages in pipeline order. The legacy processor is
    left out of the tables (``legacy_line`` says how it scored)."""
    known = [k for k in order if k in results]
    return {k: results[k] for k in known + sorted(set(results) - set(known) - {LEGACY})}


def _history(stage: str) -> list[dict[str, Any]]:
    """A stage's per-epoch records, as its checkpoint keeps them (the training curves)."""
    sidecar = paths.checkpoint_dir(stage) / SIDECAR
    if not sidecar.exists():
        raise FileNotFoundError(f"{sidecar} is missing; run the stage first (dvc repro)")
    return json.loads(sidecar.read_text(encoding="utf-8"))["history"]


def difference(comparison: Comparison) -> paired.PairedDifference:
    return paired.PairedDifference(**comparison.model_dump(exclude={"verdict"}))


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


def _mean_std(score: MeanStd) -> str:
    return f"{score.mean:.4f} ± {score.std:.4f}"


def _stage_label(name: str, no_change_in: list[str], seeds: int) -> str:
    """A cube stage's row name, marked when its best epoch was its starting point (it kept the previous map)."""
    if not no_change_in:
        return name
    if seeds == 1:
        return f"{name} (no change: kept its starting map)"
    where = "every seed" if len(no_change_in) == seeds else "seed " + ", ".join(no_change_in)
    return f"{name} (no change: kept its starting map in {where})"


def quality_measures(evaluation: Evaluation) -> tuple[str, ...]:
    """The measures evaluate summarised over seeds, every table's columns: CSLS ones only where the task ranks by it."""
    first = next(iter(evaluation.summary.models.values()))
    return SUMMARISED + tuple(m for m in CSLS_PER_PAIR if m in first.test)


def compared_measures(comparisons: dict[str, dict[str, Comparison]]) -> tuple[str, ...]:
    """The paired measures in the report's order: recall@1, MRR, cosine, then any CSLS ranking."""
    first = next(iter(comparisons.values()))
    return COMPARED + tuple(m for m in CSLS_PER_PAIR if m in first)


def target_lines(comparisons: dict[str, dict[str, Comparison]], stage: str, missed: list[str]) -> list[str]:
    """Which baselines the chosen stage is better than, not significantly different from, or worse than, and the
    quality target as evaluate judged it (significant wins only)."""
    by_verdict: dict[str, list[str]] = {paired.BETTER: [], paired.NO_DIFFERENCE: [], paired.WORSE: []}
    for name, measures in comparisons.items():
        for measure in compared_measures(comparisons):
            shown = f"{name} on {measure}" + (" (borderline)" if measures[measure].borderline else "")
            by_verdict[measures[measure].verdict].append(shown)
    lines = [f"- significantly **better** than: {', '.join(by_verdict[paired.BETTER]) or 'none'};",
             f"- **no significant difference** from: {', '.join(by_verdict[paired.NO_DIFFERENCE]) or 'none'};",
             f"- significantly **worse** than: {', '.join(by_verdict[paired.WORSE]) or 'none'}.", ""]
    rule = (f"the chosen stage ({stage}) must be significantly better than every baseline on recall@1 and MRR and "
            "than identity and ridge on cosine")
    if missed:
        lines.append(f"**The quality target is not met**: {rule}; it is not on " + ", ".join(missed) + ".")
    else:
        lines.append(f"**The quality target is met**: {rule}, and it is on every one.")
    return lines


def detectable_lines(comparisons: dict[str, dict[str, Comparison]], test_pairs: int, targets: list[str]) -> list[str]:
    """How small a difference this test split can tell from noise, and how many pairs a 0.02 MRR would need."""
    out = []
    for measure in ("mrr", "recall@1"):
        found = [difference(m[measure]) for name, m in comparisons.items() if name in targets and name != "mean answer"]
        if not found:
            continue
        low, high = min(d.detectable for d in found), max(d.detectable for d in found)
        out.append(f"{measure} differences of {low:.3f} to {high:.3f}")
    mrr = [difference(m["mrr"]) for name, m in comparisons.items() if name in targets and name != "mean answer"]
    needed = sorted(paired.pairs_needed(d, DETECT) for d in mrr)
    text = (f"**What this evaluation can decide.** With {test_pairs:,} test pairs it detects (80% power, 5% level), "
            f"against the non-trivial baselines, " + " and ".join(out) + ". Smaller true differences usually come out "
            "as \"no significant difference\": that verdict means this split cannot tell, not that the models are "
            "equal.")
    if needed:
        text += (f" Detecting a {DETECT} MRR difference would take about {needed[0]:,} to {needed[-1]:,} test pairs "
                 "at these per-pair spreads.")
    return [text]


def _paired_section(evaluation: Evaluation, comparisons: dict[str, dict[str, Comparison]],
                    models: dict[str, Any]) -> list[str]:
    stage, seeds = evaluation.chosen_stage, evaluation.summary.seeds
    first = difference(next(iter(comparisons.values()))["mrr"])
    out = ["### Is the cube better? Paired differences on the test pairs", "",
           f"The cube stage chosen on mean validation MRR is **{stage}**. Each row is cube minus baseline on the same "
           f"{first.pairs} test pairs, averaged over {first.seeds} seed(s) ({', '.join(map(str, seeds))}), with a 95% "
           "interval that spans the spread over test pairs and over training runs: a bootstrap over pairs and seeds, "
           "widened where needed to Student's t interval over the seeds' means (`harness/paired.py`). Verdict: "
           "**better** when the whole interval is above 0, **worse** when below, otherwise **no significant "
           "difference**; *borderline* when a 90% or a 99% interval would say otherwise. 'Detectable' is the "
           "smallest true difference this split finds with 80% power.", ""]
    rows = []
    for name, measures in comparisons.items():
        for measure in compared_measures(comparisons):
            d = difference(measures[measure])
            rows.append([name, measure, f"{d.mean:+.4f}", d.interval(), d.shown_verdict(), f"{d.detectable:.4f}"])
    out += [_table(["baseline", "measure", "cube - baseline", "95% interval", "verdict", "detectable"], rows), "",
            "![paired differences with 95% intervals](paired_differences.png)", ""]
    target = evaluation.target
    out += target_lines(comparisons, stage, target.missed) + [""]
    out += detectable_lines(comparisons, evaluation.test_pairs, list(target.required))
    cube, mlp = models[f"cube: {stage}"], models.get("mlp")
    if mlp:
        out += ["", f"Size: the cube has {cube.parameters:,} trainable parameters; the MLP has "
                f"{mlp.parameters:,} ({mlp.parameters / cube.parameters:.0f}x as many)."]
    return out + [""]


def legacy_line(evaluation: Evaluation) -> str:
    """The earlier system's processor q + 0.15 tanh(q) in one sentence: a near-identity map, scored for the record."""
    models = evaluation.summary.models
    if LEGACY not in models:
        return ""
    legacy, identity = models[LEGACY].test["mrr"].mean, models["identity"].test["mrr"].mean
    return (f"The earlier system's fixed processor, {LEGACY.removeprefix('legacy ')}, scores test MRR {legacy:.4f} "
            f"against identity's {identity:.4f}; it is a near-identity map, so it is left out of the tables "
            "(its figures are in `metrics/evaluate.json`).")


def ordered_models(evaluation: Evaluation) -> dict[str, ModelSummary]:
    """The summary's models in the report's order: the cube's stages in pipeline order, then the baselines."""
    return in_order(evaluation.summary.models, [f"cube: {stage}" for stage in paths.STAGES] + list(REPORTED))


def _quality_section(evaluation: Evaluation, seed: int) -> list[str]:
    summary = evaluation.summary
    models = ordered_models(evaluation)
    comparisons = in_order(evaluation.comparisons, REPORTED)
    seeds = ", ".join(str(s) for s in summary.seeds)
    count = len(summary.seeds)
    measures = quality_measures(evaluation)
    out = ["## Quality on the test split", "",
           f"{evaluation.test_pairs} test pairs; each answer is ranked among the split's "
           f"{evaluation.test_candidates} distinct answers (other answers of the same question are not "
           "competitors). Baselines are fit on the training split and tuned on validation; the MLP and the "
           "contrastive linear map are trained like the cube, from the identity map, by its trainer with its stage "
           "settings (loss mix, AdamW, clipping, plateau schedule, early stopping, epoch-0 fallback, validation "
           "monitor), through the stages named in the last column with the tuning budget there. "
           + (f"Each row is the mean ± sample standard deviation over seeds {seeds}: under each seed the cube's four "
              "stages are trained again from scratch and the trainable baselines retrained "
              + ("(with `quality.resplit` each extra seed also re-draws the train/val/test split, so the ± includes "
                 f"split variation; the counts above are seed {seed}'s split)." if evaluation.resplit else
                 "(the seed changes initialisation and batch order, not the data split); the ± is training noise "
                 "only: the paired intervals below add the test pairs' own spread.") if count > 1 else
              f"One seed ({seeds}), so every ± is 0: list more in quality.extra_seeds for a spread.")
           + (" The `csls` columns rank the same candidates by cross-domain similarity local scaling (Conneau et "
              "al., 2018: twice the cosine less each side's mean cosine to its 10 nearest neighbours on the other "
              "side), the retrieval the bilingual-lexicon benchmarks (MUSE, VecMap) report: it discounts hubs, "
              "candidates near many predictions. Models are trained and chosen on plain cosine ranking."
              if set(CSLS_PER_PAIR) & set(measures) else ""), ""]
    rows = []
    for name, entry in models.items():
        if entry.group == "stages":
            label = _stage_label(name, entry.no_change_in, count)
            tuning = CUBE_TUNING.get(name.removeprefix("cube: "), "defaults, not swept")
        else:
            label, tuning = name, entry.tuning
        rows.append([label, *[_mean_std(entry.test[m]) for m in measures], entry.parameters, tuning])
    out.append(_table(["model", *measures, "parameters", "tuning on validation"], rows))
    out += ["", legacy_line(evaluation)]
    out += ["", "![test quality by stage and baseline](test_quality.png)", ""]
    out += _paired_section(evaluation, comparisons, models)
    out += [f"### Seed {seed} alone", "",
            "The pipeline's own checkpoints (`checkpoints/<stage>`), which the Stages section below reads (the "
            "regression gate reads every seed).", ""]
    rows = [[_stage_label(f"cube: {s}", [str(seed)] if v.no_change else [], 1),
             *[v.test.measure(m) for m in measures], v.parameters]
            for s, v in in_order(evaluation.stages, paths.STAGES).items()]
    rows += [[name, *[v.test.measure(m) for m in measures], v.parameters]
             for name, v in in_order(evaluation.baselines, REPORTED).items()]
    out.append(_table(["model", *measures, "parameters"], rows))
    return out + [""]


def build_report(params: Params) -> Path:
    card = read_card(paths.EMBEDDED / "card.json")
    evaluation = read_result(paths.EVALUATE_METRICS, Evaluation)
    bench = read_result(paths.BENCH_METRICS, Bench)
    trained = {stage: read_result(paths.train_metrics(stage), TrainSummary) for stage in paths.STAGES}
    histories = {stage: _history(stage) for stage in paths.STAGES}
    origin = provenance(params, choose_device(params.train.device))

    plots.loss_curves(histories, {stage: trained[stage].monitor for stage in paths.STAGES},
                      paths.REPORTS / "loss_curves.png")
    plots.quality_bars(ordered_models(evaluation), evaluation.summary.seeds, paths.REPORTS / "test_quality.png")
    plots.paired_differences(in_order(evaluation.comparisons, REPORTED),
                             compared_measures(evaluation.comparisons), evaluation.chosen_stage,
                             paths.REPORTS / "paired_differences.png")
    plots.throughput(bench, paths.REPORTS / "throughput.png")
    plots.scaling(bench.scaling, bench.device, paths.REPORTS / "scaling.png")

    out: list[str] = ["# Cube Bench report", ""]
    out += ["Every figure below was measured by this pipeline run (`dvc repro`); none is copied from elsewhere.",
            "Quality is on the test split, which no training or tuning step reads.", ""]
    out += answer_section(card, evaluation, bench)
    out += _provenance_section(origin) + _data_section(card)
    out += [""] + _quality_section(evaluation, params.seed)
    out += _stages_section(evaluation, trained)
    out += _device_section(bench.doctor)
    out += _speed_sections(bench)
    out += peer_section(bench.peers, bench.targets, bench.device)
    out += _roofline_section(bench.roofline, bench.device)
    out += _scaling_section(bench.scaling)
    out += _reliability_section(read_result(paths.RELIABILITY_METRICS, Reliability))

    atomic.write_text(paths.REPORT, "\n".join(out))
    return paths.REPORT


HEADLINE_RIVALS = ("identity", LINEAR, "mlp")  # no training; the simplest trained map; the strongest small one


def answer_section(card: DataCard, evaluation: Evaluation, bench: Bench) -> list[str]:
    """The report's answer first: is the cube better, on what data, how fast; the evidence follows below."""
    stage, models = evaluation.chosen_stage, evaluation.summary.models
    cube = models[f"cube: {stage}"]
    comparisons = in_order(evaluation.comparisons, REPORTED)
    task = TASKS[card.task]
    out = ["## The answer", "",
           f"Task **{card.task}** ({card.source}): {task.question} -> {task.answer}. {evaluation.test_pairs:,} test "
           f"pairs, {len(evaluation.summary.seeds)} training seed(s). The cube stage chosen on validation MRR is "
           f"**{stage}** ({cube.parameters:,} parameters).", ""]
    out += target_lines(comparisons, stage, evaluation.target.missed) + [""]
    rows = []
    for name in (n for n in HEADLINE_RIVALS if n in comparisons):
        d = difference(comparisons[name]["mrr"])
        rows.append([name, _mean_std(models[name].test["mrr"]), f"{d.mean:+.4f}", d.interval(), d.shown_verdict(),
                     models[name].parameters])
    out += [f"Test MRR: cube {_mean_std(cube.test['mrr'])} (mean ± std over seeds).", "",
            _table(["rival", "its test MRR", "cube - rival", "95% interval", "verdict", "its parameters"], rows), ""]
    rates = {(r.phase, r.batch_size): r.samples_per_s for r in bench.rows}
    batch = max(b for _, b in rates)
    met = [t for t in bench.targets if t.met is not None]
    out += [f"Speed on {bench.device}: {rates.get(('train', batch), float('nan')):,.0f} training and "
            f"{rates.get(('forward', batch), float('nan')):,.0f} forward samples/s at batch {batch}; "
            + ("at least as fast as every peer implementation" if bench.peers.own_at_least_as_fast else
               "**slower than a peer implementation in at least one phase**")
            + f"; {sum(bool(t.met) for t in met)} of {len(met)} speed targets measurable here met.", ""]
    return out


def _provenance_section(origin: dict[str, Any]) -> list[str]:
    return ["## Provenance", "", _table(["item", "value"], [
        ["git revision", origin["git_revision"]], ["params hash (sha256)", origin["params_hash"]],
        ["seed", origin["seed"]],
        ["deterministic algorithms (train.deterministic)", "on" if origin["deterministic_algorithms"] else "off"],
        ["device", origin["device"]], ["why this device", origin["device_reason"]],
        ["cpu threads", origin["cpu_threads"]],
        *[[name, version] for name, version in origin["libraries"].items()],
        ["written at (UTC)", origin["written_at"]],
    ])]


def _data_section(card: DataCard) -> list[str]:
    out = ["", "## Data", ""]
    out.append(_table(["item", "value"], [
        ["task", f"{card.task}: {TASKS[card.task].question} -> {TASKS[card.task].answer}"],
        ["a split keeps whole", TASKS[card.task].kept_whole],
        ["source", card.source], ["raw pairs (word tasks: entries)", card.raw_pairs],
        ["exact duplicates dropped", card.duplicates_dropped], ["empty entries dropped", card.empty_dropped],
        *[[f"dropped: {reason}", count] for reason, count in card.entries_dropped.items()],
        *[[f"{name} pairs / groups / distinct answers", f"{card.pairs[name]} / "
           f"{card.question_groups[name]} / {card.distinct_answers[name]}"] for name in ("train", "val", "test")],
        ["autoencoder sentences (train split only)", card.autoencoder_sentences],
        ["embedding width", card.dim],
    ]))
    out += ["", "Teachers (the first is the reference space; weights are the ensemble weights):", ""]
    out.append(_table(["teacher", "width", "pooling", "dtype", "weight", "pair agreement",
                       f"sentences over max_length (of {card.sentences:,})"],
                      [[t.name, t.width, t.pooling, t.dtype, t.weight, t.pair_agreement, t.truncated]
                       for t in card.teachers]))
    return out


def _stages_section(evaluation: Evaluation, trained: dict[str, TrainSummary]) -> list[str]:
    """Each stage's training in a line, then one table of the pipeline seed's stages (the baselines are in the
    quality table above)."""
    out = ["## Stages", ""]
    rows = []
    for stage in paths.STAGES:
        summary, result = trained[stage], evaluation.stages[stage]
        out += [f"### {stage}", "",
                f"Initialised from {summary.initialised_from}; best epoch {summary.best_epoch} of "
                f"{summary.epochs_run} by validation {summary.monitor}"
                + (" (stopped early)" if summary.stopped_early else "") + f"; trained on {summary.device}."
                + (f" **No change: no epoch beat its starting point, so this stage is {summary.initialised_from}'s "
                   "map unchanged** (its figures are that map's)." if summary.no_change else ""), ""]
        label = _stage_label(f"cube: {stage}", ["this"] if summary.no_change else [], 1)
        rows.append([label, summary.final_train_loss, summary.epochs_run, summary.best_value,
                     result.test.cosine, result.test.recall_at_1, result.test.recall_at_5, result.test.recall_at_10,
                     result.test.mrr, f"{summary.wall_seconds:.1f}", summary.parameters])
    out += ["The pipeline seed's stages (the baselines are in the quality table above):", "",
            _table(["model", "final loss", "epochs", "val (its monitor)", "test cosine", "R@1", "R@5", "R@10", "MRR",
                    "wall s", "parameters"], rows), ""]
    return out + ["![training curves](loss_curves.png)", ""]


MEMORY_LABELS = {
    "tensor_peak_mib": "tensors alive at once, at most (MiB, counted exactly; gated)",
    "host_peak_increase_mib": "host memory the phase needs (MiB, own process; moves between runs, not gated)",
    "cuda_max_allocated_mib": "torch CUDA peak allocated (MiB)", "cuda_max_reserved_mib": "torch CUDA peak reserved (MiB)",
    "nvml_used_mib": "NVML device used (MiB)", "nvml_total_mib": "NVML device total (MiB)",
}


def _device_section(doctor: Doctor) -> list[str]:
    rows = [["torch", doctor.torch], ["build CUDA", doctor.build_cuda or "none (CPU build)"],
            ["build arch list", ", ".join(doctor.arch_list) or "(none)"]]
    rows += [[f"GPU {g.index}", f"{g.name}, {g.capability}, "
              + ("supported by this build" if g.supported_by_build else f"NOT supported: {g.problem}")]
             for g in doctor.gpus] or [["GPUs", "none visible to torch"]]
    rows += [["NVML", doctor.nvml.status if doctor.nvml.status != "ok" else f"driver {doctor.nvml.driver}"]]
    cpu = doctor.cpu
    rows += [["CPU", f"{cpu.model}, {cpu.logical_cpus} logical CPUs, {cpu.torch_threads} torch threads, "
                     f"{cpu.memory_total_gib:.1f} GiB"],
             ["device used", f"{doctor.chosen_device} ({doctor.reason})"]]
    return ["## Device (python -m harness doctor)", "", _table(["item", "value"], rows), ""]


def _speed_sections(bench: Bench) -> list[str]:
    out = ["## Throughput and latency", "",
           f"Lattice {'x'.join(map(str, bench.lattice))}, {bench.steps} steps, {bench.parameters:,} "
           f"parameters, {bench.flops_per_sample_forward / 1e6:.1f} MFLOP per sample forward, on "
           f"{bench.device} ({bench.device_reason}). Median of {bench.repeats} timed repeats after "
           f"{bench.warmup} warm-up calls, min and max beside it; "
           + ("CUDA events time each call." if bench.device.startswith("cuda") else "wall clock times each call.")
           + " `train` is forward + cosine loss + backward + AdamW step.", ""]
    # a p-th percentile of n timings is only the largest one unless n > 1 / (1 - p): p90 needs 10 repeats, p99 100
    tails = [("p90", "latency_ms_p90", 10), ("p99", "latency_ms_p99", 100)]
    shown = [(label, key) for label, key, needed in tails if bench.repeats >= needed]
    out.append(_table(["phase", "batch", "samples/s", "min", "max", "latency ms mean", "p50", *[name for name, _ in shown]],
                      [[r.phase, r.batch_size, r.samples_per_s, r.samples_per_s_min, r.samples_per_s_max,
                        r.latency_ms_mean, r.latency_ms_p50, *[getattr(r, k) for _, k in shown]]
                       for r in bench.rows]))
    if len(shown) < len(tails):
        out += ["", f"{' and '.join(name for name, _, n in tails if bench.repeats < n)} not shown: {bench.repeats} repeats "
                "cannot tell a tail percentile from the slowest call (p90 needs 10, p99 100; `bench.repeats`)."]
    work = bench.work_per_sample
    out += ["", "![throughput against batch size](throughput.png)", "", "## Memory", "",
            f"What a training step keeps for backward, counted tensor by tensor (exact, gated): "
            f"{work.saved_bytes_train / 2**20:.3f} MiB per sample. FLOPs the cube's matmuls execute, counted by "
            f"torch's FlopCounterMode (exact, gated): {work.counted_flops_forward / 1e6:.2f} MFLOP per sample "
            f"forward, {work.counted_flops_train / 1e6:.2f} MFLOP per training step.", "",
            "Measured peaks per phase, each belonging to its phase: on the CPU, the resident memory one call of the "
            "phase adds, measured in a fresh process of its own (`harness/memory_probe.py`: the kernel's high-water "
            "mark reset after set-up), since in a long-running process memory an earlier phase freed stays resident; "
            "on a GPU, torch's allocator peaks, reset before each phase, with the driver's view (NVML) beside them.",
            ""]
    keys = [k for k in MEMORY_LABELS if getattr(bench.rows[0], k) is not None]
    out.append(_table(["phase", "batch", *[MEMORY_LABELS[k] for k in keys]],
                      [[r.phase, r.batch_size, *[getattr(r, k) for k in keys]] for r in bench.rows]))
    if bench.rows[0].nvml != "ok":
        out += ["", f"NVML: {bench.rows[0].nvml}."]
    out += ["", f"Peak resident memory of the benchmark process: {bench.peak_rss_mib:.0f} MiB.", ""]
    return out


PEER_NAMES = {"own": "this project's cube", "per_sample_loop": "same cube, one sample at a time (earlier trainer's loop)",
              "conv3d_reference": "NCA-style reference: 3x3x3 conv3d + 1x1x1 conv3d",
              "eager_reference": "eager reference: F.pad, slices, cat, Linear, ReLU, Linear (autograd)",
              "compiled_eager_reference": "eager reference under torch.compile (inductor, default mode)"}


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("**yes**" if met else "**NO**")


def peer_section(peers: Peers, targets: list[SpeedTarget], device: str) -> list[str]:
    """The peers' latencies, their speed ratios with intervals beside the ratio targets, and torch.compile's
    compile time apart."""
    rows = [[PEER_NAMES.get(r.implementation, r.implementation), r.phase, r.latency_ms_p50, r.latency_ms_mean]
            for r in peers.rows]
    here = "cuda" if device.startswith("cuda") else "cpu"
    goals = {t.target: t for t in targets if t.device == here}  # the ratio targets for this run's device
    ratio_rows = [[name.replace("_", " "), f"{value.ratio:.2f}", f"[{value.low:.2f}, {value.high:.2f}]",
                   goals[name].goal + f" ({here.upper()})" if name in goals else "-",
                   _met(goals[name].met) if name in goals else "-"] for name, value in peers.speed_ratios.items()]
    verdict = ("The project's implementation is at least as fast as every peer in both phases."
               if peers.own_at_least_as_fast else
               "**The project's implementation is slower than a peer in at least one phase** (ratio below 1 above).")
    if peers.compile_seconds:
        verdict += (" torch.compile's first calls, which trace and compile (with its caches off, as on a first run) "
                    "and are not in the timings above: "
                    + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in peers.compile_seconds.items()) + ".")
    for name, reason in peers.unavailable.items():
        verdict += f" Not measured: {PEER_NAMES.get(name, name)} ({reason})."
    return ["## Peers (same weights, same function, measured in this run)", "",
            f"Batch {peers.batch_size}, {peers.repeats} repeats. All implementations are timed in alternation, "
            "repeat by repeat (a run of its own, apart from the batch sweep above); a ratio is the geometric mean "
            "over repeats of peer time ÷ own time (above 1: ours is faster), with a 95% bootstrap interval over the "
            "repeats. The per-sample loop wraps the cube itself, so only the conv3d and eager references, code of "
            "their own, can show a slowdown of the cube; the gate reads those.", "",
            _table(["implementation", "phase", "latency ms p50", "latency ms mean"], rows), "",
            _table(["ratio", "value", "95% interval", "target", "met"], ratio_rows), "",
            verdict, "", *_targets_section(targets)]


def _targets_section(targets: list[SpeedTarget]) -> list[str]:
    """The speed targets, each with the device it is set for; the other device's read 'not measured here'."""
    rows = [[t.target, t.device.upper(), t.goal, t.note if t.value is None else t.value, _met(t.met)] for t in targets]
    return ["### Speed targets", "",
            "Speed targets of the project's cube: training (forward + cosine loss + backward + AdamW step) against "
            "the eager reference above, and on a GPU absolute figures from the batch sweep.", "",
            _table(["target", "device", "goal", "measured", "met"], rows), ""]


def _roofline_section(lines: Roofline, device: str) -> list[str]:
    rows = [[phase, f"{v.flops_per_sample / 1e6:.1f}", f"{v.bytes_per_sample / 2**20:.2f}",
             f"{v.arithmetic_intensity:.2f}", f"{v.achieved_flops / 1e9:.2f}", f"{v.peak_matmul_flops / 1e9:.1f}",
             f"{v.copy_bandwidth_bytes / 1e9:.1f}", f"{v.roofline_bound_flops / 1e9:.1f} ({v.bound_by})",
             f"{100 * v.fraction_of_peak:.2f}%", f"{100 * v.fraction_of_roofline:.1f}%"]
            for phase, v in (("forward", lines.forward), ("train", lines.train))]
    forward = lines.forward
    return ["## Roofline", "",
            f"Analytic FLOPs and bytes per sample (cell rule over all cells and steps; bytes as the project's "
            f"propagation moves them; training = 3x forward), against peaks measured on {device} in this run "
            f"(dense float32 matmul, large tensor copy), at batch {lines.batch_size}.", "",
            _table(["phase", "MFLOP/sample", "MiB/sample", "FLOP/byte", "achieved GFLOP/s", "peak matmul GFLOP/s",
                    "copy GB/s", "roofline bound GFLOP/s", "of peak", "of roofline"], rows), "",
            f"Roofline: at {forward.arithmetic_intensity:.2f} FLOP/byte the cube is {forward.bound_by}-bound here; "
            f"forward achieves {100 * forward.fraction_of_peak:.2f}% of the measured matmul peak and "
            f"{100 * forward.fraction_of_roofline:.1f}% of its roofline bound."
            + (" Above 100% means the cube moves fewer bytes than the analytic count assumes (small tensors stay in "
               "cache between the steps, so main-memory bandwidth is not the limit it models): the bound is then "
               "too low, not the measurement too high." if max(forward.fraction_of_roofline,
                                                               lines.train.fraction_of_roofline) > 1 else ""), ""]


def _scaling_section(scaling: Scaling) -> list[str]:
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    side = scaling.by_side
    on_gpu = side.rows[0].cuda_peak_increase_mib_per_sample is not None
    header = ["lattice", "cells", "steps", "checkpointing", "ms/sample", "saved for backward MiB/sample"]
    header += ["CUDA peak allocated MiB/sample"] if on_gpu else []

    def rows(block: list[ScalingRow]) -> list[list[Any]]:
        return [["x".join(map(str, r.lattice)), r.cells, r.steps, "on" if r.activation_checkpointing else "off",
                 f"{r.ms_per_sample:.3f}", f"{r.saved_mib_per_sample:.3f}"]
                + ([f"{r.cuda_peak_increase_mib_per_sample:.3f}"] if on_gpu else []) for r in block]

    def exponents(fits: dict[str, float | None]) -> str:
        text = f"time {fmt(fits['time'])}, saved memory {fmt(fits['saved_memory'])}"
        return text + (f", CUDA peak memory {fmt(fits['cuda_peak_memory'])}" if "cuda_peak_memory" in fits else "")

    out = ["## Scaling", "",
           f"A training forward + backward of the bare lattice at batch {scaling.batch_size}, per sample. "
           "Exponents are least-squares slopes on log-log axes (time or memory ~ x^exponent). "
           "'Saved for backward' counts every tensor autograd keeps for the backward pass (exact, the activation "
           "peak of a training step)" + ("; the CUDA column is the allocator's measured peak." if on_gpu else
                                         "; on CPU no per-configuration peak is measured, since the allocator keeps "
                                         "freed memory resident."), "",
           "### Against lattice side", "", _table(header, rows(side.rows)), "",
           f"Fitted exponents against side: {exponents(side.exponent)} (3 = linear in the number of cells, "
           "which is side³).", "", "### Against propagation steps", ""]
    for name in ("plain", "checkpointed"):  # JSON keeps keys sorted; the report reads off before on
        block = scaling.by_steps[name]
        out += [f"Activation checkpointing {'on' if name == 'checkpointed' else 'off'}:", "",
                _table(header, rows(block.rows)), "", f"Fitted exponents against steps: {exponents(block.exponent)}.",
                ""]
    flat = scaling.by_steps["checkpointed"].exponent["saved_memory"]
    out += [f"With checkpointing on, only the initial state is kept for backward and the states in between are "
            f"recomputed during it (bisection, at most a fixed number of states held at once), so saved memory "
            f"against steps has exponent {fmt(flat)} (0 = flat), paid for in time: about T log T recomputed steps "
            f"instead of none.", "", "![scaling, log-log](scaling.png)", ""]
    return out


RELIABILITY_KINDS = {"bad_input": ("bad inputs", "refused with a clear error, nothing half-written"),
                     "fault": ("faults injected", "survived: nothing lost, resumed or rebuilt")}


def _reliability_section(drills: Reliability) -> list[str]:
    out = ["## Reliability (python -m harness reliability, run by this pipeline)", ""]
    if not drills.run:
        return out + [f"Drills not run in this pipeline run: {drills.reason}.", ""]
    kinds = {"bad_input": drills.bad_input, "fault": drills.fault}
    rows = []
    for kind, (tried, passed) in RELIABILITY_KINDS.items():
        counts = kinds[kind]
        failed = ", ".join(counts.failed) or "none"
        rows.append([tried, counts.tried, f"{counts.passed} {passed}", failed, len(counts.left_to_make_test)])
    out += [f"pytest `-m \"{drills.selection}\"` over tests/, {drills.seconds} s, exit code "
            f"{drills.pytest_exit_code}.", "",
            _table(["drill", "tried", "passed", "failed", "left to `make test` (slow)"], rows), ""]
    slow = [n for kind in RELIABILITY_KINDS for n in kinds[kind].left_to_make_test]
    if slow:
        out += ["Not run by this stage (each runs whole nested pipelines; `make test` and CI run them): "
                + ", ".join(f"`{n.split('::')[-1]}`" for n in slow) + ".", ""]
    return out
