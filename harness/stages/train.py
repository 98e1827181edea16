"""The training stages: each starts from the previous stage's best weights and logs through dvclive.

With ``train.distributed`` world size above 1, ``python -m harness.stages train <stage>`` re-launches
itself through torchrun (``launch``); each worker then runs ``run_stage`` as one rank.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cube.checkpoint import load_checkpoint, load_model_weights
from cube.config import StageConfig
from cube.device import choose_device, set_determinism
from cube.digest import json_digest
from cube.distributed import (
    World,
    check_gpu_count,
    launch_command,
    process_group,
    resolve_backend,
    worker_device,
    world_from_env,
)
from cube.embedded import EmbeddedData
from cube.processor import EmbeddingProcessor, Mode
from cube.stages import BY_NAME
from cube.trainer import CubeTrainer, TrainResult
from dvclive import Live
from harness import paths
from harness.config import Params
from harness.store.embedded import embedded_for
from harness.store.results import TrainSummary, write_result


@dataclass(frozen=True)
class Chain:
    """One run of the four stages: its seed and where it writes. The pipeline's own chain writes the files
    dvc.yaml declares; a repeat under another seed (the `seeds` stage) keeps everything in one folder."""

    seed: int
    checkpoints: Path = paths.CHECKPOINTS
    summaries: Path = paths.METRICS
    dvclive: Path | None = paths.DVCLIVE

    @classmethod
    def repeat(cls, seed: int) -> Chain:
        folder = paths.seed_dir(seed)
        return cls(seed, checkpoints=folder, summaries=folder, dvclive=None)

    def checkpoint_dir(self, stage: str) -> Path:
        return self.checkpoints / stage

    def summary(self, stage: str) -> Path:
        return self.summaries / f"train_{stage}.json"


def _fingerprint(params: Params, previous_sha: str | None) -> str:
    """What a resumable checkpoint must agree on besides the stage's own config."""
    card = (paths.EMBEDDED / "card.json").read_text(encoding="utf-8")
    identity = {"data_card": card, "previous": previous_sha, "train_device": params.train.device}
    return json_digest(identity)


def needs_launch(params: Params) -> bool:
    """True in the process DVC starts when the stage must run as several torchrun workers."""
    return params.train.distributed.world_size > 1 and not world_from_env().distributed


def launch(params: Params, stage: str, params_path: Path, node_rank: int | None = None) -> int:
    """Run the stage as this node's ``nproc_per_node`` torchrun workers; their exit status (non-zero on any failure)."""
    config = params.train.distributed
    device = choose_device(params.train.device).device
    resolve_backend(config, device)  # fail here, once, rather than in every worker
    check_gpu_count(config, device)
    args = ["harness.stages", "--params", str(params_path), "train", stage]
    if node_rank is not None:
        args += ["--node-rank", str(node_rank)]
    command = launch_command(config, args)
    print(f"{stage}: {config.nproc_per_node} process(es) on node {config.node_rank} of {config.nnodes}, world size "
          f"{config.world_size}: {' '.join(command[1:])}", flush=True)
    status = subprocess.run(command, check=False).returncode
    if status:
        print(f"error: stage {stage!r} failed in its torchrun workers (exit status {status}); the workers' errors "
              "are printed above torchrun's report", file=sys.stderr)
    return status


def plotted_series(record: dict[str, Any], config: StageConfig) -> dict[str, Any]:
    """An epoch's figures worth a curve in dvclive: not the epoch (the step is), nor a series this stage cannot
    change (the learning rate without a schedule, the pairs used without a curriculum, the candidate count), nor a
    loss part that is the whole loss."""
    skip = {"epoch", "val/candidates"}
    if config.scheduler == "none":
        skip.add("lr")
    if not config.curriculum:
        skip.add("pairs_used")
    parts = [key for key in record if key.startswith("loss/")]
    if len(parts) == 1:
        skip.update(parts)
    return {key: value for key, value in record.items() if key not in skip}


def kept_summary(result: TrainResult, config: StageConfig) -> dict[str, Any]:
    """dvclive's summary, the figures `dvc exp show` and `dvc metrics diff` compare: those of the epoch whose weights
    the stage kept (its starting point's validation when no epoch beat it), not the last epoch's. Wall time is a fact
    of the run, not of the model, so it stays in the curves only."""
    best = result.best_record
    flat = plotted_series(best, config) if best else {f"val/{k}": v for k, v in result.start_val.items()}
    summary: dict[str, Any] = {}
    for key, value in flat.items():
        if key in ("seconds", "val/candidates"):
            continue
        *parents, leaf = key.split("/")
        node = summary
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    summary["kept_epoch"] = result.best_epoch
    summary["step"] = max(result.best_epoch - 1, 0)  # the kept epoch's step in the curves (epoch 1 is step 0)
    return summary


