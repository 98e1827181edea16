"""The regression gate: this run against the committed baseline of the run it replaces, judged by ``harness.stats.paired``.

- **quality**: each stage's test cosine, recall@1 and MRR over every seed (the pipeline's and
  ``quality.extra_seeds``), pair by pair and seed by seed against the baseline's per-pair scores of the same seeds.
  A verdict is about the training recipe, not one trajectory: the interval (``harness.stats.paired``) spans the spread
  over test pairs and over the seeds' runs, at a confidence corrected for the number of quality checks (Bonferroni,
  5% for the whole family), so a change at the level of float noise passes. A regression is a run significantly
  worse by more than ``gate.noise_floor``; a mean fall of the metric's tolerance or more that the interval cannot
  tell from noise is reported as inconclusive with the fall named, not failed;
- **exact**: figures no machine's load can move (parameters, analytic FLOPs, split sizes, the FLOPs torch counts the
  cube executing, the bytes it keeps for backward) must match, unless the params differ from the baseline's;
- **speed**: this revision's cube against the baseline revision's cube, both timed on this machine in alternation
  (``harness/measure/revision_speed.py``), as a ratio with its interval against ``1 - gate.revision_speed_drop``:
  regressed, fine or inconclusive. A regression stands only when a second measurement agrees; an undecided ratio is
  timed up to ``gate.speed_remeasure`` more times. Where the baseline's revision is not in the repository (a shallow
  clone) the speed is not judged, and the gate says so. The cube against its independent peers (conv3d and eager
  references) is a property of the hardware as much as of the code: those ratios are gated, against the baseline's
  less ``gate.speed_ratio_drop`` and confirmed by a second process, only when the baseline was made on the same
  machine (CPU model, flags, threads, numerics); elsewhere they are report figures;
- **memory**: each phase's peak of live tensor bytes (an exact count, the same in every identical run) and, on a
  GPU, torch's allocator peak may grow by ``gate.memory_increase`` plus ``gate.memory_slack_mib`` at most. The host
  process's resident peak moves by tens of percent between identical runs, so it is reported, never gated;
- **reliability**: every drill the reliability stage ran passed.

A non-finite figure is always a regression. Baselines are kept per named profile (``default``, ``tiny``); a run
whose params differ from its profile's is still judged, with the differing params listed beside the table. A stale
baseline (recorded under a params schema that lacks keys this one has, under other numerics, or without the revision
and machine it was made on) is named loudly above the table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cube.config import to_plain
from harness import paths
from harness.config import GateConfig, Params
from harness.measure import peer_probe
from harness.measure.peer_ratios import INDEPENDENT_PEERS
from harness.measure.phases import PHASES
from harness.measure.retime import measure_revision
from harness.stats import paired
from harness.store.baselines import GateError, check_profile_name, read_baselines, write_baselines
from harness.store.results import (
    Bench,
    Evaluation,
    GateBaselines,
    GatedFigure,
    Machine,
    Reliability,
    RunSnapshot,
    SchemaError,
    SeedRun,
    cube_model,
    peer_of,
    read_result,
    read_seed_runs,
)

FAMILY_ERROR = 0.05  # chance that an unchanged recipe fails any quality check, split evenly over the checks
GATED_MEMORY = ("tensor_peak_mib", "cuda_max_allocated_mib")  # exact or allocator counts, not the host's resident peak
SPLIT_SECTIONS = ("seed", "data", "teacher")  # equal in both runs: the same test pairs, comparable pair by pair
UNGATED_SECTIONS = ("gate",)
OK, IMPROVED, CHANGED, INCONCLUSIVE, REGRESSION, MISSING, NEW, NOT_GATED, NOT_JUDGED = (
    "ok", "improved", "changed with params", "inconclusive", "REGRESSION", "missing", "new", "not gated here",
    "NOT JUDGED")
REVISION_SPEED = "speed.revision"  # + ".<phase>": this revision's cube speed over the baseline revision's
SAME_SPEED = paired.RatioEstimate(ratio=1.0, low=1.0, high=1.0, repeats=0)  # the baseline revision's, over itself


@dataclass(frozen=True)
class Check:
    metric: str
    kind: str  # quality | exact | speed | memory | reliability
    baseline: Any
    current: Any
    verdict: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict in (REGRESSION, MISSING)


# ---------------------------------------------------------------- what a run is gated on


def snapshot(evaluation: Evaluation, seed_runs: dict[str, SeedRun], bench: Bench,
             gated: tuple[str, ...]) -> RunSnapshot:
    """The gated figures of one run: per-kind metrics (quality as the mean over seeds, for each ``gated`` measure),
    and each stage's per-pair test scores under every seed."""
    seeds = sorted(seed_runs, key=int)
    models = evaluation.summary.models
    metrics: dict[str, GatedFigure] = {}
    for stage, scores in evaluation.stages.items():
        for measure in gated:
            metrics[f"{stage}.test.{measure}"] = GatedFigure(kind="quality",
                                                            value=models[cube_model(stage)].test[measure].mean)
        metrics[f"{stage}.parameters"] = GatedFigure(kind="exact", value=scores.parameters)
    metrics["test_pairs"] = GatedFigure(kind="exact", value=evaluation.test_pairs)
    metrics["test_candidates"] = GatedFigure(kind="exact", value=evaluation.test_candidates)
    metrics["flops_per_sample_forward"] = GatedFigure(kind="exact", value=bench.flops_per_sample_forward)
    for name, value in bench.work_per_sample.model_dump().items():
        metrics[f"work.{name}"] = GatedFigure(kind="exact", value=value)
    for name, estimate in bench.peers.speed_ratios.items():
        if peer_of(name) in INDEPENDENT_PEERS:
            metrics[f"speed.{name}"] = GatedFigure(kind="speed", value=estimate)
    for row in bench.rows:
        for measured in GATED_MEMORY:
            if getattr(row, measured) is not None:
                metrics[f"memory.{row.phase}.batch{row.batch_size}.{measured}"] = GatedFigure(
                    kind="memory", value=getattr(row, measured))
    pairs = {stage: {measure: [seed_runs[seed].test_pairs[cube_model(stage)][measure] for seed in seeds]
                     for measure in gated} for stage in evaluation.stages}
    return RunSnapshot(metrics=metrics, seeds=[int(seed) for seed in seeds], pairs=pairs,
                       machine=bench.doctor.cpu.fingerprint())


