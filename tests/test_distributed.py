"""Distributed training: torchrun + DistributedDataParallel on 2 CPU processes (gloo) against one process.

The slow tests launch ``python -m harness train <stage>`` in a workspace holding the tiny profile's
params and embedded data; with ``train.distributed.nproc_per_node: 2`` it re-launches itself through
torchrun. The fast ones check the config errors, the launcher's exit status and, exactly (float64), that
the ranks' shares of every loss add up to the single-process loss and gradient.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from cube.config import ConfigError, StageConfig
from cube.device import DeviceError
from cube.distributed import World, launch_command, process_group, resolve_backend
from cube.losses import stage_loss
from cube.trainer import CubeTrainer
from harness.config import load_params, params_from_dict
from harness.store.results import TrainSummary
from harness.workflows.profile import merge

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
TINY = merge(json.loads(json.dumps(DEFAULT)), yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text(encoding="utf-8")))

# Measured on a 2-core CPU (torch 2.13): the 2-process advanced stage ends 6e-6 from the single-process one
# in val cosine and within 8e-6 in every loss part (InfoNCE at temperature 0.05 magnifies float rounding);
# the autoencoder and cosine/MSE stages within 1e-7. Ranking metrics came out identical.
CONTINUOUS_TOLERANCE = 1e-4

# Logs every write-mode open, rename and mkdir of a Python process (per rank) into $CUBE_AUDIT_DIR.
AUDIT = r'''
import os, sys
_dir = os.environ.get("CUBE_AUDIT_DIR")
if _dir:
    _log = open(os.path.join(_dir, f"writes-rank{os.environ.get('RANK', 'none')}-{os.getpid()}.txt"), "w", buffering=1)
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE)
            if writing and isinstance(path, (str, bytes, os.PathLike)):
                _log.write(f"open {os.path.abspath(os.fsdecode(path))}\n")
        elif event in ("os.rename", "os.mkdir"):
            _log.write(f"{event} {os.path.abspath(os.fsdecode(args[1] if event == 'os.rename' else args[0]))}\n")

    sys.addaudithook(_hook)
'''


# ------------------------------------------------------------------ fast: config, launcher, loss algebra


def distributed_params(**changes: object) -> dict:
    raw = json.loads(json.dumps(DEFAULT))
    raw["train"]["distributed"].update(changes)
    return raw


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"nproc_per_node": 3}, ["train.autoencoder.batch_size = 64 does not split evenly over world size 3",
                                 "nproc_per_node 3 x nnodes 1", "multiple of 3 (e.g. 63 or 66)"]),
        ({"nproc_per_node": 0}, ["train.distributed.nproc_per_node = 0 is out of range"]),
        ({"nnodes": 2, "node_rank": 2}, ["train.distributed.node_rank = 2", "nnodes = 2", "from 0 to 1"]),
        ({"nnodes": 2, "master_port": 0}, ["master_port = 0", "one node only", "same port"]),
        ({"master_port": 70000}, ["train.distributed.master_port = 70000 is out of range", "[0, 65535]"]),
        ({"backend": "mpi"}, ["train.distributed.backend = 'mpi' is not allowed", "'auto', 'nccl', 'gloo'"]),
        ({"nproc": 2}, ["unknown key 'nproc' in train.distributed", "did you mean 'nproc_per_node'"]),
    ],
)
def test_bad_distributed_settings_name_key_value_and_fix(changes, words):
    with pytest.raises(ConfigError) as err:
        params_from_dict(distributed_params(**changes))
    for word in words:
        assert word in str(err.value), f"{word!r} missing from: {err.value}"


def test_default_params_train_in_one_process():
    config = load_params(ROOT / "params.yaml").train.distributed
    assert (config.world_size, config.backend) == (1, "auto")


def test_backend_auto_is_nccl_on_cuda_gloo_on_cpu_and_nccl_needs_cuda():
    config = params_from_dict(distributed_params()).train.distributed
    assert resolve_backend(config, torch.device("cpu")) == "gloo"
    assert resolve_backend(config, torch.device("cuda", 0)) == "nccl"
    nccl = params_from_dict(distributed_params(backend="nccl")).train.distributed
    with pytest.raises(DeviceError, match="backend is 'nccl' but training runs on cpu.*set train.distributed.backend"):
        resolve_backend(nccl, torch.device("cpu"))


def test_a_worker_launched_with_another_world_size_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    config = params_from_dict(distributed_params(nproc_per_node=2)).train.distributed
    with pytest.raises(ConfigError, match="WORLD_SIZE=4, but train.distributed says nproc_per_node 2 x nnodes 1 = 2"):
        with process_group(config, torch.device("cpu")):
            pass


def test_launch_command_and_a_failed_worker_fails_the_stage(monkeypatch, tmp_path):
    from harness import __main__ as cli

    raw = distributed_params(nproc_per_node=2, nnodes=2, node_rank=0, master_addr="10.0.0.1", master_port=29511)
    config = params_from_dict(raw).train.distributed
    command = launch_command(config, ["harness", "train", "dialogue"])
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert {"--nproc_per_node=2", "--nnodes=2", "--node_rank=0", "--master_addr=10.0.0.1", "--master_port=29511"} <= set(command)
    assert command[-4:] == ["-m", "harness", "train", "dialogue"]

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    launched = []

    def fake_run(command, check):  # torchrun exits 1 when any worker fails
        launched.append(command)
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(subprocess, "run", fake_run)
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    status = cli.main(["--params", str(tmp_path / "params.yaml"), "train", "dialogue", "--node-rank", "1"])
    assert status == 1
    assert "--node_rank=1" in launched[0] and launched[0][-2:] == ["--node-rank", "1"]
    assert cli.main(["--params", str(tmp_path / "params.yaml"), "train", "dialogue", "--node-rank", "2"]) == 2


@pytest.mark.parametrize(("rows", "world_size"), [(64, 2), (33, 2), (1, 2), (10, 3), (7, 4)])
def test_shards_of_every_loss_add_up_to_the_single_process_loss_and_gradient(rows, world_size):
    """float64, ranks simulated in one process: value, parts and gradient agree to rounding (1e-12)."""
    torch.manual_seed(rows)
    config = StageConfig(cosine_weight=1.0, mse_weight=0.5, infonce_weight=0.5, triplet_weight=0.25, diversity_weight=0.05)
    inputs = torch.randn(rows, 16, dtype=torch.float64)
    targets = torch.randn(rows, 16, dtype=torch.float64)
    targets[3 % rows] = targets[0]  # a duplicate target: masked as a negative
    weight = torch.randn(16, 16, dtype=torch.float64, requires_grad=True)
    loss, parts = stage_loss(inputs @ weight, targets, config)  # one process: the whole batch
    (expected_grad,) = torch.autograd.grad(loss, weight)
    parts = {name: float(value.detach()) for name, value in parts.items()}

    worlds = [World(rank, world_size) for rank in range(world_size)]
    assert sum(w.shard(rows).stop - w.shard(rows).start for w in worlds) == rows
    unit_sum = F.normalize((inputs @ weight).detach(), dim=-1).sum(dim=0)  # what the all-reduce returns
    total, part_sums, grad = 0.0, dict.fromkeys(parts, 0.0), torch.zeros_like(weight)
    for world in worlds:
        share = world.shard(rows)
        local = inputs[share] if share.stop > share.start else inputs[:1]
        local_total, local_parts = stage_loss(local @ weight, targets, config, share, world_size,
                                              lambda _: unit_sum.clone())
        (local_grad,) = torch.autograd.grad(local_total * world_size, weight)
        grad += local_grad / world_size  # what DDP's average does
        total += float(local_total.detach())
        for name, value in local_parts.items():
            part_sums[name] += float(value.detach())
    assert total == pytest.approx(float(loss.detach()), abs=1e-12)
    assert part_sums == pytest.approx(parts, abs=1e-12)
    torch.testing.assert_close(grad, expected_grad, atol=1e-12, rtol=0)


# ------------------------------------------------------------------ slow: real torchrun, 2 gloo processes


@pytest.fixture(scope="module")
def tiny_embedded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny profile's data stage (160 pairs, real MiniLM teacher), saved once."""
    from cube.embedded import build_embedded_data, save_embedded

    root = tmp_path_factory.mktemp("tiny-embedded")
    raw = json.loads(json.dumps(TINY))
    raw["data"]["cache_dir"] = str(root / "cache")
    save_embedded(build_embedded_data(params_from_dict(raw), progress=False), root / "embedded")
    return root / "embedded"


