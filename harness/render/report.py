"""reports/report.md: provenance, data card, quality against baselines, training curves, speed and memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from pydantic import ValidationError

from cube import atomic
from cube.checkpoint import SIDECAR, CheckpointError
from cube.device import choose_device
from cube.measures import CSLS_PER_PAIR, MRR, SUMMARISED
from cube.numerics import NATIVE, PORTABLE, NumericsInForce
from cube.rivals import IDENTITY, LEGACY, LINEAR, MEAN_ANSWER, MLP, SWEPT
from cube.rivals import names as baseline_names
from cube.tasks import TASKS, Task
from harness import paths
from harness.config import Params
from harness.judge.targets import describe_quality_target
from harness.render import plots
from harness.render.tables import markdown_table
from harness.stats import paired
from harness.stats.paired import PairedDifference
from harness.store.provenance import Provenance, provenance
from harness.store.results import (
    CUBE_PREFIX,
    OWN,
    Bench,
    DataCard,
    Doctor,
    Evaluation,
    Exponents,
    MeanStd,
    ModelSummary,
    NumericsCost,
    Peers,
    Reliability,
    Roofline,
    RooflineLine,
    Scaling,
    ScalingRow,
    SpeedVerdict,
    TrainSummary,
    WorkPerSample,
    cube_model,
    peer_of,
    ratio_key,
    read_card,
    read_result,
)

COMPARED = ("recall@1", "mrr", "cosine")
CUBE_TUNING = {"advanced": f"loss mix: {SWEPT}"}  # scripts/val_sweep_advanced.py; the other stages were not swept
DETECT = 0.02  # the MRR difference the report says how many pairs would be needed to detect


V = TypeVar("V")




def tabled_baselines() -> tuple[str, ...]:
    """The registered baselines the report's tables show, in the registry's order."""
    return baseline_names(in_tables_only=True)


def tabled(results: dict[str, V]) -> dict[str, V]:
    """What the report's tables show, in the result's own order (stages in pipeline order, then the baselines in
    ``cube/rivals.py``'s): every entry but the baselines kept out of the tables (``legacy_line`` has its sentence)."""
    hidden = set(baseline_names()) - set(tabled_baselines())
    return {name: value for name, value in results.items() if name not in hidden}


def _history(stage: str) -> list[plots.EpochRecord]:
    """A stage's per-epoch records, as its checkpoint keeps them (the training curves)."""
    sidecar = paths.checkpoint_dir(stage) / SIDECAR
    if not sidecar.exists():
        raise FileNotFoundError(f"{sidecar} is missing; run the stage first (dvc repro)")
    try:
        return plots.CheckpointHistory.model_validate_json(sidecar.read_text(encoding="utf-8")).history
    except ValidationError as error:
        raise CheckpointError(f"{sidecar}: its epoch history is not one this code reads ({error.error_count()} "
                          f"problem(s), first: {error.errors()[0]['msg']} at {error.errors()[0]['loc']}); re-run the "
                          "stage (dvc repro)") from None


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


def compared_measures(comparisons: dict[str, dict[str, PairedDifference]]) -> tuple[str, ...]:
    """The paired measures in the report's order: recall@1, MRR, cosine, then any CSLS ranking."""
    first = next(iter(comparisons.values()))
    return COMPARED + tuple(m for m in CSLS_PER_PAIR if m in first)


def target_lines(comparisons: dict[str, dict[str, PairedDifference]], stage: str, missed: list[str],
                 required: dict[str, list[str]]) -> list[str]:
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
    rule = (f"the chosen stage ({stage}) must be significantly better than "
            + describe_quality_target(required, tabled_baselines()))
    if missed:
        lines.append(f"**The quality target is not met**: {rule}; it is not on " + ", ".join(missed) + ".")
    else:
        lines.append(f"**The quality target is met**: {rule}, and it is on every one.")
    return lines


def detectable_lines(comparisons: dict[str, dict[str, PairedDifference]], test_pairs: int, targets: list[str]) -> list[str]:
    """How small a difference this test split can tell from noise, and how many pairs a 0.02 MRR would need."""
    out = []
    for measure in ("mrr", "recall@1"):
        found = [m[measure] for name, m in comparisons.items() if name in targets and name != MEAN_ANSWER]
        if not found:
            continue
        low, high = min(d.detectable for d in found), max(d.detectable for d in found)
        out.append(f"{measure} differences of {low:.3f} to {high:.3f}")
    mrr = [m[MRR] for name, m in comparisons.items() if name in targets and name != MEAN_ANSWER]
    needed = sorted(paired.pairs_needed(d, DETECT) for d in mrr)
    text = (f"**What this evaluation can decide.** With {test_pairs:,} test pairs it detects (80% power, 5% level), "
            f"against the non-trivial baselines, " + " and ".join(out) + ". Smaller true differences usually come out "
            "as \"no significant difference\": that verdict means this split cannot tell, not that the models are "
            "equal.")
    if needed:
        text += (f" Detecting a {DETECT} MRR difference would take about {needed[0]:,} to {needed[-1]:,} test pairs "
                 "at these per-pair spreads.")
    return [text]


def legacy_line(evaluation: Evaluation) -> str:
    """The earlier system's processor q + 0.15 tanh(q) in one sentence: a near-identity map, scored for the record."""
    models = evaluation.summary.models
    if LEGACY not in models:
        return ""
    legacy, identity = models[LEGACY].test[MRR].mean, models[IDENTITY].test[MRR].mean
    return (f"The earlier system's fixed processor, {LEGACY.removeprefix('legacy ')}, scores test MRR {legacy:.4f} "
            f"against identity's {identity:.4f}; it is a near-identity map, so it is left out of the tables "
            "(its figures are in `metrics/evaluate.json`).")


def ordered_models(evaluation: Evaluation) -> dict[str, ModelSummary]:
    """The summary's models the tables show: the cube's stages in pipeline order, then the baselines."""
    return tabled(evaluation.summary.models)


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report reads: the stages' typed results and this run's provenance."""

    card: DataCard
    evaluation: Evaluation
    bench: Bench
    trained: dict[str, TrainSummary]
    drills: Reliability
    origin: Provenance
    seed: int


TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), undefined=jinja2.StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
HEADLINE_RIVALS = (IDENTITY, LINEAR, MLP)  # no training; the simplest trained map; the strongest small one
MEMORY_LABELS = {
    "tensor_peak_mib": "tensors alive at once, at most (MiB, counted exactly; gated)",
    "host_peak_increase_mib": "host memory the phase needs (MiB, own process; moves between runs, not gated)",
    "cuda_max_allocated_mib": "torch CUDA peak allocated (MiB)", "cuda_max_reserved_mib": "torch CUDA peak reserved (MiB)",
    "nvml_used_mib": "NVML device used (MiB)", "nvml_total_mib": "NVML device total (MiB)",
}
TAIL_PERCENTILES = (("p90", "latency_ms_p90", 10), ("p99", "latency_ms_p99", 100))  # a p-th percentile of n timings
# is only the largest one unless n > 1 / (1 - p): p90 needs 10 repeats, p99 100
RELIABILITY_KINDS = {"bad_input": ("bad inputs", "refused with a clear error, nothing half-written"),
                     "fault": ("faults injected", "survived: nothing lost, resumed or rebuilt")}


def build_report(params: Params) -> Path:
    inputs = ReportInputs(
        card=read_card(paths.EMBEDDED / "card.json"), evaluation=read_result(paths.EVALUATE_METRICS, Evaluation),
        bench=read_result(paths.BENCH_METRICS, Bench),
        trained={stage: read_result(paths.train_metrics(stage), TrainSummary) for stage in paths.STAGES},
        drills=read_result(paths.RELIABILITY_METRICS, Reliability),
        origin=provenance(params, choose_device(params.train.device)), seed=params.seed)
    draw_plots(inputs)
    atomic.write_text(paths.REPORT, markdown(inputs))
    return paths.REPORT


def draw_plots(inputs: ReportInputs) -> None:
    evaluation, bench = inputs.evaluation, inputs.bench
    histories = {stage: _history(stage) for stage in paths.STAGES}
    plots.loss_curves(histories, {stage: inputs.trained[stage].monitor for stage in paths.STAGES},
                      paths.REPORTS / "loss_curves.png")
    plots.quality_bars(ordered_models(evaluation), evaluation.summary.seeds, paths.REPORTS / "test_quality.png")
    plots.paired_differences(tabled(evaluation.comparisons),
                             compared_measures(evaluation.comparisons), evaluation.chosen_stage,
                             paths.REPORTS / "paired_differences.png")
    plots.throughput(bench, paths.REPORTS / "throughput.png", peer_labels(bench))
    plots.scaling(bench.scaling, bench.device, paths.REPORTS / "scaling.png")


def markdown(inputs: ReportInputs) -> str:
    """The report's text: its tables and figures from the typed results, its words from report.md.j2."""
    return TEMPLATES.get_template("report.md.j2").render(_page(inputs).context())


@dataclass(frozen=True)
class PageView:
    """What report.md.j2 shows, by name: the typed results it reads and the tables built from them. Every name the
    template uses is a field here and every field is used there (tests/test_report_view.py)."""

    card: DataCard
    task: Task
    ev: Evaluation
    bench: Bench
    seed: int
    stage: str
    cube: ModelSummary
    mlp: ModelSummary | None
    trained: dict[str, TrainSummary]
    drills: Reliability
    work: WorkPerSample
    scaling: Scaling
    forward_line: RooflineLine
    verdicts: str
    detectable: str
    rivals_table: str
    rate: Callable[[str], float]  # samples/s of a phase at the largest batch
    largest_batch: int
    targets_met: int
    targets_measurable: int
    provenance_table: str
    data_table: str
    teachers_table: str
    seed_count: int
    seed_list: str
    csls: bool
    quality_table: str
    legacy_line: str
    first_difference: PairedDifference
    paired_table: str
    seed_table: str
    stages_table: str
    device_table: str
    throughput_table: str
    tails_left_out: list[str]
    memory_table: str
    peer_table: str
    ratio_table: str
    peer_label: Callable[[str], str]
    numerics_cost_table: str
    peer_sweep_table: str
    peer_sweep_line: str
    compile_times: str
    targets_table: str
    roofline_table: str
    above_roofline: bool
    scaling_on_gpu: bool
    side_table: str
    exponents: Callable[[Exponents], str]
    fmt: Callable[[float | None], str]
    steps_blocks: list[tuple[str, dict[str, Any]]]
    drills_table: str
    slow_drills: str
    mean_std: Callable[[MeanStd], str]

    def context(self) -> dict[str, Any]:
        """The template's names, one per field (shallow: the typed results stay typed)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


def _page(inputs: ReportInputs) -> PageView:
    """What the template shows: the typed results, and the tables built from them."""
    card, ev, bench, seed = inputs.card, inputs.evaluation, inputs.bench, inputs.seed
    stage, models = ev.chosen_stage, ordered_models(ev)
    comparisons = tabled(ev.comparisons)
    cube = models[cube_model(stage)]
    measures = quality_measures(ev)
    rates = {(r.phase, r.batch_size): r.samples_per_s for r in bench.rows}
    largest = max(b for _, b in rates)
    measurable = [t for t in bench.targets if t.met is not None]
    kinds = {"bad_input": inputs.drills.bad_input, "fault": inputs.drills.fault}
    slow = [n for kind in RELIABILITY_KINDS if kinds[kind] for n in kinds[kind].left_to_make_test]
    return PageView(
        card=card, task=TASKS[card.task], ev=ev, bench=bench, seed=seed, stage=stage, cube=cube,
        mlp=models.get(MLP), trained=inputs.trained, drills=inputs.drills, work=bench.work_per_sample,
        scaling=bench.scaling, forward_line=bench.roofline.forward,
        verdicts="\n".join(target_lines(comparisons, stage, ev.target.missed, ev.target.required)),
        detectable=detectable_lines(comparisons, ev.test_pairs, list(ev.target.required))[0],
        rivals_table=_rivals_table(comparisons, models),
        rate=lambda phase: rates.get((phase, largest), float("nan")), largest_batch=largest,
        targets_met=sum(bool(t.met) for t in measurable), targets_measurable=len(measurable),
        provenance_table=_provenance_table(inputs.origin), data_table=_data_table(card),
        teachers_table=_teachers_table(card),
        seed_count=len(ev.summary.seeds), seed_list=", ".join(str(s) for s in ev.summary.seeds),
        csls=bool(set(CSLS_PER_PAIR) & set(measures)),
        quality_table=_quality_table(models, measures, len(ev.summary.seeds)),
        legacy_line=legacy_line(ev), first_difference=next(iter(comparisons.values()))[MRR],
        paired_table=_paired_table(comparisons), seed_table=_seed_table(ev, measures, seed),
        stages_table=_stages_table(ev, inputs.trained), device_table=_device_table(bench.doctor),
        throughput_table=_throughput_table(bench),
        tails_left_out=[name for name, _, needed in TAIL_PERCENTILES if bench.repeats < needed],
        memory_table=_memory_table(bench), peer_table=_peer_table(bench.peers),
        ratio_table=ratio_table(bench.peers, bench.targets, bench.device), peer_label=peer_labels(bench),
        numerics_cost_table=_numerics_cost_table(bench.numerics_cost),
        peer_sweep_table=_peer_sweep_table(bench.peer_sweep), peer_sweep_line=_peer_sweep_line(bench.peer_sweep),
        compile_times=", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in bench.peers.compile_seconds.items()),
        targets_table=targets_table(bench.targets), roofline_table=_roofline_table(bench.roofline),
        above_roofline=max(bench.roofline.forward.fraction_of_roofline, bench.roofline.train.fraction_of_roofline) > 1,
        scaling_on_gpu=bench.scaling.by_side.rows[0].cuda_peak_increase_mib_per_sample is not None,
        side_table=_scaling_table(bench.scaling.by_side.rows), exponents=_exponents, fmt=_fmt,
        steps_blocks=[(name, {"table": _scaling_table(bench.scaling.by_steps[name].rows),
                              "exponent": bench.scaling.by_steps[name].exponent})
                      for name in ("plain", "checkpointed")],  # off before on
        drills_table=_drills_table(kinds) if inputs.drills.run else "",
        slow_drills=", ".join(f"`{n.split('::')[-1]}`" for n in slow),
        mean_std=_mean_std,
    )


# ---------------------------------------------------------------- the tables


def _rivals_table(comparisons: dict[str, dict[str, PairedDifference]], models: dict[str, ModelSummary]) -> str:
    rows = []
    for name in (n for n in HEADLINE_RIVALS if n in comparisons):
        d = comparisons[name][MRR]
        rows.append([name, _mean_std(models[name].test[MRR]), f"{d.mean:+.4f}", d.interval(), d.shown_verdict(),
                     models[name].parameters])
    return markdown_table(["rival", "its test MRR", "cube - rival", "95% interval", "verdict", "its parameters"], rows)


RECOMPUTES_ON = {PORTABLE: "any x86-64 CPU with AVX2", NATIVE: "this kind of CPU only"}  # where figures recompute


def _numerics_rows(found: NumericsInForce) -> list[list[Any]]:
    pins = ", ".join(f"`{name}={value}`" for name, value in found.pins.items()) or "none (each library chooses)"
    words = (f"portable: torch's CPU code paths pinned, so these figures recompute to the bit on "
             f"{RECOMPUTES_ON[PORTABLE]}" if found.mode == PORTABLE else
             f"native: this CPU's own code paths; the figures reproduce on {RECOMPUTES_ON[NATIVE]}")
    return [["numerics", words], ["pins in force", pins], ["torch CPU capability", found.torch_cpu_capability],
            ["CPU model", found.cpu_model], ["CPU flags that decide the code paths", " ".join(found.cpu_flags)],
            ["GPU numerics", found.gpu]]


def _provenance_table(origin: Provenance) -> str:
    return markdown_table(["item", "value"], [
        ["git revision", origin.git_revision], ["params hash (sha256)", origin.params_hash],
        ["seed", origin.seed],
        ["deterministic algorithms (train.deterministic)", "on" if origin.deterministic_algorithms else "off"],
        ["device", origin.device], ["why this device", origin.device_reason],
        ["cpu threads", origin.cpu_threads],
        *_numerics_rows(origin.numerics),
        *[[name, version] for name, version in origin.libraries.items()],
        ["written at (UTC)", origin.written_at],
    ])


def _data_table(card: DataCard) -> str:
    task = TASKS[card.task]
    return markdown_table(["item", "value"], [
        ["task", f"{card.task}: {task.question} -> {task.answer}"], ["a split keeps whole", task.kept_whole],
        ["source", card.source], ["raw pairs (word tasks: entries)", card.raw_pairs],
        ["exact duplicates dropped", card.duplicates_dropped], ["empty entries dropped", card.empty_dropped],
        *[[f"dropped: {reason}", count] for reason, count in card.entries_dropped.items()],
        *[[f"{name} pairs / groups / distinct answers", f"{card.pairs[name]} / "
           f"{card.question_groups[name]} / {card.distinct_answers[name]}"] for name in ("train", "val", "test")],
        ["autoencoder sentences (train split only)", card.autoencoder_sentences],
        ["embedding width", card.dim],
    ])


def _teachers_table(card: DataCard) -> str:
    return markdown_table(["teacher", "width", "pooling", "dtype", "weight", "pair agreement",
                           f"sentences over max_length (of {card.sentences:,})"],
                          [[t.name, t.width, t.pooling, t.dtype, t.weight, t.pair_agreement, t.truncated]
                           for t in card.teachers])


def _quality_table(models: dict[str, ModelSummary], measures: tuple[str, ...], seeds: int) -> str:
    rows = []
    for name, entry in models.items():
        if entry.group == "stages":
            label = _stage_label(name, entry.no_change_in, seeds)
            tuning = CUBE_TUNING.get(name.removeprefix(CUBE_PREFIX), "defaults, not swept")
        else:
            label, tuning = name, entry.tuning
        rows.append([label, *[_mean_std(entry.test[m]) for m in measures], entry.parameters, tuning])
    return markdown_table(["model", *measures, "parameters", "tuning on validation"], rows)


def _paired_table(comparisons: dict[str, dict[str, PairedDifference]]) -> str:
    rows = []
    for name, measures in comparisons.items():
        for measure in compared_measures(comparisons):
            d = measures[measure]
            rows.append([name, measure, f"{d.mean:+.4f}", d.interval(), d.shown_verdict(), f"{d.detectable:.4f}"])
    return markdown_table(["baseline", "measure", "cube - baseline", "95% interval", "verdict", "detectable"], rows)


def _seed_table(ev: Evaluation, measures: tuple[str, ...], seed: int) -> str:
    rows = [[_stage_label(cube_model(s), [str(seed)] if v.no_change else [], 1),
             *[v.test.measure(m) for m in measures], v.parameters]
            for s, v in ev.stages.items()]
    rows += [[name, *[v.test.measure(m) for m in measures], v.parameters]
             for name, v in tabled(ev.baselines).items()]
    return markdown_table(["model", *measures, "parameters"], rows)


def _stages_table(ev: Evaluation, trained: dict[str, TrainSummary]) -> str:
    rows = []
    for stage, summary in trained.items():
        result = ev.stages[stage]
        label = _stage_label(cube_model(stage), ["this"] if summary.no_change else [], 1)
        rows.append([label, summary.final_train_loss, summary.epochs_run, summary.best_value,
                     result.test.cosine, result.test.recall_at_1, result.test.recall_at_5, result.test.recall_at_10,
                     result.test.mrr, f"{summary.wall_seconds:.1f}", summary.parameters])
    return markdown_table(["model", "final loss", "epochs", "val (its monitor)", "test cosine", "R@1", "R@5", "R@10", "MRR",
                           "wall s", "parameters"], rows)


def _device_table(doctor: Doctor) -> str:
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
    return markdown_table(["item", "value"], rows)


def _throughput_table(bench: Bench) -> str:
    shown = [(label, key) for label, key, needed in TAIL_PERCENTILES if bench.repeats >= needed]
    return markdown_table(["phase", "batch", "samples/s", "min", "max", "latency ms mean", "p50", *[name for name, _ in shown]],
                          [[r.phase, r.batch_size, r.samples_per_s, r.samples_per_s_min, r.samples_per_s_max,
                            r.latency_ms_mean, r.latency_ms_p50, *[getattr(r, k) for _, k in shown]] for r in bench.rows])


def _memory_table(bench: Bench) -> str:
    keys = [k for k in MEMORY_LABELS if getattr(bench.rows[0], k) is not None]
    return markdown_table(["phase", "batch", *[MEMORY_LABELS[k] for k in keys]],
                          [[r.phase, r.batch_size, *[getattr(r, k) for k in keys]] for r in bench.rows])


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("**yes**" if met else "**NO**")


def peer_labels(bench: Bench) -> Callable[[str], str]:
    """The bench's own words for each implementation it timed (the name itself where it recorded none)."""
    words = {name: text for peers in (bench.peers, *bench.peer_sweep) for name, text in peers.labels.items()}
    return lambda name: words.get(name, name)


def _peer_table(peers: Peers) -> str:
    return markdown_table(["implementation", "phase", "latency ms p50", "latency ms mean"],
                                  [[peers.labels.get(r.implementation, r.implementation), r.phase, r.latency_ms_p50,
                                    r.latency_ms_mean] for r in peers.rows])


def ratio_table(peers: Peers, targets: list[SpeedVerdict], device: str) -> str:
    """The speed ratios with their intervals, beside the ratio targets of this run's device."""
    here = "cuda" if device.startswith("cuda") else "cpu"
    goals = {t.target: t for t in targets if t.device == here}
    return markdown_table(["ratio", "value", "95% interval", "target", "met"],
                          [[name.replace("_", " "), f"{value.ratio:.2f}", f"[{value.low:.2f}, {value.high:.2f}]",
                            goals[name].goal + f" ({here.upper()})" if name in goals else "-",
                            _met(goals[name].met) if name in goals else "-"] for name, value in peers.speed_ratios.items()])


def _sweep_verdict(value: paired.RatioEstimate) -> str:
    return "faster" if value.low > 1 else "slower" if value.high < 1 else "no significant difference"


def _peer_sweep_line(points: list[Peers]) -> str:
    """The peer sweep in a clause for the headline: how many of its comparisons the cube wins, loses or ties."""
    if not points:
        return ""
    verdicts = [_sweep_verdict(value) for point in points for value in point.speed_ratios.values()]
    sizes = [point.batch_size for point in points]
    return (f"; across the peer sweep (batch {min(sizes):,} to {max(sizes):,}, {len(verdicts)} comparisons) faster in "
            f"{verdicts.count('faster')}, slower in {verdicts.count('slower')}, no significant difference in "
            f"{verdicts.count('no significant difference')}")


def _peer_sweep_table(points: list[Peers]) -> str:
    """Per batch and phase: the cube's samples/s, then each peer's samples/s and the cube's speed over it with its
    interval ("faster" or "slower" only where the interval leaves 1 out)."""
    if not points:
        return ""
    peers = list(dict.fromkeys(peer_of(key) for key in points[0].speed_ratios))
    header = ["batch", "phase", "cube samples/s"]
    for name in peers:
        header += [f"{points[0].labels.get(name, name).split(':')[0]} samples/s", "cube's speed over it [95% interval]"]
    rows = []
    for point in points:
        rate = {(r.implementation, r.phase): r.samples_per_s for r in point.rows}
        for phase in ("forward", "train"):
            cells: list[Any] = [point.batch_size, phase, f"{rate[(OWN, phase)]:,.0f}"]
            for name in peers:
                value = point.speed_ratios[ratio_key(phase, name)]
                cells += [f"{rate[(name, phase)]:,.0f}",
                          f"{value.ratio:.2f} [{value.low:.2f}, {value.high:.2f}] {_sweep_verdict(value)}"]
            rows.append(cells)
    return markdown_table(header, rows)


def _numerics_cost_table(cost: NumericsCost | None) -> str:
    if cost is None or not cost.measured:
        return ""
    rows = []
    for point, value in cost.portable_speed_over_native.items():
        phase, batch = point.split("@")
        verdict = ("portable slower" if value.high < 1 else "portable faster" if value.low > 1 else
                   "no significant difference")
        rows.append([phase, batch, f"{value.ratio:.3f}", f"[{value.low:.3f}, {value.high:.3f}]", verdict])
    return markdown_table(["phase", "batch", "portable speed / native speed", "95% interval", "verdict"], rows)


def targets_table(targets: list[SpeedVerdict]) -> str:
    """The speed targets, each with the device it is set for; the other device's read 'not measured here'."""
    return markdown_table(["target", "device", "goal", "measured", "met"],
                          [[t.target, t.device.upper(), t.goal, t.note if t.value is None else t.value, _met(t.met)]
                           for t in targets])


def _roofline_table(lines: Roofline) -> str:
    return markdown_table(["phase", "MFLOP/sample", "MiB/sample", "FLOP/byte", "achieved GFLOP/s", "peak GFLOP/s",
                           "copy GB/s", "roofline bound GFLOP/s", "of peak", "of roofline"],
                          [[phase, f"{v.flops_per_sample / 1e6:.1f}", f"{v.bytes_per_sample / 2**20:.2f}",
                            f"{v.arithmetic_intensity:.2f}", f"{v.achieved_flops / 1e9:.2f}", f"{v.peak_flops / 1e9:.1f}",
                            f"{v.copy_bandwidth_bytes / 1e9:.1f}", f"{v.roofline_bound_flops / 1e9:.1f} ({v.bound_by})",
                            f"{100 * v.fraction_of_peak:.2f}%", f"{100 * v.fraction_of_roofline:.1f}%"]
                           for phase, v in (("forward", lines.forward), ("train", lines.train))])


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _exponents(fits: Exponents) -> str:
    text = f"time {_fmt(fits.time)}, saved memory {_fmt(fits.saved_memory)}"
    return text + (f", CUDA peak memory {_fmt(fits.cuda_peak_memory)}" if fits.cuda_peak_memory is not None else "")


def _scaling_table(block: list[ScalingRow]) -> str:
    on_gpu = block[0].cuda_peak_increase_mib_per_sample is not None
    header = ["lattice", "cells", "steps", "checkpointing", "ms/sample", "saved for backward MiB/sample"]
    header += ["CUDA peak allocated MiB/sample"] if on_gpu else []
    return markdown_table(header, [["x".join(map(str, r.lattice)), r.cells, r.steps,
                                    "on" if r.activation_checkpointing else "off",
                                    f"{r.ms_per_sample:.3f}", f"{r.saved_mib_per_sample:.3f}"]
                                   + ([f"{r.cuda_peak_increase_mib_per_sample:.3f}"] if on_gpu else []) for r in block])


def _drills_table(kinds: dict[str, Any]) -> str:
    rows = []
    for kind, (tried, passed) in RELIABILITY_KINDS.items():
        counts = kinds[kind]
        rows.append([tried, counts.tried, f"{counts.passed} {passed}", ", ".join(counts.failed) or "none",
                     len(counts.left_to_make_test)])
    return markdown_table(["drill", "tried", "passed", "failed", "left to `make test` (slow)"], rows)