def _finite(value: Any) -> bool:
    if isinstance(value, paired.RatioEstimate):
        return all(math.isfinite(v) for v in (value.ratio, value.low, value.high))
    return isinstance(value, (int, float)) and math.isfinite(value)


# ---------------------------------------------------------------- judgements


def judge_quality(metric: str, baseline: float, current: float, baseline_pairs: list[list[float]] | None,
                  current_pairs: list[list[float]] | None, gate: GateConfig, checks: int = 1) -> tuple[str, str]:
    """A stage's test measure over every seed against the baseline's; ``checks``: how many quality checks the
    gate makes, over which the family's error is split."""
    measure = metric.rsplit(".", 1)[-1]
    tolerance = gate.quality_drops[measure]
    drop = baseline - current
    comparable = (baseline_pairs is not None and current_pairs is not None
                  and [len(r) for r in baseline_pairs] == [len(r) for r in current_pairs])
    if not comparable:
        if drop >= tolerance - 1e-12:  # a fall of exactly the tolerance fails
            return REGRESSION, f"fell by {drop:.4f}, tolerance {tolerance:g} (other test pairs or seeds: means compared)"
        return (IMPROVED if current > baseline else OK), "other test pairs or seeds: means compared"
    confidence = 1.0 - FAMILY_ERROR / max(checks, 1)
    try:
        difference = paired.paired_difference(current_pairs, baseline_pairs, measure, confidence=confidence)
    except paired.NonFiniteScores as err:
        return REGRESSION, str(err)
    detail = (f"{difference.mean:+.4f} {difference.interval()} ({confidence:.2%}, {difference.seeds} seed(s) x "
              f"{difference.pairs} pairs)")
    if difference.verdict == paired.WORSE and drop > gate.noise_floor:
        return REGRESSION, "significantly worse: " + detail
    if drop >= tolerance - 1e-12:
        return INCONCLUSIVE, f"fell by {drop:.4f} (tolerance {tolerance:g}) but within the noise: {detail}"
    if difference.verdict == paired.BETTER and -drop > gate.noise_floor:
        return IMPROVED, detail
    return OK, detail