def workspace(path: Path, embedded: Path, nproc: int, stage: str, **stage_changes: object) -> Path:
    """params.yaml (tiny profile, 4 epochs) + data/embedded + a fixed previous checkpoint, as DVC would leave them."""
    from cube.checkpoint import save_checkpoint
    from cube.processor import EmbeddingProcessor

    raw = json.loads(json.dumps(TINY))
    raw["train"]["distributed"].update(nproc_per_node=nproc, master_port=0)
    raw["train"][stage].update(epochs=4, **stage_changes)
    path.mkdir(parents=True)
    (path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    shutil.copytree(embedded, path / "data" / "embedded")
    params = params_from_dict(raw)
    previous = {"dialogue": "autoencoder", "optimized": "dialogue", "advanced": "optimized"}.get(stage)
    if previous:
        torch.manual_seed(1)
        model = EmbeddingProcessor(json.loads((embedded / "card.json").read_text())["dim"], params.cube)
        save_checkpoint(path / "checkpoints" / previous, {f"best.{k}": v for k, v in model.state_dict().items()},
                        {"stage": previous, "epoch": 0})
    return path


def run_in_process(repo: Path, stage: str, monkeypatch: pytest.MonkeyPatch) -> TrainSummary:
    from harness.stages.train import run_stage

    deterministic = torch.are_deterministic_algorithms_enabled()
    with monkeypatch.context() as patch:
        patch.chdir(repo)
        for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
            patch.delenv(name, raising=False)
        try:
            return run_stage(load_params(repo / "params.yaml"), stage, progress=False)
        finally:  # run_stage applies train.deterministic process-wide; leave the test session as it was
            torch.use_deterministic_algorithms(deterministic)


def run_two_processes(repo: Path, stage: str, audit: Path) -> subprocess.CompletedProcess:
    audit.mkdir()
    (audit / "sitecustomize.py").write_text(AUDIT, encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", CUBE_AUDIT_DIR=str(audit),
               PYTHONPATH=os.pathsep.join(filter(None, [str(audit), os.environ.get("PYTHONPATH")])))
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "harness", "train", stage], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result