def prune_constant_series(folder: Path) -> list[Path]:
    """Remove the curves of a finished stage that never moved (a validation recall@10 of 1 every epoch, say): a flat
    line tells nothing a plot should show. The training loss is always kept; the removed files are returned."""
    removed = []
    for series in sorted(folder.rglob("*.tsv")):
        values = {row.split("\t")[-1] for row in series.read_text(encoding="utf-8").splitlines()[1:]}
        if len(values) <= 1 and series.name != "train_loss.tsv":
            series.unlink()
            removed.append(series)
    for directory in sorted((d for d in folder.rglob("*") if d.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return removed


def run_stage(params: Params, stage: str, progress: bool = True, chain: Chain | None = None) -> TrainSummary:
    """Train one stage; writes its checkpoint, dvclive logs and ``metrics/train_<stage>.json``
    (or, for a repeat ``chain``, its checkpoint and summary in the chain's folder).

    Inside a torchrun worker it is one rank of the run: rank 0 alone reads the previous stage's
    checkpoint (the others get the weights when DDP wraps the model) and writes every file.
    """
    config = params.stage(stage)
    chain = chain or Chain(params.seed)
    data = embedded_for(params, chain.seed)
    set_determinism(params.train.deterministic)
    choice = choose_device(params.train.device)
    device = worker_device(choice.device, world_from_env())
    with process_group(params.train.distributed, device) as world:
        summary = _train(params, stage, config, data, device, choice.reason, world, progress, chain)
    return summary


def _train(params: Params, stage: str, config: StageConfig, data: EmbeddedData, device: torch.device, device_reason: str,
           world: World, progress: bool, chain: Chain) -> TrainSummary:
    torch.manual_seed(chain.seed)
    mode = Mode(BY_NAME[stage].mode)
    model = EmbeddingProcessor(data.dim, params.cube, mode)
    previous = BY_NAME[stage].previous
    previous_sha = None
    if not previous:
        model.place_dimensions(data.train.questions, data.train.answers)
    if previous and world.is_main:
        checkpoint = load_checkpoint(chain.checkpoint_dir(previous))
        load_model_weights(model, checkpoint, "best")
        previous_sha = checkpoint.sha256

    live = None
    if world.is_main and chain.dvclive is not None:
        live = Live(dir=str(chain.dvclive / stage), dvcyaml=None, save_dvc_exp=False, report=None)
    with live or nullcontext():
        def log_epoch(record: dict[str, Any]) -> None:
            for key, value in plotted_series(record, config).items():
                live.log_metric(key, value)
            live.next_step()

        trainer = CubeTrainer(
            model, stage, config, data, seed=chain.seed, device=device,
            checkpoint_dir=chain.checkpoint_dir(stage),
            fingerprint=_fingerprint(params, previous_sha), on_epoch=log_epoch if live else None,
            progress=progress and world.is_main, world=world,
        )
        result = trainer.fit()
        if live is not None:
            live.summary = kept_summary(result, config)
    if live is not None:
        prune_constant_series(Path(live.plots_dir) / "metrics")

    best = result.best_record
    summary = TrainSummary(
        stage=stage,
        seed=chain.seed,
        initialised_from=previous or "random",
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        monitor=result.monitor,
        best_value=result.best_value,
        final_train_loss=result.train_losses[-1] if result.history else None,
        # the validation figures of the weights the stage kept: its starting point's when no epoch beat it
        val={k[4:]: v for k, v in best.items() if k.startswith("val/")} if best else dict(result.start_val),
        no_change=result.best_epoch == 0,
        stopped_early=result.stopped_early,
        resumed_from_epoch=result.resumed_from_epoch,
        wall_seconds=sum(r.get("seconds", 0.0) for r in result.history),  # epochs run by this process
        parameters=model.parameter_count(),
        device=str(device),
        device_reason=device_reason,
        world_size=world.world_size,
    )
    if world.is_main:
        write_result(chain.summary(stage), summary, TrainSummary)
    return summary


def run_repeats(params: Params, progress: bool = True) -> list[TrainSummary]:
    """The `seeds` stage: the four stages again, from scratch, under each ``quality.extra_seeds``, in this process."""
    summaries = []
    for seed in params.quality.extra_seeds:
        for stage in paths.STAGES:
            summary = run_stage(params, stage, progress, Chain.repeat(seed))
            print(f"seed {seed} {stage}: best epoch {summary.best_epoch} of {summary.epochs_run}, "
                  f"val {summary.monitor} {summary.best_value:.4f}", flush=True)
            summaries.append(summary)
    return summaries