def judge_speed(baseline: paired.RatioEstimate, estimate: paired.RatioEstimate, gate: GateConfig) -> tuple[str, str]:
    return against_floor(estimate, baseline.ratio * (1.0 - gate.speed_ratio_drop))


def against_floor(estimate: paired.RatioEstimate, floor: float) -> tuple[str, str]:
    """A speed ratio's verdict against the lowest ratio allowed, with its interval for the table."""
    verdict = estimate.against(floor)
    detail = f"{estimate.ratio:.2f} [{estimate.low:.2f}, {estimate.high:.2f}] vs floor {floor:.2f}"
    return {paired.REGRESSED: REGRESSION, paired.FINE: OK}.get(verdict, INCONCLUSIVE), detail


def judge(metric: str, kind: str, baseline: Any, current: Any, gate: GateConfig, params_differ: bool,
          pairs: tuple[list[list[float]] | None, list[list[float]] | None], checks: int = 1) -> tuple[str, str]:
    if not _finite(current):
        return REGRESSION, "non-finite"
    if kind == "quality":
        return judge_quality(metric, baseline, current, *pairs, gate, checks)
    if kind == "exact":
        if current == baseline:
            return OK, ""
        return (CHANGED, "params differ") if params_differ else (REGRESSION, "must match exactly")
    if kind == "speed":
        return judge_speed(baseline, current, gate)
    limit = baseline * (1.0 + gate.memory_increase) + gate.memory_slack_mib
    return (REGRESSION if current > limit else OK), f"limit {limit:.1f}"


def compare(baseline: RunSnapshot, current: RunSnapshot, gate: GateConfig, params_differ: bool = False,
            same_split: bool = True) -> list[Check]:
    """Every baseline metric judged against this run's; metrics only this run has are listed as new. Per-pair scores
    are compared when both runs scored the same test split under the same seeds; peer speed ratios when both were
    measured on the same machine."""
    checks = []
    other_machine = machine_differences(baseline.machine, current.machine)
    same_seeds = baseline.seeds == current.seeds

    def ungated(metric: str, figure: GatedFigure) -> bool:  # a quality measure gate.quality_drops no longer lists
        return figure.kind == "quality" and metric.rsplit(".", 1)[-1] not in gate.quality_drops

    quality = sum(figure.kind == "quality" and not ungated(m, figure) for m, figure in baseline.metrics.items())
    for metric, recorded in baseline.metrics.items():
        now = current.metrics.get(metric)
        if ungated(metric, recorded):
            checks.append(Check(metric, recorded.kind, recorded.value, now and now.value, NOT_GATED,
                                "gate.quality_drops does not list this measure"))
            continue
        if now is None:
            checks.append(Check(metric, recorded.kind, recorded.value, None, MISSING))
            continue
        if recorded.kind == "speed" and other_machine:
            checks.append(Check(metric, recorded.kind, recorded.value, now.value, NOT_GATED,
                                f"a peer ratio depends on the hardware, and the baseline's was measured on another "
                                f"machine ({'; '.join(other_machine)}): a report figure here"))
            continue
        stage = metric.split(".", 1)[0]
        pairs = (None, None)
        if recorded.kind == "quality" and same_split and same_seeds:
            measure = metric.rsplit(".", 1)[-1]
            pairs = (baseline.pairs.get(stage, {}).get(measure), current.pairs.get(stage, {}).get(measure))
        verdict, detail = judge(metric, recorded.kind, recorded.value, now.value, gate, params_differ, pairs, quality)
        checks.append(Check(metric, recorded.kind, recorded.value, now.value, verdict, detail))
    checks += [Check(m, figure.kind, None, figure.value, NEW) for m, figure in current.metrics.items()
               if m not in baseline.metrics]
    return checks


