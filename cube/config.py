"""Typed sections of ``params.yaml`` and their strict loader.

Every section is a frozen dataclass. Loading walks the YAML mapping against the
dataclass fields: an unknown key names the nearest valid key, a wrong type or an
out-of-range value names the key, the value and what is allowed. A missing key
takes the field's default; a misspelt one never does.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cube.digest import json_digest
from cube.stages import STAGE_NAMES


class ConfigError(ValueError):
    """A params file that cannot be used as it is; the message says where and how to fix it."""


def value_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict:
    """Field metadata for an allowed numeric range (``lo_open``: ``lo`` itself excluded)."""
    return {"range": (lo, hi, lo_open)}


def positive() -> dict:
    return value_range(0, None, lo_open=True)


def non_negative() -> dict:
    return value_range(0, None)


def fraction() -> dict:
    return value_range(0.0, 1.0)




@dataclass(frozen=True)
class DataConfig:
    # what is retrieved among what (cube/tasks.py): the next turn of a dialogue, a German or French word's English
    # translation, or the WordNet headword a definition defines
    task: Literal["dialogue", "translation", "reverse_dictionary"] = "dialogue"
    languages: Literal["deu-eng", "fra-eng"] = "deu-eng"  # translation: the FreeDict dictionary read
    corpus: Literal["chatterbot", "chitchat", "file"] = "chatterbot"  # dialogue: the conversations read
    path: str | None = None  # JSONL or CSV file when corpus is "file"
    language: str = "english"  # chatterbot-corpus language folder
    question_field: str = "question"
    answer_field: str = "answer"
    max_pairs: int = field(default=0, metadata=non_negative())  # 0: all pairs
    val_fraction: float = field(default=0.1, metadata=value_range(0.0, 0.5, lo_open=True))
    # up to 0.8: an evaluation-first split (the default run tests on 60%) still leaves 10% to train on
    test_fraction: float = field(default=0.1, metadata=value_range(0.0, 0.8, lo_open=True))
    cache_dir: str = "data/cache"


@dataclass(frozen=True)
class TeacherModelConfig:
    name: str = "all-MiniLM-L6-v2"  # an embedded model, a local folder, or a model id in the HF cache
    pooling: Literal["mean", "last_token", "cls"] = "mean"
    max_length: int = field(default=256, metadata=positive())
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"


@dataclass(frozen=True)
class TeacherConfig:
    models: tuple[TeacherModelConfig, ...] = (TeacherModelConfig(),)
    weighting: Literal["equal", "agreement"] = "equal"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    offline: bool = True  # never reach a model hub at run time


@dataclass(frozen=True)
class CubeConfig:
    lattice: tuple[int, int, int] = field(default=(8, 8, 6), metadata=positive())
    state_channels: int = field(default=8, metadata=positive())
    hidden: int = field(default=32, metadata=positive())
    steps: int = field(default=10, metadata=positive())
    boundary: Literal["walls", "periodic"] = "walls"
    adapter: Literal["none", "linear"] = "none"
    residual: bool = True
    position_code: bool = True  # a learned per-cell code added to the initial state
    activation_checkpointing: bool = False


@dataclass(frozen=True)
class StageConfig:
    epochs: int = field(default=20, metadata=positive())
    batch_size: int = field(default=64, metadata=positive())
    lr: float = field(default=3e-3, metadata=non_negative())  # 0 freezes the stage: it keeps its starting map
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = field(default=0.0, metadata=non_negative())
    grad_clip: float = field(default=0.0, metadata=non_negative())  # 0: off
    scheduler: Literal["none", "plateau"] = "none"
    plateau_factor: float = field(default=0.5, metadata=value_range(0.0, 1.0, lo_open=True))
    plateau_patience: int = field(default=2, metadata=non_negative())
    early_stopping_patience: int = field(default=0, metadata=non_negative())  # 0: off
    monitor: Literal["mrr", "cosine"] = "cosine"  # validation metric for plateau, early stopping, best epoch
    # loss mix
    cosine_weight: float = field(default=1.0, metadata=non_negative())
    mse_weight: float = field(default=0.0, metadata=non_negative())
    infonce_weight: float = field(default=0.0, metadata=non_negative())
    infonce_temperature: float = field(default=0.05, metadata=positive())
    triplet_weight: float = field(default=0.0, metadata=non_negative())
    triplet_margin: float = field(default=0.2, metadata=non_negative())
    diversity_weight: float = field(default=0.0, metadata=non_negative())
    # curriculum: easy pairs first, by teacher difficulty 1 - cos(q, a)
    curriculum: bool = False
    curriculum_start: float = field(default=0.3, metadata=value_range(0.0, 1.0, lo_open=True))
    curriculum_epochs: int = field(default=5, metadata=positive())
    # denoising (autoencoder stage)
    noise_std: float = field(default=0.0, metadata=non_negative())
    input_dropout: float = field(default=0.0, metadata=value_range(0.0, 1.0))
    # training pairs whose teacher cos(q, a) is below this are left out (None: keep all)
    semantic_similarity_threshold: float | None = field(default=None, metadata=value_range(-1.0, 1.0))
    autocast: Literal["none", "bf16", "fp16"] = "none"


@dataclass(frozen=True)
class DistributedConfig:
    """Data-parallel training with torchrun + DistributedDataParallel (``train.distributed``).

    World size = nproc_per_node * nnodes; 1 trains in this process as before. Each stage's
    ``batch_size`` is the global batch, split evenly over the processes.
    """

    nproc_per_node: int = field(default=1, metadata=positive())  # processes on each node (one per GPU)
    nnodes: int = field(default=1, metadata=positive())
    node_rank: int = field(default=0, metadata=non_negative())  # this node's index, 0 .. nnodes-1
    master_addr: str = "127.0.0.1"  # node 0's address, reachable from every node
    master_port: int = field(default=29500, metadata=value_range(0, 65535))  # 0: a free port (single node only)
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo on the CPU

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


@dataclass(frozen=True)
class TrainConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = True
    distributed: DistributedConfig = DistributedConfig()
    autoencoder: StageConfig = StageConfig(epochs=10, noise_std=0.01, input_dropout=0.1)
    dialogue: StageConfig = StageConfig()
    optimized: StageConfig = StageConfig(
        optimizer="adamw", weight_decay=0.01, grad_clip=1.0, scheduler="plateau",
        early_stopping_patience=4, mse_weight=0.5,
    )
    advanced: StageConfig = StageConfig(
        optimizer="adamw", weight_decay=0.01, grad_clip=1.0, scheduler="plateau",
        early_stopping_patience=4, infonce_weight=1.0, infonce_temperature=0.1,
        diversity_weight=0.05, monitor="mrr",
    )


@dataclass(frozen=True)
class TunedStage:
    """A trainable baseline's advanced-stage values and whether it goes through the cube's earlier dialogue stages
    first, chosen on validation like the cube's (``baselines.*``); every other setting is the cube's own
    ``train.<stage>``."""

    lr: float = field(default=1e-3, metadata=positive())
    weight_decay: float = field(default=0.01, metadata=non_negative())
    infonce_temperature: float = field(default=0.1, metadata=positive())
    chain: bool = True  # true: dialogue -> optimized -> advanced, as the cube; false: the advanced stage alone


@dataclass(frozen=True)
class MLPBaselineConfig(TunedStage):
    hidden: int = field(default=512, metadata=positive())


@dataclass(frozen=True)
class BaselinesConfig:
    """The trainable baselines: trained from the identity map with the cube's stage settings (loss mix, optimizer,
    clipping, schedule, early stopping, epoch-0 fallback and monitor), with these tuned values."""

    mlp: MLPBaselineConfig = MLPBaselineConfig()
    linear: TunedStage = TunedStage(chain=False)


@dataclass(frozen=True)
class ModelParams:
    """The sections the model library reads: data, teachers, the cube, its training and the trainable baselines.
    The harness adds its own sections (bench, gate, quality, reliability) in ``harness.config.Params``."""

    seed: int = field(default=0, metadata=non_negative())
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    cube: CubeConfig = CubeConfig()
    train: TrainConfig = TrainConfig()
    baselines: BaselinesConfig = BaselinesConfig()

    def stage(self, name: str) -> StageConfig:
        if name not in STAGE_NAMES:
            raise ConfigError(f"unknown stage {name!r}; stages are {', '.join(STAGE_NAMES)}")
        return getattr(self.train, name)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def params_hash(self) -> str:
        """sha256 of the JSON of every parameter: a report's provenance key."""
        return json_digest(self.to_dict())


