"""Typed sections of ``params.yaml`` and their strict loader.

Every section is a frozen dataclass whose field types say what is allowed (strict whole numbers, numbers, text,
true/false, a choice of words, a range); pydantic checks a YAML mapping against them, the same validator that
checks every stage's result. Its findings are put in this project's words: an unknown key names the nearest valid
key, a wrong type or an out-of-range value names the key, the value and what is allowed. A missing key takes the
field's default; a misspelt one never does.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Ge, Gt, Le, MinLen
from pydantic import ConfigDict, Strict, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError

from cube.digest import json_digest
from cube.stages import STAGE_NAMES
from cube.tasks import TASKS


class ConfigError(ValueError):
    """A params file that cannot be used as it is; the message says where and how to fix it."""


@dataclass(frozen=True)
class Range:
    """An allowed numeric range, kept beside pydantic's constraints so an error can state the whole of it."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself excluded

    def __str__(self) -> str:
        left = "(" if self.lo_open else "["
        return f"{left}{'-inf' if self.lo is None else self.lo}, " + ("inf)" if self.hi is None else f"{self.hi}]")


def ranged(kind: Any, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Any:
    """``kind`` limited to a range (``lo_open``: ``lo`` itself excluded)."""
    constraints = [Gt(lo) if lo_open else Ge(lo)] if lo is not None else []
    constraints += [Le(hi)] if hi is not None else []
    return Annotated[(kind, Range(lo, hi, lo_open), *constraints)]


Number = Annotated[float, Strict()]  # an int in the file is read as the same float
PositiveInt = ranged(StrictInt, 0, lo_open=True)
NonNegativeInt = ranged(StrictInt, 0)
PositiveFloat = ranged(Number, 0, lo_open=True)
NonNegativeFloat = ranged(Number, 0)
Fraction = ranged(Number, 0.0, 1.0)


def section(cls: type) -> type:
    """A frozen dataclass for a params section: unknown keys refused."""
    cls.__pydantic_config__ = ConfigDict(extra="forbid")
    return dataclass(frozen=True)(cls)


@section
class DataConfig:
    # what is retrieved among what (cube/tasks.py): the next turn of a dialogue, a German or French word's English
    # translation, or the WordNet headword a definition defines
    task: StrictStr = "dialogue"  # a name in cube/tasks.py TASKS
    languages: Literal["deu-eng", "fra-eng"] = "deu-eng"  # translation: the FreeDict dictionary read
    corpus: Literal["chatterbot", "chitchat", "file"] = "chitchat"  # dialogue: the conversations read
    path: StrictStr | None = None  # JSONL or CSV file when corpus is "file"
    language: StrictStr = "english"  # chatterbot-corpus language folder
    question_field: StrictStr = "question"
    answer_field: StrictStr = "answer"
    max_pairs: NonNegativeInt = 4400  # 0: all pairs
    val_fraction: ranged(Number, 0.0, 0.5, lo_open=True) = 0.1
    # up to 0.8: an evaluation-first split (the default run tests on 60%) still leaves 10% to train on
    test_fraction: ranged(Number, 0.0, 0.8, lo_open=True) = 0.6
    cache_dir: StrictStr = "data/cache"


@section
class TeacherModelConfig:
    name: StrictStr = "all-MiniLM-L6-v2"  # an embedded model, a local folder, or a model id in the HF cache
    pooling: Literal["mean", "last_token", "cls"] = "mean"
    max_length: PositiveInt = 256
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"


@section
class TeacherConfig:
    models: Annotated[tuple[TeacherModelConfig, ...], MinLen(1)] = (TeacherModelConfig(),)
    weighting: Literal["equal", "agreement"] = "equal"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    offline: StrictBool = True  # never reach a model hub at run time


@section
class CubeConfig:
    lattice: tuple[PositiveInt, PositiveInt, PositiveInt] = (8, 8, 6)
    state_channels: PositiveInt = 8
    hidden: PositiveInt = 32
    steps: PositiveInt = 10
    boundary: Literal["walls", "periodic"] = "walls"
    adapter: Literal["none", "linear"] = "none"
    residual: StrictBool = True
    position_code: StrictBool = True  # a learned per-cell code added to the initial state
    placement: Literal["reshape", "correlation", "coupling"] = "reshape"  # which dimension sits in which cell
    activation_checkpointing: StrictBool = False


@section
class StageConfig:
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    lr: NonNegativeFloat = 3e-3  # 0 freezes the stage: it keeps its starting map
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: NonNegativeFloat = 0.0
    grad_clip: NonNegativeFloat = 0.0  # 0: off
    scheduler: Literal["none", "plateau"] = "none"
    plateau_factor: ranged(Number, 0.0, 1.0, lo_open=True) = 0.5
    plateau_patience: NonNegativeInt = 2
    early_stopping_patience: NonNegativeInt = 0  # 0: off
    monitor: Literal["mrr", "cosine"] = "cosine"  # validation metric for plateau, early stopping, best epoch
    # loss mix
    cosine_weight: NonNegativeFloat = 1.0
    mse_weight: NonNegativeFloat = 0.0
    infonce_weight: NonNegativeFloat = 0.0
    infonce_temperature: PositiveFloat = 0.05
    triplet_weight: NonNegativeFloat = 0.0
    triplet_margin: NonNegativeFloat = 0.2
    diversity_weight: NonNegativeFloat = 0.0
    # curriculum: easy pairs first, by teacher difficulty 1 - cos(q, a)
    curriculum: StrictBool = False
    curriculum_start: ranged(Number, 0.0, 1.0, lo_open=True) = 0.3
    curriculum_epochs: PositiveInt = 5
    # denoising (autoencoder stage)
    noise_std: NonNegativeFloat = 0.0
    input_dropout: Fraction = 0.0
    # training pairs whose teacher cos(q, a) is below this are left out (None: keep all)
    semantic_similarity_threshold: ranged(Number, -1.0, 1.0) | None = None
    autocast: Literal["none", "bf16", "fp16"] = "none"


@section
class DistributedConfig:
    """Data-parallel training with torchrun + DistributedDataParallel (``train.distributed``).

    World size = nproc_per_node * nnodes; 1 trains in this process as before. Each stage's
    ``batch_size`` is the global batch, split evenly over the processes.
    """

    nproc_per_node: PositiveInt = 1  # processes on each node (one per GPU)
    nnodes: PositiveInt = 1
    node_rank: NonNegativeInt = 0  # this node's index, 0 .. nnodes-1
    master_addr: StrictStr = "127.0.0.1"  # node 0's address, reachable from every node
    master_port: ranged(StrictInt, 0, 65535) = 29500  # 0: a free port (single node only)
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo on the CPU

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


@section
class TrainConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: StrictBool = True
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


@section
class TunedStage:
    """A trainable baseline's advanced-stage values and whether it goes through the cube's earlier dialogue stages
    first, chosen on validation like the cube's (``baselines.*``); every other setting is the cube's own
    ``train.<stage>``."""

    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.01
    infonce_temperature: PositiveFloat = 0.1
    chain: StrictBool = True  # true: dialogue -> optimized -> advanced, as the cube; false: the advanced stage alone


@section
class MLPBaselineConfig(TunedStage):
    hidden: PositiveInt = 512


@section
class BaselinesConfig:
    """The trainable baselines: trained from the identity map with the cube's stage settings (loss mix, optimizer,
    clipping, schedule, early stopping, epoch-0 fallback and monitor), with these tuned values."""

    mlp: MLPBaselineConfig = MLPBaselineConfig()
    linear: TunedStage = TunedStage(chain=False)


@section
class ModelParams:
    """The sections the model library reads: data, teachers, the cube, its training and the trainable baselines.
    The harness adds its own sections (bench, gate, quality, reliability) in ``harness.config.Params``."""

    seed: NonNegativeInt = 0
    numerics: Literal["portable", "native"] = "portable"  # cube/numerics.py: CPU code paths pinned, or the CPU's own
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
    """``cls`` (a section dataclass of section dataclasses) from plain data, checked by pydantic against the field
    types; the first problem found is a ConfigError in the words of ``_problem``."""
    try:
        return _adapter(cls).validate_python(raw)
    except ValidationError as error:
        found = error.errors()
        first = min(found, key=lambda e: e["type"] != "unexpected_keyword_argument")  # unknown keys first
        raise ConfigError(f"{source}: {_problem(cls, first)}") from None


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _key(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _unwrapped(tp: Any) -> tuple[Any, Range | None]:
    """A field type without Optional and Annotated, and the Range it carries if any."""
    limits = None
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            limits = next((m for m in tp.__metadata__ if isinstance(m, Range)), limits)
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp, limits


def _type_at(cls: type, loc: tuple[str | int, ...]) -> tuple[Any, Range | None]:
    """The declared type (and range) of the value at ``loc`` under ``cls``."""
    tp, limits = cls, None
    for part in loc:
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if len(args) == 2 and args[1] is Ellipsis else args[min(part, len(args) - 1)]
        else:
            tp = typing.get_type_hints(tp, include_extras=True)[part]
        tp, limits = _unwrapped(tp)
    return tp, limits


def _problem(cls: type, error: dict[str, Any]) -> str:
    """One pydantic finding as this project states it: where, what was given, what is allowed."""
    loc, value, kind = tuple(error["loc"]), error["input"], error["type"]
    key, got = _key(loc), f"{type(value).__name__} {value!r}"
    if kind == "unexpected_keyword_argument":
        parent, _ = _type_at(cls, loc[:-1])
        fields = [f.name for f in dataclasses.fields(parent)]
        near = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.4)
        hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(fields)}"
        return f"unknown key {loc[-1]!r} in {_key(loc[:-1]) or 'the top level'}{hint}"
    if kind in ("dataclass_type", "dataclass_args_type"):
        return f"{key or 'the top level'} must be a mapping of keys to values, got {got}"
    if kind == "literal_error":
        allowed = typing.get_args(_type_at(cls, loc)[0])
        near = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.4)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return f"{key} = {value!r} is not allowed{hint}; choose one of {', '.join(repr(a) for a in allowed)}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{key} = {value!r} is out of range; allowed range is {_type_at(cls, loc)[1]}"
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a fixed-length list with entries missing
        loc = loc[:-1]
        kind = "too_short"
    if kind in ("too_short", "too_long"):
        declared = typing.get_args(_type_at(cls, loc)[0])
        if len(declared) == 2 and declared[1] is Ellipsis:
            return f"{_key(loc)} must not be empty"
        return f"{_key(loc)} must have {len(declared)} entries, got {len(value)}: {value!r}"
    wanted = {"int_type": "a whole number", "float_type": "a number", "string_type": "text",
              "tuple_type": "a list"}
    if kind == "bool_type":
        return f"{key} must be true or false, got {value!r}"
    if kind in wanted:
        return f"{key} must be {wanted[kind]}, got {got}"
    return f"{key or 'the top level'}: {error['msg']}"


def check_model_params(params: ModelParams, source: str) -> None:
    """What no single value can say wrong: combinations of data, distributed and loss settings."""
    d = params.data
    if d.task not in TASKS:
        near = difflib.get_close_matches(d.task, list(TASKS), n=1)
        raise ConfigError(f"{source}: data.task = {d.task!r} is not a task; "
                          + (f"did you mean {near[0]!r}? " if near else "")
                          + f"the tasks are {', '.join(map(repr, TASKS))} (cube/tasks.py)")
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
    if params.cube.placement != "reshape" and params.cube.adapter != "none":
        raise ConfigError(f"{source}: cube.placement {params.cube.placement!r} places embedding dimensions on cells, "
                          "and cube.adapter 'linear' feeds the cells a learned projection instead; set "
                          "cube.placement: reshape or cube.adapter: none")
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