def machine_differences(baseline: Machine | None, current: Machine | None) -> list[str]:
    """How the machine a baseline's speed figures came from differs from this run's (unknown counts as different)."""
    if baseline is None or current is None:
        return ["the baseline records no machine"]
    return baseline.differences(current)


def settle(verdicts: list[str]) -> str:
    """One speed verdict from several processes' measurements: regressed only when every one says so, fine when
    none does and one at least is fine, inconclusive otherwise."""
    if all(v == REGRESSION for v in verdicts):
        return REGRESSION
    if REGRESSION not in verdicts and OK in verdicts:
        return OK
    return INCONCLUSIVE


def confirm_speed(checks: list[Check], baseline: RunSnapshot, gate: GateConfig,
                  measure: Callable[[], dict[str, paired.RatioEstimate]] | None) -> list[Check]:
    """Time the peers again in this process: a speed ratio varies more between processes than within one, so a
    verdict stands only when a second process agrees. Still undecided ones are timed up to ``gate.speed_remeasure``
    more times."""
    speed = {c.metric: [c.verdict] for c in checks
             if c.kind == "speed" and c.verdict in (OK, REGRESSION, INCONCLUSIVE) and _finite(c.current)}
    if measure is None or not speed:
        return checks
    latest: dict[str, Check] = {}
    for attempt in range(gate.speed_remeasure + 1):
        pending = [m for m, seen in speed.items() if attempt == 0 or settle(seen) == INCONCLUSIVE]
        if not pending:
            break
        ratios = measure()
        for metric in pending:
            value = ratios[metric.removeprefix("speed.")]
            recorded = baseline.metrics[metric].value
            verdict, detail = judge_speed(recorded, value, gate)
            speed[metric].append(verdict)
            latest[metric] = Check(metric, "speed", recorded, value, settle(speed[metric]),
                                   f"{detail}; verdicts of {len(speed[metric])} processes: {', '.join(speed[metric])}")
    return [latest.get(c.metric, c) for c in checks]


def revision_checks(baseline: RunSnapshot, gate: GateConfig,
                    measure: Callable[[str], dict[str, paired.RatioEstimate]]) -> tuple[list[Check], list[str]]:
    """This revision's cube against the baseline revision's, timed here (``measure(revision)``: per phase, this one's
    speed over the baseline's). A regression stands when a second measurement agrees; an undecided ratio is timed up
    to ``gate.speed_remeasure`` more times. Where the baseline's code cannot be had, the checks say so (not judged)
    and a warning says why."""
    metrics = [f"{REVISION_SPEED}.{phase}" for phase in PHASES]
    if baseline.revision is None:
        why = ("the baseline records no revision (recorded by an older gate, or from uncommitted cube/ code), so its "
               "code cannot be timed here; re-record it with `make baseline` after committing cube/")
        return [Check(m, "speed", None, None, NOT_JUDGED, "no baseline revision") for m in metrics], [why]
    seen: dict[str, list[str]] = {m: [] for m in metrics}
    latest: dict[str, Check] = {}
    for attempt in range(gate.speed_remeasure + 1):
        pending = [m for m, verdicts in seen.items()
                   if attempt == 0 or verdicts == [REGRESSION] or settle(verdicts) == INCONCLUSIVE]
        if not pending:
            break
        try:
            ratios = measure(baseline.revision)
        except (RuntimeError, OSError) as error:  # the revision is not here (a shallow clone), its cube would not run
            why = f"this revision's cube speed is not judged: {error}"
            if latest:
                return [latest[m] for m in metrics], [why]
            return [Check(m, "speed", None, None, NOT_JUDGED, str(error)[:300]) for m in metrics], [why]
        for metric in pending:
            value = ratios[metric.rsplit(".", 1)[-1]]
            verdict, detail = against_floor(value, 1.0 - gate.revision_speed_drop)
            seen[metric].append(verdict)
            latest[metric] = Check(metric, "speed", SAME_SPEED, value, settle(seen[metric]),
                                   f"this revision's cube speed over {baseline.revision[:12]}'s, both timed here: "
                                   f"{detail}; verdicts of {len(seen[metric])} measurement(s): "
                                   f"{', '.join(seen[metric])}")
    return [latest[m] for m in metrics], []