def history(repo: Path, stage: str) -> list[dict]:
    return json.loads((repo / "checkpoints" / stage / "checkpoint.json").read_text(encoding="utf-8"))["history"]


def assert_same_run(one: Path, two: Path, stage: str, val_pairs: int) -> None:
    """Every epoch's losses and val metrics: continuous ones within CONTINUOUS_TOLERANCE, ranking ones (recall@k,
    MRR, hubness) within one pair moving by one rank (1 / val pairs); the same epochs, best epoch and stop."""
    single, double = history(one, stage), history(two, stage)
    assert [r["epoch"] for r in single] == [r["epoch"] for r in double]
    for a, b in zip(single, double):
        assert set(a) == set(b)
        for key in a:
            if key == "seconds":
                continue
            ranking = key.startswith(("val/recall", "val/mrr", "val/hubness"))
            tolerance = 1.0 / val_pairs if ranking else CONTINUOUS_TOLERANCE
            assert b[key] == pytest.approx(a[key], abs=tolerance), (stage, a["epoch"], key, a[key], b[key])
    summary_one = json.loads((one / f"metrics/train_{stage}.json").read_text())
    summary_two = json.loads((two / f"metrics/train_{stage}.json").read_text())
    assert (summary_two["world_size"], summary_one["world_size"]) == (2, 1)
    for key in ("best_epoch", "epochs_run", "stopped_early", "monitor"):
        assert summary_two[key] == summary_one[key], key
    assert summary_two["best_value"] == pytest.approx(summary_one["best_value"], abs=CONTINUOUS_TOLERANCE)


