"""What each stage hands on, as typed results with a schema version: written by ``write_result`` and read by
``read_result``, the one place that turns them into JSON and back. Every file is checked against its schema on
the way out and on the way in, so a stage that drops or renames a figure fails where it writes, and the report
reads attributes, never dictionary keys.

The files keep the layout ``dvc exp show`` and the gate read: sorted keys, the measures as plain numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from cube import atomic
from cube.card import TeacherInfo
from harness.stats.paired import PairedDifference, RatioEstimate

SCHEMA_VERSION = 1
CUBE_PREFIX = "cube: "  # a cube stage's model name in an evaluation, beside the baselines' own names


def cube_model(stage: str) -> str:
    """The model name under which ``evaluate`` scores a cube stage."""
    return CUBE_PREFIX + stage


def ratio_key(phase: str, peer: str) -> str:
    """The key of a speed ratio (the cube's own implementation against a peer) in the bench's ``speed_ratios``."""
    return f"{phase}_own_vs_{peer}"


def peer_of(key: str) -> str:
    """The peer a speed ratio's key names (``ratio_key``'s inverse)."""
    return key.rsplit("_own_vs_", 1)[-1]
Number = int | float  # a figure as measured: kept int or float as written, so files round-trip unchanged


class SchemaError(ValueError):
    """A result file that does not match its schema: written by another version of the code, or damaged."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Result(Strict):
    """A stage's output file; ``schema_version`` says which layout it has."""

    schema_version: int = SCHEMA_VERSION


R = TypeVar("R", bound=Result)


# ---------------------------------------------------------------- data


class CardFacts(Strict):
    """Where the pairs came from and how they were split."""

    task: str
    source: str
    raw_pairs: int  # dialogue: turn pairs; word tasks: dictionary articles or synsets
    duplicates_dropped: int
    empty_dropped: int
    entries_dropped: dict[str, int]  # word tasks: every entry left out, by reason
    pairs: dict[str, int]
    question_groups: dict[str, int]
    distinct_answers: dict[str, int]
    autoencoder_sentences: int
    sentences: int
    dim: int


class DataCard(CardFacts):
    """``data/embedded/card.json``: the card, and which teachers embedded the pairs."""

    teachers: list[TeacherInfo]


class DataCardSummary(CardFacts):
    """``metrics/data_card.json``: the card with its teachers counted (their details stay in data/embedded/card.json,
    the figures DVC shows stay few)."""

    teachers: int


class TeacherRun(Strict):
    """One teacher's share of a datasets run: sentences it encoded and those the cache gave."""

    teacher: str
    encoded: int
    cache_hits: int
    cache_rebuilt: bool


class DatasetsRun(Strict):
    """``metrics/datasets_run.json``: how this datasets run got its embeddings. A fact of the run, not of the data, so
    no stage or report reads it (a figure must not depend on the cache's state)."""

    teachers: list[TeacherRun]


class ProfileRun(Strict):
    """``reports/<profile>/profile_run.json``: where a kept profile run came from and how long its pipeline took."""

    profile: str
    revision: str
    dvc_repro_wall_seconds: Number
    cpu_count: int


# ---------------------------------------------------------------- training


class TrainSummary(Result):
    """``metrics/train_<stage>.json``."""

    stage: str
    seed: int
    initialised_from: str
    epochs_run: int
    best_epoch: int
    monitor: str
    best_value: Number
    final_train_loss: Number | None
    val: dict[str, Number]  # the validation figures of the weights the stage kept
    no_change: bool  # no epoch beat the starting point: the stage kept the map it started from
    stopped_early: bool
    resumed_from_epoch: int | None
    wall_seconds: Number
    parameters: int
    device: str
    device_reason: str
    world_size: int


# ---------------------------------------------------------------- evaluation


class Scores(Strict):
    """One model's figures on one split."""

    cosine: Number
    recall_at_1: Number = Field(alias="recall@1")
    recall_at_5: Number = Field(alias="recall@5")
    recall_at_10: Number = Field(alias="recall@10")
    mrr: Number
    hubness: Number
    candidates: int
    csls_recall_at_1: Number | None = Field(None, alias="csls recall@1")  # where the task ranks by CSLS too
    csls_mrr: Number | None = Field(None, alias="csls mrr")

    def measure(self, name: str) -> Number:
        return self.model_dump(by_alias=True)[name]