def staleness(baseline: RunSnapshot, current: RunSnapshot) -> list[str]:
    """Why a baseline no longer describes runs of this code: a params schema without keys this one has (the split
    then counts as different, and quality falls back to means), other numerics, no revision or machine recorded."""
    old = _flatten({k: v for k, v in baseline.params.items() if k not in UNGATED_SECTIONS})
    new = _flatten({k: v for k, v in current.params.items() if k not in UNGATED_SECTIONS})
    found = []
    absent = sorted(key for key in new if key not in old)
    if absent:
        found.append(f"the baseline was recorded under a params schema without {', '.join(absent)}: settings it "
                     "cannot have compared, so its split and figures may not be this code's")
    if old.get("numerics") != new.get("numerics"):
        found.append(f"the baseline was recorded under numerics {old.get('numerics', '(unpinned: native)')}, this run "
                     f"under {new.get('numerics')}: its figures differ in the last bits from this run's")
    if baseline.machine is None:
        found.append("the baseline records no machine fingerprint, so its peer speed ratios are not gated")
    return found + (["re-record it (`make baseline`, then commit reports/baseline.json)"] if found else [])


def reliability_checks() -> list[Check]:
    """Every drill the reliability stage ran must have passed: an absolute rule, not one against the baseline."""
    if not paths.RELIABILITY_METRICS.exists():
        return []
    drills = _read(paths.RELIABILITY_METRICS, Reliability)
    if not drills.run:
        return []
    return [Check(f"reliability.{kind}.failed", "reliability", 0, len(counts.failed),
                  OK if not counts.failed else REGRESSION)
            for kind, counts in (("bad_input", drills.bad_input), ("fault", drills.fault))]


def pooled(first: paired.RatioEstimate, second: paired.RatioEstimate) -> paired.RatioEstimate:
    """Two processes' estimates of one speed ratio as one: the geometric mean, an interval covering both."""
    return paired.RatioEstimate(ratio=math.sqrt(first.ratio * second.ratio), low=min(first.low, second.low),
                                high=max(first.high, second.high), repeats=first.repeats + second.repeats)


# ---------------------------------------------------------------- params


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat |= _flatten(inner, f"{prefix}{key}.")
        return flat
    return {prefix.rstrip("."): value}