def assert_only_rank_0_wrote(audit: Path, repo: Path) -> None:
    written = {}
    for log in audit.glob("writes-rank*.txt"):
        rank = log.name.split("-")[1]
        inside = [line for line in log.read_text().splitlines() if str(repo.resolve()) in line]
        written.setdefault(rank, []).extend(inside)
    assert {"rank0", "rank1"} <= set(written), sorted(written)
    assert any("checkpoint.json" in line for line in written["rank0"])
    assert any("dvclive" in line for line in written["rank0"])
    assert not written["rank1"], written["rank1"][:5]
    assert not written.get("ranknone"), written.get("ranknone")[:5]  # nor the launcher / torchrun
    stage_dirs = list((repo / "checkpoints").iterdir())
    for directory in stage_dirs:
        assert len(list(directory.glob("weights-*.safetensors"))) == 1
    assert not list(repo.rglob("*.tmp"))


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_in_batch_negatives(tiny_embedded, tmp_path, monkeypatch):
    """The advanced stage of the tiny profile with every loss on (curriculum, InfoNCE, triplet, diversity, AdamW,
    clipping, plateau, early stopping; global batch 64, so shards of 15/14, 22/21, ... rows), 4 epochs, monitored on
    val cosine so the best epoch means something. Tolerance: see assert_same_run (continuous values 1e-4; measured 8e-6)."""
    every_loss = {"monitor": "cosine", "curriculum": True, "triplet_weight": 0.25}  # the default leaves these off
    one = workspace(tmp_path / "one", tiny_embedded, 1, "advanced", **every_loss)
    two = workspace(tmp_path / "two", tiny_embedded, 2, "advanced", **every_loss)
    run_in_process(one, "advanced", monkeypatch)
    result = run_two_processes(two, "advanced", tmp_path / "audit")
    assert "world size 2" in result.stdout and "advanced: best epoch" in result.stdout
    assert_same_run(one, two, "advanced", val_pairs=json.loads((tiny_embedded / "card.json").read_text())["pairs"]["val"])
    live = (two / "dvclive/advanced/plots/metrics/train_loss.tsv").read_text().splitlines()
    assert len(live) == 1 + 4  # one row per epoch: rank 1 logged nothing
    assert_only_rank_0_wrote(tmp_path / "audit", two)


class Killed(Exception):
    pass


@pytest.mark.slow
def test_a_single_process_run_killed_mid_stage_resumes_in_two_processes(tiny_embedded, tmp_path, monkeypatch):
    """The autoencoder stage (noise and input dropout drawn for the global batch, then sliced): one process
    is killed after epoch 2; two gloo processes resume from its checkpoint (rank 0 reads it and broadcasts)
    and end like an uninterrupted single-process run."""
    one = workspace(tmp_path / "one", tiny_embedded, 1, "autoencoder")
    two = workspace(tmp_path / "two", tiny_embedded, 2, "autoencoder")
    run_in_process(one, "autoencoder", monkeypatch)

    train_epoch = CubeTrainer._train_epoch

    def dies_at_the_third_epoch(self, epoch):  # noqa: ANN001, ANN202
        if epoch == 2:
            raise Killed
        return train_epoch(self, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(CubeTrainer, "_train_epoch", dies_at_the_third_epoch)
        with pytest.raises(Killed):
            run_in_process(two, "autoencoder", monkeypatch)
    assert json.loads((two / "checkpoints/autoencoder/checkpoint.json").read_text())["epoch"] == 2

    run_two_processes(two, "autoencoder", tmp_path / "audit")
    summary = json.loads((two / "metrics/train_autoencoder.json").read_text())
    assert summary["resumed_from_epoch"] == 2
    assert_same_run(one, two, "autoencoder", val_pairs=json.loads((tiny_embedded / "card.json").read_text())["pairs"]["val"])
    assert_only_rank_0_wrote(tmp_path / "audit", two)
