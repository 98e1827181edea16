"""The bad-input table: each row is something a user may hand the harness, the error it must raise and the
words the user needs in it (what, where, how to fix). Nothing here may pass silently or crash obscurely."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from cube.checkpoint import CheckpointError, load_checkpoint, load_model_weights, save_checkpoint
from cube.config import ConfigError, CubeConfig, DataConfig
from cube.device import CudaProbe, DeviceError, GpuInfo, choose_device
from cube.embedded import EmbeddedSplit
from cube.pairs import DataError, chatterbot_pairs, file_pairs, load_pairs, split_by_question
from cube.processor import EmbeddingProcessor
from cube.reshaper import EmbeddingReshaper, LatticeSizeError
from harness.config import load_params
from harness.judge.gate import GateError, run_gate
from harness.stages.evaluate import PredictionError, score_or_refuse
from harness.stats.paired import NonFiniteScores, paired_difference

DEFAULT_PARAMS = yaml.safe_load((Path(__file__).resolve().parent.parent / "params.yaml").read_text(encoding="utf-8"))


def params_text(text: str) -> Callable[[Path], object]:
    def load(tmp: Path) -> object:
        (tmp / "params.yaml").write_text(text, encoding="utf-8")
        return load_params(tmp / "params.yaml")
    return load


def params_change(section: str, key: str, value: object) -> Callable[[Path], object]:
    """params.yaml with one value changed (a dotted section such as 'train.dialogue')."""
    def load(tmp: Path) -> object:
        params = json.loads(json.dumps(DEFAULT_PARAMS))
        target = params
        for part in section.split("."):
            target = target[part]
        target[key] = value
        return params_text(yaml.safe_dump(params))(tmp)
    return load


def pair_file(name: str, content: bytes) -> Callable[[Path], object]:
    def load(tmp: Path) -> object:
        (tmp / name).write_bytes(content)
        return file_pairs(tmp / name)
    return load


def saved_model(tmp: Path, lattice: tuple[int, int, int] = (8, 8, 6)) -> Path:
    model = EmbeddingProcessor(384, CubeConfig(lattice=lattice))
    save_checkpoint(tmp / "ckpt", {f"best.{k}": v for k, v in model.state_dict().items()},
                    {"stage": "dialogue", "epoch": 1, "cube": list(lattice)})
    return tmp / "ckpt"


def weights_of(directory: Path) -> Path:
    return directory / json.loads((directory / "checkpoint.json").read_text())["weights_file"]


def corrupt_checkpoint(how: str) -> Callable[[Path], object]:
    def load(tmp: Path) -> object:
        directory = saved_model(tmp)
        weights, sidecar = weights_of(directory), directory / "checkpoint.json"
        if how == "truncate":
            weights.write_bytes(weights.read_bytes()[:200])
        elif how == "flip":
            data = bytearray(weights.read_bytes())
            data[-10] ^= 0x40
            weights.write_bytes(bytes(data))
        elif how == "sidecar":
            sidecar.write_text("{not json", encoding="utf-8")
        elif how == "version":
            sidecar.write_text(json.dumps(json.loads(sidecar.read_text()) | {"format": 999}), encoding="utf-8")
        elif how == "weights-gone":
            weights.unlink()
        return load_checkpoint(directory)
    return load


def empty_pair_file_with(content: bytes) -> Callable[[Path], object]:
    def load(tmp: Path) -> object:
        (tmp / "pairs.jsonl").write_bytes(content)
        return load_pairs(DataConfig(corpus="file", path=str(tmp / "pairs.jsonl")))
    return load


empty_pair_file = empty_pair_file_with(b"")


def other_lattice(tmp: Path) -> object:
    directory = saved_model(tmp, lattice=(4, 8, 12))
    return load_model_weights(EmbeddingProcessor(384, CubeConfig(lattice=(8, 8, 6))), load_checkpoint(directory))


def pickle_checkpoint(tmp: Path) -> object:
    torch.save({"w": torch.ones(2)}, tmp / "model.pt")
    return load_checkpoint(tmp / "model.pt")


RTX_5090_OLD_BUILD = CudaProbe("2.5.0+cu124", "12.4", ("sm_80", "sm_90"), (GpuInfo(0, "NVIDIA GeForce RTX 5090", (12, 0)),))
NO_GPU = CudaProbe("2.13.0+cpu", None, (), ())


def gate_without_baseline(tmp: Path) -> object:
    (tmp / "baseline.json").write_text('{"profiles": {}}', encoding="utf-8")
    metrics = Path("metrics")
    if not (metrics / "evaluate.json").exists():
        pytest.skip("needs metrics/ of a pipeline run")
    return run_gate(load_params("params.yaml"), tmp / "baseline.json")


BAD_INPUTS: list[tuple[str, Callable[[Path], object], type[Exception], list[str]]] = [
    # params.yaml
    ("misspelt key", params_change("cube", "stpes", 3), ConfigError, ["unknown key 'stpes' in cube", "did you mean 'steps'"]),
    ("misspelt stage key", params_change("train.dialogue", "min_similarity_threshold", 0.3), ConfigError,
     ["in train.dialogue", "did you mean 'semantic_similarity_threshold'"]),
    ("misspelt section", params_text("tarin: {}\n"), ConfigError, ["unknown key 'tarin'", "did you mean 'train'"]),
    ("text for a number", params_change("cube", "steps", "ten"), ConfigError, ["cube.steps must be a whole number", "'ten'"]),
    ("fraction for a count", params_change("cube", "hidden", 3.5), ConfigError, ["cube.hidden must be a whole number"]),
    ("boolean for a count", params_change("train.dialogue", "epochs", True), ConfigError, ["train.dialogue.epochs"]),
    ("negative steps", params_change("cube", "steps", -1), ConfigError, ["cube.steps = -1 is out of range", "(0, inf)"]),
    ("zero channels", params_change("cube", "state_channels", 0), ConfigError, ["cube.state_channels = 0 is out of range"]),
    ("zero lattice side", params_change("cube", "lattice", [8, 0, 6]), ConfigError, ["cube.lattice[1] = 0 is out of range"]),
    ("two-sided lattice", params_change("cube", "lattice", [8, 48]), ConfigError, ["cube.lattice must have 3 entries"]),
    ("unknown choice", params_change("cube", "boundary", "wall"), ConfigError, ["cube.boundary", "did you mean 'walls'"]),
    ("negative learning rate", params_change("train.optimized", "lr", -0.1), ConfigError, ["train.optimized.lr", "out of range"]),
    ("empty batch sizes", params_change("bench", "batch_sizes", []), ConfigError, ["bench.batch_sizes must not be empty"]),
    ("extra seed equal to seed", params_change("quality", "extra_seeds", [0, 1]), ConfigError,
     ["quality.extra_seeds = [0, 1] repeats seed(s) [0]", "distinct seeds other than `seed`"]),
    ("extra seed listed twice", params_change("quality", "extra_seeds", [3, 3]), ConfigError,
     ["quality.extra_seeds = [3, 3] repeats seed(s) [3]"]),
    ("negative extra seed", params_change("quality", "extra_seeds", [-1]), ConfigError,
     ["quality.extra_seeds[0] = -1 is out of range"]),
    ("empty params file", params_text(""), ConfigError, ["the file is empty"]),
    ("YAML syntax error", params_text("cube:\n  lattice: [8, 8\n"), ConfigError, ["YAML syntax error at line", "column"]),
    ("list instead of mapping", params_text("- seed\n- cube\n"), ConfigError, ["must be a mapping"]),
    ("params file missing", lambda tmp: load_params(tmp / "nope.yaml"), ConfigError, ["params file not found"]),
    ("file corpus without a path", params_change("data", "corpus", "file"), ConfigError,
     ["data.path is empty", "JSONL or CSV"]),
    ("path without file corpus", params_change("data", "path", "pairs.jsonl"), ConfigError, ["set data.corpus: file"]),
    ("splits leave no training data", params_text(yaml.safe_dump(DEFAULT_PARAMS | {"data": DEFAULT_PARAMS["data"] | {
        "val_fraction": 0.45, "test_fraction": 0.45}})), ConfigError, ["leaves under 10% for training"]),
    ("every loss weight zero", params_text(yaml.safe_dump(DEFAULT_PARAMS | {"train": DEFAULT_PARAMS["train"] | {
        "dialogue": {"cosine_weight": 0.0}}})), ConfigError, ["train.dialogue has every loss weight at 0"]),
    ("lattice cannot hold the embedding", lambda tmp: EmbeddingReshaper(384, (8, 8, 8)), LatticeSizeError,
     ["384-d embedding", "8x8x8", "8x8x6", "cube.adapter: linear"]),
    # data
    ("pair file missing", lambda tmp: file_pairs(tmp / "pairs.jsonl"), DataError, ["data file not found", "pairs.jsonl"]),
    ("empty pair file", empty_pair_file, DataError, ["pairs.jsonl", "no question/answer pairs"]),
    ("only empty turns", empty_pair_file_with(b'{"question": " ", "answer": ""}\n'), DataError,
     ["no question/answer pairs left after dropping empty"]),
    ("missing answer field", pair_file("pairs.jsonl", b'{"question": "hi"}\n'), DataError,
     ["pairs.jsonl:1", "missing field(s) 'answer'", "data.answer_field"]),
    ("non-UTF-8 bytes", pair_file("pairs.jsonl", b'{"question": "caf\xe9", "answer": "x"}\n'), DataError,
     ["pairs.jsonl is not valid UTF-8", "byte offset 17", "re-save the file as UTF-8"]),
    ("broken JSON line", pair_file("pairs.jsonl", b'{"question": "a", "answer": "b"}\n{"question": \n'), DataError,
     ["pairs.jsonl:2: not valid JSON"]),
    ("unsupported file type", pair_file("pairs.txt", b"q\ta\n"), DataError, ["unsupported pair file type '.txt'"]),
    ("too few questions to split", lambda tmp: split_by_question(
        file_pairs_from(tmp, [("a?", "1"), ("b?", "2")]), 0.1, 0.1, 0), DataError, ["needs at least 3"]),
    ("corpus language absent", lambda tmp: chatterbot_pairs("klingon"), DataError, ["'klingon'", "data.language"]),
    # checkpoints
    ("stage from a missing checkpoint", lambda tmp: load_checkpoint(tmp / "autoencoder"), CheckpointError,
     ["no checkpoint in", "run the stage that writes it first"]),
    ("truncated checkpoint", corrupt_checkpoint("truncate"), CheckpointError, ["corrupt or truncated", "re-run the stage"]),
    ("corrupted checkpoint", corrupt_checkpoint("flip"), CheckpointError, ["sha256", "does not match"]),
    ("unreadable checkpoint sidecar", corrupt_checkpoint("sidecar"), CheckpointError, ["is not valid JSON"]),
    ("checkpoint from another code version", corrupt_checkpoint("version"), CheckpointError, ["checkpoint format 999"]),
    ("checkpoint weights file gone", corrupt_checkpoint("weights-gone"), CheckpointError, ["which is missing"]),
    ("checkpoint of another lattice", other_lattice, CheckpointError, ["written for cube [4, 8, 12]", "expects"]),
    ("pickle checkpoint", pickle_checkpoint, CheckpointError, ["pickle checkpoints are refused", "safetensors"]),
    # devices
    ("cuda asked for, none present", lambda tmp: choose_device("cuda", NO_GPU), DeviceError,
     ["'cuda' was requested", "no CUDA GPU", "auto or cpu"]),
    ("cuda on a GPU the build cannot run", lambda tmp: choose_device("cuda", RTX_5090_OLD_BUILD), DeviceError,
     ["sm_120", "2.5.0+cu124", "cu128"]),
    ("unknown device name", lambda tmp: choose_device("gpu"), DeviceError, ["use auto, cpu or cuda"]),
    # evaluation
    ("NaN predictions at evaluation", lambda tmp: nan_predictions("nan"), PredictionError,
     ["stage 'advanced'", "seed 1", "test split", "NaN or Inf", "refused"]),
    ("infinite predictions at evaluation", lambda tmp: nan_predictions("inf"), PredictionError,
     ["stage 'advanced'", "NaN or Inf"]),
    ("non-finite per-pair scores compared", lambda tmp: paired_difference([[0.5, float("nan")]], [[0.5, 0.4]], "mrr"),
     NonFiniteScores, ["mrr", "non-finite", "refused"]),
    # gate
    ("gate with no baseline for the profile", gate_without_baseline, GateError, ["no baseline for profile 'default'",
                                                                              "gate --profile default --update"]),
]


def nan_predictions(kind: str) -> object:
    """Score a model whose predictions hold one non-finite row, as the evaluate stage does."""
    answers = torch.nn.functional.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    split = EmbeddedSplit("test", [None] * 5, answers, answers, answers, torch.arange(5), torch.arange(5))
    pred = answers.clone()
    pred[1, 3] = float(kind)
    return score_or_refuse(split, pred, "stage 'advanced' (checkpoints/seeds/seed1/advanced)", 1)


def file_pairs_from(tmp: Path, pairs: list[tuple[str, str]]) -> list:
    path = tmp / "few.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in pairs), encoding="utf-8")
    return file_pairs(path)


@pytest.mark.bad_input
@pytest.mark.parametrize(("action", "error", "words"), [row[1:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_gets_a_clear_error(tmp_path, action, error, words):
    before = set(tmp_path.rglob("*"))
    with pytest.raises(error) as raised:
        action(tmp_path)
    message = str(raised.value)
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"
    leftovers = [p for p in set(tmp_path.rglob("*")) - before if ".tmp" in p.name]
    assert not leftovers, f"half-written files left behind: {leftovers}"


def test_the_table_is_long_enough():
    assert len(BAD_INPUTS) >= 30
