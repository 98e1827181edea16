"""The harness's sections of params.yaml (bench, gate, quality, reliability) and the whole file's loader.

The model library's sections live in ``cube.config``; ``Params`` is those plus these, declared and loaded the same
way (pydantic against the field types; unknown keys named with the nearest valid one, every value checked against its
type and range).
"""

from __future__ import annotations

import difflib
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

from annotated_types import MinLen
from pydantic import StrictBool, StrictInt, StrictStr

from cube import measures, numerics
from cube.config import (
    ConfigError,
    Fraction,
    ModelParams,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    build_strict,
    check_model_params,
    ranged,
    read_params_file,
    section,
)

Sizes = Annotated[tuple[PositiveInt, ...], MinLen(1)]


@section
class BenchConfig:
    batch_sizes: Sizes = (1, 8, 64, 256, 1024, 4096)
    warmup: NonNegativeInt = 3
    repeats: PositiveInt = 5
    peer_batch_size: PositiveInt = 64
    peer_repeats: ranged(StrictInt, 3) = 21  # interleaved repeats behind each ratio's interval
    compiled_peer: StrictBool = True  # the eager reference under torch.compile as a peer too (its compile time apart)
    peer_sweep: StrictBool = True  # the independent peers timed beside the cube at every batch of batch_sizes
    lattice_sides: Sizes = (4, 8, 12, 16, 24)
    steps_sweep: Sizes = (1, 5, 10, 20, 40)
    scaling_batch_size: PositiveInt = 8
    scaling_repeats: PositiveInt = 3
    numerics_batch_sizes: Sizes = (64, 256)  # the cube under portable and native numerics, timed in alternation
    numerics_rounds: ranged(StrictInt, 3) = 10  # alternations behind each portable/native ratio's interval


@section
class GateConfig:
    """Tolerances of ``python -m harness gate``: how far a metric may fall below the baseline before it fails."""

    baseline: StrictStr = "reports/baseline.json"
    # the gated quality measures (per-pair ones, cube/measures.py PER_PAIR) and the absolute fall each stage's test
    # figure may show in each
    quality_drops: dict[StrictStr, NonNegativeFloat] = field(
        default_factory=lambda: {"cosine": 0.01, "recall@1": 0.03, "mrr": 0.02})
    speed_ratio_drop: Fraction = 0.4  # relative, own-vs-peer speed ratios
    speed_remeasure: NonNegativeInt = 2  # re-timings of an inconclusive speed ratio
    revision_speed_drop: Fraction = 0.3  # relative fall allowed in this revision's cube speed against the baseline's
    revision_rounds: ranged(StrictInt, 3) = 12  # alternations of the two revisions' cubes behind each ratio
    noise_floor: NonNegativeFloat = 0.001  # smaller significant falls: float noise
    memory_increase: NonNegativeFloat = 0.25  # relative, measured peaks per phase
    memory_slack_mib: NonNegativeFloat = 8.0  # absolute, on top: allocator noise


@section
class QualityConfig:
    """Repeats behind the quality table's mean ± std: the `seeds` stage trains the four stages again, from scratch,
    under each extra seed (initialisation and batch order change; the data split too with ``resplit``)."""

    extra_seeds: tuple[NonNegativeInt, ...] = (1, 2, 3, 4)  # may be empty: the pipeline's own seed only
    resplit: StrictBool = False  # true: each extra seed also re-draws the train/val/test split, so the ± includes it


@section
class ReliabilityConfig:
    """The `reliability` stage: the bad-input table and fault drills (tests marked bad_input / fault), run now."""

    run: StrictBool = True
    include_slow: StrictBool = False  # also the drills that run whole nested pipelines (minutes); `make test` runs them


@section
class Params(ModelParams):
    """Every section of params.yaml."""

    bench: BenchConfig = BenchConfig()
    gate: GateConfig = GateConfig()
    quality: QualityConfig = QualityConfig()
    reliability: ReliabilityConfig = ReliabilityConfig()


def load_params(path: str | Path) -> Params:
    """Read and validate a params file; every problem is a ConfigError naming the file."""
    return params_from_dict(read_params_file(path, Params), source=str(path))


def params_from_dict(raw: Any, source: str = "params") -> Params:
    params = build_strict(Params, raw, source)
    check_model_params(params, source)
    _check_seeds(params, source)
    _check_gated_measures(params, source)
    return params


def _check_gated_measures(params: Params, source: str) -> None:
    for measure in params.gate.quality_drops:
        if measure not in measures.PER_PAIR:
            near = difflib.get_close_matches(measure, measures.PER_PAIR, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise ConfigError(f"{source}: gate.quality_drops names {measure!r}, which is not a per-pair measure; {hint}"
                              f"the gate compares pair by pair, so list one of {list(measures.PER_PAIR)} "
                              "(cube/measures.py PER_PAIR) or add it there (docs/layout.md)")


def _check_seeds(params: Params, source: str) -> None:
    extra = params.quality.extra_seeds
    repeated = sorted({s for s in extra if extra.count(s) > 1 or s == params.seed})
    if repeated:
        raise ConfigError(
            f"{source}: quality.extra_seeds = {list(extra)} repeats seed(s) {repeated} (seed is {params.seed}); "
            "each run must have its own seed, so list distinct seeds other than `seed`"
        )


def numerics_of(params_path: Path) -> str:
    """The numerics a tool or probe runs under, read before torch loads: those of ``params_path`` where it exists (a
    tool may lay a profile over it, but no profile changes the numerics), else the default."""
    if not params_path.exists():
        return numerics.DEFAULT
    raw = read_params_file(params_path, Params)
    mode = raw.get("numerics", numerics.DEFAULT) if isinstance(raw, dict) else numerics.DEFAULT
    if mode not in numerics.MODES:
        raise ConfigError(f"{params_path}: numerics = {mode!r} is not allowed; allowed values: "
                          f"{', '.join(map(repr, numerics.MODES))}")
    return mode
