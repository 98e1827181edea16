"""CubeTrainer: one training stage of the cube, batched, checkpointed every epoch, resumable.

Randomness is derived from (seed, epoch) at the start of every epoch, so an epoch
re-run after a kill draws exactly the batches and noise it drew the first time:
on CPU a resumed run ends with the metrics of an uninterrupted one.

Under torchrun (``world`` with more than one process) the model is wrapped in
DistributedDataParallel; every rank draws the same order and noise for each global
batch and trains on its share of the rows (``cube.distributed``). Rank 0 validates
and broadcasts the result, and alone reads and writes checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cube.checkpoint import Checkpoint, has_checkpoint, load_checkpoint, save_checkpoint
from cube.config import ConfigError, StageConfig, to_plain
from cube.device import OutOfDeviceMemory, out_of_memory_message
from cube.digest import json_digest, library_digest
from cube.distributed import World, rank_seed
from cube.embedded import EmbeddedData
from cube.losses import curriculum_subset, stage_loss
from cube.processor import EmbeddingProcessor, Mode

log = logging.getLogger(__name__)
EVAL_CHUNK = 4096


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    stage: str
    history: list[dict[str, Any]]
    best_epoch: int
    best_value: float
    monitor: str
    epochs_run: int
    stopped_early: bool
    resumed_from_epoch: int | None
    start_val: dict[str, float] = field(default_factory=dict)  # validation of the weights the stage started from

    @property
    def best_record(self) -> dict[str, Any] | None:
        """The record of the epoch whose weights the stage kept; None when no epoch beat its starting point."""
        return next((r for r in self.history if r["epoch"] == self.best_epoch), None)

    @property
    def train_losses(self) -> list[float]:
        """Each epoch's training loss, in order."""
        return [r["train_loss"] for r in self.history]


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Model outputs for ``inputs`` in chunks, on the CPU, in float32."""
    model.eval()
    outputs = [model(chunk.to(device)).float().cpu() for chunk in inputs.split(EVAL_CHUNK)]
    return torch.cat(outputs) if outputs else inputs.clone()


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "state": scalars}


def _unflatten_optimizer(checkpoint: Checkpoint) -> dict[str, Any]:
    meta = checkpoint.meta["optimizer"]
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["state"].items()}
    for name, tensor in checkpoint.group("optim").items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


class CubeTrainer:
    """Trains ``model`` for one stage on ``data``; ``checkpoint_dir`` makes it resumable.

    ``model`` is the cube or any other question -> answer map trained like it (the trainable baselines): a module
    with ``mode``, ``dim`` and ``config`` attributes, as ``EmbeddingProcessor`` has.
    """

    def __init__(
        self,
        model: EmbeddingProcessor,
        stage: str,
        config: StageConfig,
        data: EmbeddedData,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        checkpoint_dir: str | Path | None = None,
        fingerprint: str = "",
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        progress: bool = False,
        world: World | None = None,
    ) -> None:
        self.model = model.to(device)
        self.world = world or World()
        self.stage = stage
        self.config = config
        self.data = data
        self.seed = seed
        self.device = torch.device(device)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.on_epoch = on_epoch
        self.progress = progress
        self.monitor = "reconstruction_cosine" if model.mode is Mode.AUTOENCODER else config.monitor
        self.start_val: dict[str, float] = {}
        self.resume_key = self._resume_key(fingerprint)
        self.optimizer = self._make_optimizer()
        self.scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience
            )
            if config.scheduler == "plateau" else None
        )
        self.inputs, self.targets, self.difficulty = self._training_set()
        self.ddp = None
        if self.world.distributed:  # a collective: every rank builds its trainer at the same point
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None)

    # ------------------------------------------------------------ set-up

    def _resume_key(self, fingerprint: str) -> str:
        identity = {
            "stage": self.stage, "stage_config": to_plain(self.config), "cube": to_plain(self.model.config),
            "dim": self.model.dim, "mode": self.model.mode.value, "seed": self.seed, "fingerprint": fingerprint,
            "code": library_digest(),
        }
        return json_digest(identity)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        kind = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
        return kind(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _training_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.model.mode is Mode.AUTOENCODER:
            sentences = self.data.sentences
            return sentences, sentences, torch.zeros(len(sentences))
        train = self.data.train
        inputs, targets, difficulty = train.questions, train.answers, train.difficulty()
        threshold = self.config.semantic_similarity_threshold
        if threshold is not None:
            keep = (1.0 - difficulty) >= threshold
            if not keep.any():
                raise ConfigError(
                    f"train.{self.stage}.semantic_similarity_threshold = {threshold} leaves no training pairs "
                    f"(highest teacher cos(q, a) is {float((1 - difficulty).max()):.3f}); lower it or set it to null"
                )
            inputs, targets, difficulty = inputs[keep], targets[keep], difficulty[keep]
        return inputs, targets, difficulty

    # ------------------------------------------------------------ evaluation

    def corrupt(self, inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The denoising corruption: Gaussian noise, then input dropout (as configured)."""
        if self.config.noise_std:
            inputs = inputs + self.config.noise_std * torch.randn(inputs.shape, generator=generator)
        if self.config.input_dropout:
            keep = torch.rand(inputs.shape, generator=generator) >= self.config.input_dropout
            inputs = inputs * keep / (1.0 - self.config.input_dropout)
        return inputs

    def _validate_on_main(self) -> dict[str, float]:
        """Rank 0 validates, every rank gets its numbers (so schedules and early stopping stay in step)."""
        return self.world.broadcast(self.validate() if self.world.is_main else None)

    def validate(self) -> dict[str, float]:
        """Question -> answer metrics on val; for the autoencoder also denoising of val sentences
        corrupted the same way every epoch (``noisy_cosine`` is what doing nothing scores)."""
        val = self.data.val
        result = val.score(predict(self.model, val.questions, self.device))
        if self.model.mode is Mode.AUTOENCODER:
            clean = torch.cat([val.questions, val.answers])
            noisy = self.corrupt(clean, torch.Generator().manual_seed(epoch_seed(self.seed, -1)))
            rebuilt = predict(self.model, noisy, self.device)
            result["reconstruction_cosine"] = float(F.cosine_similarity(rebuilt, clean, dim=-1).mean())
            result["noisy_cosine"] = float(F.cosine_similarity(noisy, clean, dim=-1).mean())
        return result

    # ------------------------------------------------------------ checkpoints

    def _save(self, epoch: int, history: list[dict[str, Any]], best: dict[str, Any], done: bool) -> None:
        if self.checkpoint_dir is None or not self.world.is_main:
            return
        optim_tensors, optim_meta = _flatten_optimizer(self.optimizer.state_dict())
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"best.{k}": v for k, v in best["state"].items()})
        tensors.update(optim_tensors)
        meta = {
            "code_sha256": library_digest(), "stage": self.stage, "epoch": epoch, "completed": done,
            "resume_key": self.resume_key, "seed": self.seed, "dim": self.model.dim,
            "mode": self.model.mode.value, "cube": to_plain(self.model.config),
            "stage_config": to_plain(self.config), "monitor": self.monitor,
            "best_epoch": best["epoch"], "best_value": best["value"], "since_best": best["since"],
            "start_val": self.start_val,
            # wall times stay out of the checkpoint, which later stages depend on: an identical re-run writes the same file
            "history": [{k: v for k, v in r.items() if k != "seconds"} for r in history], "optimizer": optim_meta,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "rng": {"scheme": "torch.manual_seed(epoch_seed(seed, epoch)) at each epoch start", "next_epoch": epoch + 1},
        }
        save_checkpoint(self.checkpoint_dir, tensors, meta)

    def _resume(self) -> tuple[int, list[dict[str, Any]], dict[str, Any], bool] | None:
        checkpoint = None
        if self.world.is_main and self.checkpoint_dir is not None and has_checkpoint(self.checkpoint_dir):
            checkpoint = load_checkpoint(self.checkpoint_dir)
            if checkpoint.meta.get("resume_key") != self.resume_key:
                log.info("checkpoint in %s is from other params; stage %s starts afresh", self.checkpoint_dir, self.stage)
                checkpoint = None
        checkpoint = self.world.broadcast(checkpoint)  # the other ranks resume from rank 0's checkpoint
        if checkpoint is None:
            return None
        meta = checkpoint.meta
        self.start_val = dict(meta.get("start_val", {}))
        self.model.load_state_dict(checkpoint.group("model"))
        self.optimizer.load_state_dict(_unflatten_optimizer(checkpoint))
        if self.scheduler and meta.get("scheduler"):
            self.scheduler.load_state_dict(meta["scheduler"])
        best = {"epoch": meta["best_epoch"], "value": meta["best_value"], "since": meta["since_best"],
                "state": checkpoint.group("best")}
        return meta["epoch"], meta["history"], best, bool(meta["completed"])

    # ------------------------------------------------------------ the loop

    def _autocast(self):  # noqa: ANN202
        if self.config.autocast == "none" or self.device.type != "cuda":
            return nullcontext()
        dtype = torch.bfloat16 if self.config.autocast == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"stage {self.stage!r}: loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                "the last good checkpoint is kept; lower train."
                f"{self.stage}.lr or set grad_clip"
            )

    def _update(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()

    def _step(self, inputs: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, dict]:
        """Forward, loss, backward and optimizer step on one global batch (``inputs``, ``targets``: all of it), with
        this process's share of the rows (all of them in one process). The loss value, its parts and the NaN check
        are the global batch's, the same in every process."""
        world = self.world
        rows = world.shard(len(targets))
        local = inputs[rows] if rows.stop > rows.start else inputs[:1]  # no rows: one ignored row, weight 0
        with self._autocast():
            model = self.ddp if self.ddp is not None else self.model
            pred = model(local.to(self.device)).float()
            total, parts = stage_loss(pred, targets.to(self.device), self.config, rows, world.world_size,
                                      world.all_reduce_sum)
        values = world.all_reduce_sum(torch.stack([total.detach(), *(p.detach() for p in parts.values())]))
        loss = values[0]
        self._check_finite(loss, epoch, step)  # the same global value in every process: all stop together
        self._update(total * world.world_size)  # DDP averages gradients over the processes; the parts were sums
        return loss, {name: float(value) for name, value in zip(parts, values[1:])}

    def _train_epoch(self, epoch: int) -> tuple[float, dict[str, float], int]:
        torch.manual_seed(rank_seed(epoch_seed(self.seed, epoch), self.world.rank))  # rank-local randomness
        # shared draws: every rank takes the same order and noise for the global batch, then its rows
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        subset = curriculum_subset(self.difficulty, epoch, self.config)
        order = subset[torch.randperm(len(subset), generator=generator)]
        (self.ddp if self.ddp is not None else self.model).train()
        total, parts_total, batches = 0.0, {}, 0
        for step, batch in enumerate(order.split(self.config.batch_size)):
            inputs = self.corrupt(self.inputs[batch], generator)
            targets = self.targets[batch]
            try:
                loss, parts = self._step(inputs, targets, epoch, step)
            except torch.OutOfMemoryError:
                raise OutOfDeviceMemory(out_of_memory_message(
                    f"stage {self.stage!r}, epoch {epoch + 1}, step {step + 1}", self.config.batch_size, self.device,
                    f"train.{self.stage}.batch_size")) from None
            total += loss.item()
            for name, value in parts.items():
                parts_total[name] = parts_total.get(name, 0.0) + value
            batches += 1
        return total / max(batches, 1), {k: v / max(batches, 1) for k, v in parts_total.items()}, len(subset)

    def fit(self) -> TrainResult:
        resumed = self._resume()
        if resumed is None:
            first_epoch, history, stopped_early = 0, [], False
            self.start_val = self._validate_on_main()  # epoch 0: the model before this stage trains
            best = {"epoch": 0, "value": self.start_val[self.monitor], "since": 0,
                    "state": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}
            resumed_from = None
        else:
            last_epoch, history, best, completed = resumed
            first_epoch, resumed_from = last_epoch, last_epoch
            for record in history if self.on_epoch else []:  # loggers see the whole run, restored epochs replayed
                self.on_epoch(record)
            stopped_early = completed and last_epoch < self.config.epochs
            if completed:
                first_epoch = self.config.epochs
        bar = tqdm(total=self.config.epochs, initial=first_epoch, desc=f"training {self.stage}", unit="epoch",
                   disable=not self.progress or not self.world.is_main)
        for epoch in range(first_epoch, self.config.epochs):
            if stopped_early:
                break
            tick = time.perf_counter()
            loss, parts, used = self._train_epoch(epoch)
            val = self._validate_on_main()
            value = val[self.monitor]
            if self.scheduler:
                self.scheduler.step(value)
            improved = value > best["value"]
            if improved:
                best = {"epoch": epoch + 1, "value": value, "since": 0,
                        "state": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}
            else:
                best["since"] += 1
            record = {"epoch": epoch + 1, "train_loss": loss, **{f"loss/{k}": v for k, v in parts.items()},
                      **{f"val/{k}": v for k, v in val.items()}, "lr": self.optimizer.param_groups[0]["lr"],
                      "pairs_used": used, "seconds": time.perf_counter() - tick}
            history.append(record)
            patience = self.config.early_stopping_patience
            stopped_early = bool(patience and best["since"] >= patience)
            done = stopped_early or epoch + 1 == self.config.epochs
            self._save(epoch + 1, history, best, done)
            if self.on_epoch:
                self.on_epoch(record)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", **{self.monitor: f"{value:.4f}"})
        bar.close()
        self.model.load_state_dict(best["state"])
        return TrainResult(
            stage=self.stage, history=history, best_epoch=best["epoch"], best_value=best["value"],
            monitor=self.monitor, epochs_run=len(history), stopped_early=stopped_early,
            resumed_from_epoch=resumed_from, start_val=self.start_val,
        )