def params_differences(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: baseline -> current`` for every gated setting that differs (the gate's own section left out)."""
    old = _flatten({k: v for k, v in baseline.items() if k not in UNGATED_SECTIONS})
    new = _flatten({k: v for k, v in current.items() if k not in UNGATED_SECTIONS})
    return [f"{key}: {old.get(key, '(absent)')} -> {new.get(key, '(absent)')}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def _read(path: Path, kind: type, what: str = "run `dvc repro` first") -> Any:
    """A result the gate reads, typed; a missing or malformed one is a GateError saying what to do."""
    try:
        return read_result(path, kind)
    except FileNotFoundError:
        raise GateError(f"{path} is missing: {what}") from None
    except (SchemaError, json.JSONDecodeError) as error:
        raise GateError(f"{path} cannot be read ({error}); restore it from git or rerun the stage that writes it "
                        "(dvc repro)") from None


def current_snapshot(params: Params) -> RunSnapshot:
    evaluation = _read(paths.EVALUATE_METRICS, Evaluation, "run `dvc repro` (the evaluate stage) first")
    bench = _read(paths.BENCH_METRICS, Bench, "run `dvc repro` (the bench stage) first")
    try:
        seed_runs = read_seed_runs(paths.EVALUATE_SEEDS)
    except FileNotFoundError:
        raise GateError(f"{paths.EVALUATE_SEEDS} is missing: run `dvc repro` (the evaluate stage) first") from None
    except (SchemaError, json.JSONDecodeError) as error:
        raise GateError(f"{paths.EVALUATE_SEEDS} cannot be read ({str(error)[:500]}); rerun `dvc repro`") from None
    try:
        return snapshot(evaluation, seed_runs, bench, tuple(params.gate.quality_drops))
    except KeyError as missing:
        raise GateError(f"{paths.METRICS}/ lacks {missing} (written by an older version of the pipeline?); run "
                        "`dvc repro` first") from None


@dataclass(frozen=True)
class GateVerdict:
    """What the gate found: its checks against the profile's baseline (None when it had none yet), and the number of
    metrics recorded when this run became the baseline."""

    profile: str
    baseline_path: Path
    checks: list[Check] | None
    params_differences: list[str]
    seeds: int
    recorded: int | None = None
    warnings: tuple[str, ...] = ()  # a stale baseline, a speed not judged, a baseline recorded without its revision

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks or [] if c.failed]

    @property
    def passed(self) -> bool:
        return self.recorded is not None or not self.failed


def run_gate(params: Params, baseline_path: Path | None = None, profile: str = "default", update: bool = False,
             remeasure: bool = True, code_repo: Path | None = None, revision: str | None = None) -> GateVerdict:
    """This run against the profile's baseline; with ``update`` it then becomes that baseline (and passes).

    ``code_repo``: the git repository the baseline's revision is looked up in (default: this one); ``revision``: the
    commit whose ``cube/`` made this run, recorded with ``update`` (default: this repository's HEAD, when its cube/ has
    no uncommitted change)."""
    from harness.measure.revision_speed import head_revision

    baseline_path = baseline_path or Path(params.gate.baseline)
    code_repo = code_repo or Path.cwd()
    stored = read_baselines(baseline_path)
    recorded = stored.profiles.get(profile)
    if recorded is None:
        check_profile_name(profile, baseline_path, list(stored.profiles), update)
    current = current_snapshot(params).model_copy(update={"params": params.to_dict()})
    checks, differences, warnings = None, [], []
    if recorded is not None:
        warnings += staleness(recorded, current)
        differences = params_differences(recorded.params, current.params)
        same_split = all(recorded.params.get(s) == current.params.get(s) for s in SPLIT_SECTIONS)
        checks = compare(recorded, current, params.gate, bool(differences), same_split)
        if remeasure:
            checks = confirm_speed(checks, recorded, params.gate, lambda: peer_probe.measure(params))
            settings = recorded.params.get("cube") or to_plain(params.cube)  # the baseline's cube, timed both ways
            dim = _read(paths.BENCH_METRICS, Bench).dim
            code_checks, why = revision_checks(
                recorded, params.gate, lambda rev: measure_revision(params, settings, dim, code_repo, rev))
            checks += code_checks
            warnings += why
        else:
            checks += [Check(f"{REVISION_SPEED}.{phase}", "speed", None, None, NOT_JUDGED, "timing skipped")
                       for phase in PHASES]
        checks += reliability_checks()
    written = None
    if update:
        revision = revision or head_revision(Path.cwd())
        if revision is None:
            warnings.append("cube/ has uncommitted changes (or this is not a git checkout): the baseline records no "
                            "revision, so later gates cannot time its code; commit cube/ and record it again")
        if remeasure:  # a baseline ratio from two processes, not one process's luck
            again = peer_probe.measure(params)
            current = current.model_copy(update={"metrics": {
                metric: figure if figure.kind != "speed" else
                GatedFigure(kind="speed", value=pooled(figure.value, again[metric.removeprefix("speed.")]))
                for metric, figure in current.metrics.items()}})
        current = current.model_copy(update={"revision": revision})
        stored = GateBaselines(profiles=stored.profiles | {profile: current})
        # per-pair scores of every seed: one line per profile's pairs, the rest indented for reading in a diff
        write_baselines(baseline_path, stored)
        written = len(current.metrics)
    return GateVerdict(profile, baseline_path, checks, differences, len(current.seeds), written, tuple(warnings))