def to_plain(obj: Any) -> Any:
    """Dataclasses and tuples as plain dicts and lists (for JSON, YAML and hashing)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------- strict loading


def read_params_file(path: str | Path, cls: type) -> Any:
    """A params file's YAML as plain data; a missing, unreadable or empty file is a ConfigError naming it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found; create it or pass the right path")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; it needs at least the sections {_field_names(cls)}")
    return raw


def build_strict(cls: type, raw: Any, source: str) -> Any:
    """``cls`` (a dataclass of dataclasses) from plain data: unknown keys named with the nearest valid one, every
    value checked against its type and range."""
    return _build(cls, raw, source, "")


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _build(cls: type, raw: Any, source: str, where: str) -> Any:
    label = where or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {label} must be a mapping of keys to values, got {type(raw).__name__} {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.4)
            hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{source}: unknown key {key!r} in {label}{hint}")
    values = {}
    for name, value in raw.items():
        key_path = f"{where}.{name}" if where else name
        values[name] = _convert(hints[name], value, source, key_path, fields[name].metadata)
    return cls(**values)


def _convert(tp: Any, value: Any, source: str, key: str, meta: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, source, key, meta)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key)
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            near = difflib.get_close_matches(str(value), [str(a) for a in args], n=1, cutoff=0.4)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{source}: {key} = {value!r} is not allowed{hint}; choose one of {allowed}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            if not value and not (meta and meta.get("may_be_empty")):
                raise ConfigError(f"{source}: {key} must not be empty")
            return tuple(_convert(args[0], v, source, f"{key}[{i}]", meta) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{source}: {key} must have {len(args)} entries, got {len(value)}: {value!r}")
        return tuple(_convert(a, v, source, f"{key}[{i}]", meta) for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be a whole number, got {type(value).__name__} {value!r}")
        _checkvalue_range(value, source, key, meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key} must be a number, got {type(value).__name__} {value!r}")
        _checkvalue_range(float(value), source, key, meta)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be text, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"config type {tp!r} for {key} is not supported by the loader")  # a bug in this module


def _checkvalue_range(value: float, source: str, key: str, meta: Any) -> None:
    lo, hi, lo_open = meta.get("range", (None, None, False)) if meta else (None, None, False)
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and value > hi
    if too_low or too_high:
        left = "(" if lo_open else "["
        allowed = f"{left}{'-inf' if lo is None else lo}, " + ("inf)" if hi is None else f"{hi}]")
        raise ConfigError(f"{source}: {key} = {value!r} is out of range; allowed range is {allowed}")


def check_model_params(params: ModelParams, source: str) -> None:
    """What no single value can say wrong: combinations of data, distributed and loss settings."""
    d = params.data
    if d.corpus == "file" and not d.path:
        raise ConfigError(f"{source}: data.corpus is 'file' but data.path is empty; set data.path to a JSONL or CSV file")
    if d.corpus != "file" and d.path:
        raise ConfigError(f"{source}: data.path is set but data.corpus is {d.corpus!r}; set data.corpus: file to use it")
    if d.task != "dialogue" and d.corpus == "file":
        raise ConfigError(f"{source}: data.corpus 'file' is a dialogue corpus but data.task is {d.task!r}; set "
                          "data.task: dialogue to read data.path, or data.corpus: chitchat")
    if d.val_fraction + d.test_fraction >= 0.9:
        raise ConfigError(
            f"{source}: data.val_fraction + data.test_fraction = {d.val_fraction + d.test_fraction:.2f} "
            "leaves under 10% for training; lower them"
        )
    _check_distributed(params, source)
    for name in STAGE_NAMES:
        s = params.stage(name)
        loss_total = s.cosine_weight + s.mse_weight + s.infonce_weight + s.triplet_weight
        if loss_total <= 0:
            raise ConfigError(
                f"{source}: train.{name} has every loss weight at 0 (cosine, mse, infonce, triplet); "
                "set at least one above 0"
            )


def _check_distributed(params: ModelParams, source: str) -> None:
    dist = params.train.distributed
    if dist.node_rank >= dist.nnodes:
        raise ConfigError(
            f"{source}: train.distributed.node_rank = {dist.node_rank} but train.distributed.nnodes = {dist.nnodes}; "
            f"node ranks run from 0 to {dist.nnodes - 1}"
        )
    if dist.master_port == 0 and dist.nnodes > 1:
        raise ConfigError(
            f"{source}: train.distributed.master_port = 0 (any free port) works on one node only; with "
            f"nnodes = {dist.nnodes} every node must name the same port, e.g. 29500"
        )
    check_batch_split(params, dist.world_size, source)


def check_batch_split(params: ModelParams, world_size: int, source: str = "params") -> None:
    """Every stage's global batch must split evenly over ``world_size`` processes."""
    dist = params.train.distributed
    for name in STAGE_NAMES:
        batch = params.stage(name).batch_size
        if batch % world_size:
            lower = batch - batch % world_size
            nearby = f"{lower} or {lower + world_size}" if lower else f"{world_size}"
            raise ConfigError(
                f"{source}: train.{name}.batch_size = {batch} does not split evenly over world size {world_size} "
                f"(train.distributed.nproc_per_node {dist.nproc_per_node} x nnodes {dist.nnodes}); the batch size "
                f"is the global batch, so set it to a multiple of {world_size} (e.g. {nearby}) or change the "
                "number of processes"
            )
