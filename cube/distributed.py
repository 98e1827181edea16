"""Data-parallel training on PyTorch's own engine: torchrun, a process group, DistributedDataParallel.

A stage with ``train.distributed`` world size above 1 is re-launched through
``python -m torch.distributed.run`` (torchrun); each worker it starts finds itself
by the environment torchrun sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``). Every rank draws the same seeded permutation
and noise for each global batch and trains on its contiguous share of the rows;
the losses are written so that the ranks' parts add up to the single-process loss
of the whole global batch (see ``cube.losses.stage_loss``). Rank 0 alone
reads and writes checkpoints, logs and metrics; the others get its state by
broadcast.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from cube.config import ConfigError, DistributedConfig
from cube.device import DeviceError

TORCHRUN_VARIABLES = ("LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; the default is a lone process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, rows: int) -> slice:
        """This rank's contiguous share of ``rows`` rows: sizes differ by at most one, lower ranks first."""
        base, extra = divmod(rows, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    # -------------------------------------------------------- collectives (no-ops for a lone process)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled in memory between this run's own processes)."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def in_worker() -> bool:
    """True inside a process that torchrun (or another launcher setting its variables) started."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def world_from_env() -> World:
    if not in_worker():
        return World()
    return World(rank=int(os.environ.get("RANK", "0")), world_size=int(os.environ["WORLD_SIZE"]),
                 local_rank=int(os.environ["LOCAL_RANK"]))


def rank_seed(seed: int, rank: int) -> int:
    """A per-rank seed for rank-local randomness; rank 0 keeps ``seed`` (the single-process stream)."""
    return (seed + rank * 0x9E3779B97F4A7C15) % (2**63)


def resolve_backend(config: DistributedConfig, device: torch.device) -> str:
    """``auto``: NCCL for CUDA, gloo for the CPU; NCCL on the CPU is an error that names the fix."""
    if config.backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if config.backend == "nccl" and device.type != "cuda":
        raise DeviceError(
            f"train.distributed.backend is 'nccl' but training runs on {device} (NCCL needs CUDA GPUs); "
            "set train.distributed.backend to gloo or auto, or train on GPUs (train.device: cuda)"
        )
    return config.backend


def check_gpu_count(config: DistributedConfig, device: torch.device) -> None:
    """On CUDA each process on a node takes its own GPU: nproc_per_node must not exceed the GPUs there."""
    if device.type != "cuda":
        return
    visible = torch.cuda.device_count()
    if config.nproc_per_node > visible:
        raise DeviceError(
            f"train.distributed.nproc_per_node = {config.nproc_per_node} but this node has {visible} visible "
            f"GPU(s); set nproc_per_node to {visible} or fewer (one process per GPU)"
        )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def launch_command(config: DistributedConfig, module_args: list[str], port: int | None = None) -> list[str]:
    """The torchrun command line that runs ``python -m <module_args>`` on this node's processes."""
    port = port if port is not None else (config.master_port or free_port())
    return [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc_per_node={config.nproc_per_node}", f"--nnodes={config.nnodes}", f"--node_rank={config.node_rank}",
        f"--master_addr={config.master_addr}", f"--master_port={port}", "--max_restarts=0",
        "-m", *module_args,
    ]


@contextmanager
def process_group(config: DistributedConfig, device: torch.device) -> Iterator[World]:
    """Join the process group torchrun set up (and leave it afterwards); a lone process just gets ``World()``.

    A worker started with a world size other than params.yaml's is refused: DVC records the params, so
    they must say how the stage really ran.
    """
    world = world_from_env()
    if not world.distributed:
        yield world
        return
    if world.world_size != config.world_size:
        raise ConfigError(
            f"this process was launched with WORLD_SIZE={world.world_size}, but train.distributed says "
            f"nproc_per_node {config.nproc_per_node} x nnodes {config.nnodes} = {config.world_size}; "
            "make them agree (launch with `python -m harness train <stage>`, which starts torchrun itself)"
        )
    backend = resolve_backend(config, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30),
                            device_id=device if backend == "nccl" else None)
    try:
        yield world
        dist.barrier()
    finally:
        dist.destroy_process_group()


def worker_device(device: torch.device, world: World) -> torch.device:
    """On CUDA each process of a node drives the GPU of its local rank."""
    if device.type != "cuda" or not world.distributed:
        return device
    if world.local_rank >= torch.cuda.device_count():
        raise DeviceError(
            f"local rank {world.local_rank} has no GPU of its own ({torch.cuda.device_count()} visible); "
            "set train.distributed.nproc_per_node to the number of GPUs on the node"
        )
    return torch.device("cuda", world.local_rank)