class StageScores(Strict):
    val: Scores
    test: Scores
    parameters: int
    best_epoch: int
    no_change: bool


class BaselineScores(Strict):
    val: Scores
    test: Scores
    parameters: int
    tuning: str
    note: str = ""
    stages: dict[str, Any] = {}  # the trainable baselines' training summaries, by stage


class MeanStd(Strict):
    mean: Number
    std: Number


class ModelSummary(Strict):
    """Mean ± sample standard deviation over seeds, per split and measure."""

    group: str  # "stages" or "baselines"
    parameters: int
    val: dict[str, MeanStd]
    test: dict[str, MeanStd]
    tuning: str = ""
    no_change_in: list[str] = []


class SeedSummary(Strict):
    seeds: list[int]
    models: dict[str, ModelSummary]


class Target(Strict):
    required: dict[str, list[str]]
    missed: list[str]


class QualityHeadline(Strict):
    """``metrics/quality.json``: the few numbers an experiment is chosen and read by (``dvc exp show``, ``make
    compare``): the chosen stage's mean over seeds, validation first, and its paired differences with two rivals."""

    val_mrr: Number  # what the stage was chosen on
    test_mrr: Number
    test_recall_at_1: Number = Field(alias="test_recall@1")
    test_cosine: Number
    mrr_minus_identity: Number
    mrr_minus_linear: Number
    seeds: int


class Evaluation(Result):
    """``metrics/evaluate.json``: every stage and baseline on the test split, seed by seed summarised, and the chosen
    stage's paired comparisons with each baseline."""

    stages: dict[str, StageScores]
    baselines: dict[str, BaselineScores]
    test_pairs: int
    test_candidates: int
    resplit: bool
    summary: SeedSummary
    chosen_stage: str
    comparisons: dict[str, dict[str, PairedDifference]]
    target: Target


# ---------------------------------------------------------------- bench


class Latency(Strict):
    samples_per_s: Number
    samples_per_s_min: Number
    samples_per_s_max: Number
    latency_ms_mean: Number
    latency_ms_p50: Number
    latency_ms_p90: Number
    latency_ms_p99: Number


class BenchRow(Latency):
    phase: str
    batch_size: int
    nvml: str
    tensor_peak_mib: Number | None = None  # CPU runs: live tensor bytes at most, counted exactly
    host_peak_increase_mib: Number | None = None  # CPU runs: the process's resident peak (moves between runs)
    cuda_max_allocated_mib: Number | None = None  # CUDA runs
    cuda_max_reserved_mib: Number | None = None
    nvml_used_mib: Number | None = None
    nvml_total_mib: Number | None = None


OWN = "own"  # the cube's own implementation, in speed results beside its peers


class PeerRow(Latency):
    implementation: str
    phase: str
    batch_size: int


class Peers(Strict):
    batch_size: int
    repeats: int
    labels: dict[str, str] = {}  # the report's words for each implementation asked for (the cube's own: OWN)
    rows: list[PeerRow]
    speed_ratios: dict[str, RatioEstimate]
    compile_seconds: dict[str, Number] = {}
    unavailable: dict[str, str] = {}
    own_at_least_as_fast: bool


class WorkPerSample(Strict):
    counted_flops_forward: Number
    counted_flops_train: Number
    saved_bytes_train: Number


class RooflineLine(Strict):
    flops_per_sample: Number
    bytes_per_sample: Number
    arithmetic_intensity: Number
    achieved_flops: Number
    # files written before the cube had its CPU kernel name the peak peak_matmul_flops, always a square matmul's
    peak_flops: Number = Field(validation_alias=AliasChoices("peak_flops", "peak_matmul_flops"))
    peak_measured_by: str = "square float32 matmul"
    copy_bandwidth_bytes: Number
    roofline_bound_flops: Number
    bound_by: str
    fraction_of_peak: Number
    fraction_of_roofline: Number


class Roofline(Strict):
    batch_size: int
    forward: RooflineLine
    train: RooflineLine


class ScalingRow(Strict):
    lattice: list[int]
    side: int | None = None
    cells: int
    steps: int
    batch_size: int
    activation_checkpointing: bool
    ms_per_sample: Number
    saved_mib_per_sample: Number
    cuda_peak_increase_mib_per_sample: Number | None = None


