"""The harness's sections of params.yaml (bench, gate, quality, reliability) and the whole file's loader.

The model library's sections live in ``cube.config``; ``Params`` is those plus these, loaded by the same strict
loader (unknown keys named with the nearest valid one, every value checked against its type and range).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cube.config import (
    ConfigError,
    ModelParams,
    build_strict,
    check_model_params,
    fraction,
    non_negative,
    positive,
    read_params_file,
    value_range,
)


@dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = field(default=(1, 8, 64, 256), metadata=positive())
    warmup: int = field(default=3, metadata=non_negative())
    repeats: int = field(default=5, metadata=positive())
    peer_batch_size: int = field(default=64, metadata=positive())
    peer_repeats: int = field(default=21, metadata=value_range(3, None))  # interleaved repeats behind each ratio's interval
    compiled_peer: bool = True  # the eager reference under torch.compile as a peer too (its compile time apart)
    lattice_sides: tuple[int, ...] = field(default=(4, 8, 12, 16, 24), metadata=positive())
    steps_sweep: tuple[int, ...] = field(default=(1, 5, 10, 20, 40), metadata=positive())
    scaling_batch_size: int = field(default=8, metadata=positive())
    scaling_repeats: int = field(default=3, metadata=positive())


@dataclass(frozen=True)
class GateConfig:
    """Tolerances of ``python -m harness gate``: how far a metric may fall below the baseline before it fails."""

    baseline: str = "reports/baseline.json"
    cosine_drop: float = field(default=0.01, metadata=non_negative())  # absolute, test cosine per stage
    recall_drop: float = field(default=0.03, metadata=non_negative())  # absolute, test recall@1 per stage
    mrr_drop: float = field(default=0.02, metadata=non_negative())  # absolute, test MRR per stage
    speed_ratio_drop: float = field(default=0.4, metadata=fraction())  # relative, own-vs-peer speed ratios
    speed_remeasure: int = field(default=2, metadata=non_negative())  # re-timings of an inconclusive speed ratio
    noise_floor: float = field(default=0.001, metadata=non_negative())  # smaller significant falls: float noise
    memory_increase: float = field(default=0.25, metadata=non_negative())  # relative, measured peaks per phase
    memory_slack_mib: float = field(default=8.0, metadata=non_negative())  # absolute, on top: allocator noise


@dataclass(frozen=True)
class QualityConfig:
    """Repeats behind the quality table's mean ± std: the `seeds` stage trains the four stages again, from scratch,
    under each extra seed (initialisation and batch order change; the data split too with ``resplit``)."""

    extra_seeds: tuple[int, ...] = field(default=(1, 2), metadata=non_negative() | {"may_be_empty": True})
    resplit: bool = False  # true: each extra seed also re-draws the train/val/test split, so the ± includes it


@dataclass(frozen=True)
class ReliabilityConfig:
    """The `reliability` stage: the bad-input table and fault drills (tests marked bad_input / fault), run now."""

    run: bool = True
    include_slow: bool = False  # also the drills that run whole nested pipelines (minutes); `make test` runs them


@dataclass(frozen=True)
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
    return params


def _check_seeds(params: Params, source: str) -> None:
    extra = params.quality.extra_seeds
    repeated = sorted({s for s in extra if extra.count(s) > 1 or s == params.seed})
    if repeated:
        raise ConfigError(
            f"{source}: quality.extra_seeds = {list(extra)} repeats seed(s) {repeated} (seed is {params.seed}); "
            "each run must have its own seed, so list distinct seeds other than `seed`"
        )

