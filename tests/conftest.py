"""Shared fixtures: the real default corpus embedded by the real MiniLM teacher, and tiny HF models."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cube import numerics

os.environ.setdefault("HF_HUB_OFFLINE", "1")
numerics.pin(numerics.DEFAULT)  # the tests compute under the numerics the pipeline runs under by default

import torch  # noqa: E402

from cube.config import DataConfig  # noqa: E402
from cube.teachers import resolve_model_dir  # noqa: E402
from harness.config import Params, load_params  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def embedded(params: Params, tmp_path_factory: pytest.TempPathFactory):
    """The whole English chatterbot corpus, split and embedded with all-MiniLM-L6-v2 (real weights)."""
    from cube.embedded import build_embedded_data

    cache = tmp_path_factory.mktemp("embedding-cache")
    chatterbot = dataclasses.replace(params.data, corpus="chatterbot", language="english", max_pairs=0,
                                     cache_dir=str(cache))
    real = dataclasses.replace(params, data=chatterbot)
    return build_embedded_data(real, progress=False)


SOCKET_GUARD = """
import os, socket

_log = os.environ["CUBE_SOCKET_LOG"]


def _refuse(what, address):
    with open(_log, "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()} {what} {address!r}\\n")
    raise OSError(f"network blocked by the test: {what} {address!r}")


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def connect(self, address):
    return _connect(self, address) if self.family == socket.AF_UNIX else _refuse("connect", address)


def connect_ex(self, address):
    return _connect_ex(self, address) if self.family == socket.AF_UNIX else _refuse("connect_ex", address)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.getaddrinfo = lambda host, *args, **kwargs: _refuse("getaddrinfo", host)
"""


def socket_guard(folder: Path, log: Path) -> dict[str, str]:
    """Environment under which every Python process refuses (and logs to ``log``) any connection but a Unix socket."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SOCKET_GUARD, encoding="utf-8")
    return {"PYTHONPATH": str(folder), "CUBE_SOCKET_LOG": str(log)}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny profile's whole pipeline, run once: this working tree as a fresh git repository, `dvc repro`, with
    the network blocked (``repro.log`` and any refused connection's ``connections.log`` lie beside the repository).

    Never changed: the pipeline tests and the planted regressions each work on a copy of it.
    """
    from harness.workflows.profile import make_workspace

    folder = tmp_path_factory.mktemp("tiny-run")
    repo = make_workspace(folder / "repo")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HF_HUB_OFFLINE="1",
               **socket_guard(folder / "guard", folder / "connections.log"))
    result = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    (folder / "repro.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    assert result.returncode == 0, f"dvc repro of the tiny profile failed:\n{result.stdout}\n{result.stderr}"
    return repo


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return resolve_model_dir("all-MiniLM-L6-v2")


def _copy_tokenizer(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> dict[str, Path]:
    """Randomly initialised tiny encoders saved with transformers: two BERT widths (one fp16)
    and a decoder-only Llama, all sharing MiniLM's real tokenizer."""
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

    root = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(0)
    made = {}
    for name, width, dtype in (("bert32", 32, torch.float32), ("bert48-fp16", 48, torch.float16)):
        config = BertConfig(vocab_size=30522, hidden_size=width, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=2 * width, max_position_embeddings=128)
        model = BertModel(config).to(dtype)
        model.save_pretrained(root / name)
        _copy_tokenizer(minilm_dir, root / name)
        made[name] = root / name
    config = LlamaConfig(vocab_size=30522, hidden_size=40, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0)
    LlamaModel(config).save_pretrained(root / "llama40")
    _copy_tokenizer(minilm_dir, root / "llama40")
    made["llama40"] = root / "llama40"
    return made


def small_data_config(cache_dir: Path, max_pairs: int = 120) -> DataConfig:
    return DataConfig(corpus="chatterbot", max_pairs=max_pairs, cache_dir=str(cache_dir), val_fraction=0.2, test_fraction=0.2)