class Exponents(Strict):
    """Fitted exponents of a sweep (y ~ x^exponent): None with fewer than two usable points."""

    time: Number | None
    saved_memory: Number | None
    cuda_peak_memory: Number | None = None  # on a GPU only


class ScalingBlock(Strict):
    rows: list[ScalingRow]
    exponent: Exponents


class Scaling(Strict):
    batch_size: int
    by_side: ScalingBlock
    by_steps: dict[str, ScalingBlock]  # "plain" and "checkpointed"


class SpeedVerdict(Strict):
    """A speed or memory target (``harness.judge.targets.SpeedTarget``) judged on one run's figures."""

    target: str
    device: str
    goal: str
    value: Number | None
    met: bool | None
    note: str = ""


class GpuFound(Strict):
    index: int
    name: str
    capability: str
    supported_by_build: bool
    problem: str | None = None


class NvmlDevice(Strict):
    index: int
    name: str
    memory_used_mib: Number
    memory_total_mib: Number


class NvmlFound(Strict):
    status: str
    driver: str | None = None
    devices: list[NvmlDevice] = []


class CpuFound(Strict):
    model: str
    logical_cpus: int
    torch_threads: int
    memory_total_gib: Number
    flags: list[str] = []  # the instruction-set flags that decide torch's code paths (cube/numerics.py)
    numerics: str = ""  # portable | native
    pins: dict[str, str] = {}
    torch_cpu_capability: str = ""

    def fingerprint(self) -> Machine:
        return Machine(cpu_model=self.model, cpu_flags=self.flags, threads=self.torch_threads,
                       numerics=self.numerics, torch_cpu_capability=self.torch_cpu_capability)


class Machine(Strict):
    """What a speed figure depends on besides the code: the CPU model, its flags, the threads and the numerics. Peer
    ratios are gated only against a baseline made on the same machine."""

    cpu_model: str
    cpu_flags: list[str]
    threads: int
    numerics: str
    torch_cpu_capability: str

    def differences(self, other: Machine) -> list[str]:
        return [f"{name}: {getattr(self, name)} -> {getattr(other, name)}" for name in type(self).model_fields
                if getattr(self, name) != getattr(other, name)]


class Doctor(Strict):
    """What ``python -m harness doctor`` found (``metrics/doctor.json``, and inside the bench result)."""

    torch: str
    build_cuda: str | None
    arch_list: list[str]
    gpus: list[GpuFound]
    nvml: NvmlFound
    cpu: CpuFound
    requested_device: str
    chosen_device: str
    reason: str


class SpeedHeadline(Strict):
    """``metrics/speed.json``: the cube's median samples per second at one batch size, for ``dvc exp show``."""

    batch_size: int
    forward_samples_per_s: Number
    train_samples_per_s: Number


class NumericsCost(Strict):
    """The cube under portable and native numerics, timed in alternation: portable's speed over native's."""

    measured: bool
    reason: str = ""  # why not measured
    rounds: int = 0
    in_force: str = ""  # the numerics of the bench's own figures
    portable_speed_over_native: dict[str, RatioEstimate] = {}  # "<phase>@<batch>" -> ratio (below 1: portable slower)


class Bench(Result):
    """``metrics/bench.json``: speed, memory, peers, roofline and scaling, all measured in one run."""

    device: str
    device_reason: str
    doctor: Doctor
    dim: int
    lattice: list[int]
    steps: int
    parameters: int
    flops_per_sample_forward: Number
    bytes_per_sample_forward: Number
    warmup: int
    repeats: int
    rows: list[BenchRow]
    peers: Peers
    peer_sweep: list[Peers] = []  # the independent peers beside the cube at every batch of the sweep
    second_process_speed_ratios: dict[str, RatioEstimate]  # the independent peers timed again by a fresh process
    work_per_sample: WorkPerSample
    roofline: Roofline
    scaling: Scaling
    peak_rss_mib: Number
    targets: list[SpeedVerdict]
    numerics_cost: NumericsCost | None = None


# ---------------------------------------------------------------- reliability


class DrillCounts(Strict):
    tried: int
    passed: int
    failed: list[str]
    skipped: int
    left_to_make_test: list[str]


class Reliability(Result):
    """``metrics/reliability.json``: the bad-input table and the fault drills, run against this code."""

    run: bool
    reason: str = ""  # why not run
    selection: str = ""
    pytest_exit_code: int | None = None
    seconds: Number | None = None
    bad_input: DrillCounts | None = None
    fault: DrillCounts | None = None


# ---------------------------------------------------------------- the per-seed scores behind evaluate.json


class SeedRun(Strict):
    """One seed's entry of ``metrics/evaluate_seeds.json``: its scores and every model's per-pair test scores."""

    stages: dict[str, StageScores]
    baselines: dict[str, BaselineScores]
    test_pairs: dict[str, dict[str, list[Number]]]  # model -> per-pair measure -> one score per test pair


SEED_RUNS = TypeAdapter(dict[str, SeedRun])


def read_seed_runs(path: Path) -> dict[str, SeedRun]:
    """``metrics/evaluate_seeds.json``, typed (a file of hundreds of thousands of numbers, without a schema version)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run the evaluate stage first (dvc repro)")
    return _validate(SEED_RUNS, json.loads(path.read_text(encoding="utf-8")), str(path))


# ---------------------------------------------------------------- the gate's baselines


class GatedFigure(Strict):
    """One figure the gate judges, and how: against the baseline's per-pair scores, exactly, as a speed ratio with
    its interval, or as a memory peak with its tolerance."""

    kind: Literal["quality", "exact", "speed", "memory"]
    value: RatioEstimate | Number


class RunSnapshot(Strict):
    """What the gate keeps of one run: its gated figures, its seeds, each stage's per-pair test scores under every
    seed, and the params it ran with."""

    metrics: dict[str, GatedFigure] = {}
    seeds: list[int] = []
    pairs: dict[str, dict[str, list[list[Number]]]] = {}  # stage -> measure -> one row of per-pair scores per seed
    params: dict[str, Any] = {}
    revision: str | None = None  # the commit whose cube/ made the run: the gate times its cube against this one's
    machine: Machine | None = None  # where its speed figures were measured: peer ratios gate only on the same


class GateBaselines(Strict):
    """``reports/baseline.json``: one snapshot per profile (``default``, ``tiny``)."""

    profiles: dict[str, RunSnapshot]


# ---------------------------------------------------------------- reading and writing


def as_result(kind: type[R], result: dict[str, Any], where: str) -> R:
    """``result`` checked against ``kind``'s schema, typed, at this code's schema version."""
    return _validate(kind, {"schema_version": SCHEMA_VERSION, **result}, where)


def write_result(path: Path, result: R | dict[str, Any], kind: type[R]) -> R:
    """Check ``result`` against ``kind``'s schema and write it atomically as JSON in the result's own order (stages in
    pipeline order, baselines in ``cube/rivals.py``'s), which reading keeps; returns the typed result."""
    if isinstance(result, dict):
        result = as_result(kind, result, f"{path} (being written)")
    # the fields given, no defaults added: a CPU run's rows keep no CUDA columns
    atomic.write_json(path, {"schema_version": result.schema_version}  # first, however the result was made
                      | result.model_dump(mode="json", by_alias=True, exclude_unset=True), sort_keys=False)
    return result


def read_result(path: Path, kind: type[R]) -> R:
    """A stage's output, typed; a missing file names the stage to run, a file of another layout says so."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run the stage that writes it first (dvc repro)")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if issubclass(kind, Result) and raw.get("schema_version") != SCHEMA_VERSION:
        raise SchemaError(f"{path} has schema version {raw.get('schema_version')!r}, this code reads "
                          f"{SCHEMA_VERSION}: run the stage that writes it again (dvc repro)")
    return _validate(kind, raw, str(path))


def read_card(path: Path) -> DataCard:
    """The data card the datasets stage writes beside the embeddings (``data/embedded/card.json``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: no embeddings yet; run the pipeline first (`make repro`, or "
                                "`dvc repro datasets` for this stage alone)")
    return _validate(DataCard, json.loads(path.read_text(encoding="utf-8")), str(path))


def _validate(kind: type[R] | TypeAdapter, raw: Any, where: str) -> Any:
    try:
        if isinstance(kind, TypeAdapter):
            return kind.validate_python(raw)
        return kind.model_validate(raw)
    except ValidationError as error:
        name = getattr(kind, "__name__", "per-seed scores")
        raise SchemaError(f"{where} does not match the {name} schema: {error}") from None
