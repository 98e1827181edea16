"""Two cubes timed in alternation, each in a worker process of its own: another code or other numerics, same machine.

What differs between the two is what a process is made of (the cube package it imports, the CPU code paths pinned
before torch loads), so each runs in its own ``cube_worker`` process; they are asked in turn (A B, B A, ...), one
block of calls at a time, and only one computes at any moment. Load from elsewhere lands on both alike, and the
ratio of their per-round times, with its interval over the rounds (``harness.stats.paired.ratio_interval``), says
how much faster one is than the other.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from harness.measure import cube_worker
from harness.stats import paired


@dataclass(frozen=True)
class Contender:
    """One side of a comparison: the tree whose ``cube/`` is timed, and the environment its process starts with
    (None: this process's)."""

    name: str
    code: Path
    env: Mapping[str, str] | None = None


class WorkerFailed(RuntimeError):
    """A worker process died or answered nonsense; the message holds the end of its error output."""


class Worker:
    def __init__(self, contender: Contender, dim: int, cube_section: dict[str, Any], seed: int, device: str,
                 warmup: int) -> None:
        self.contender = contender
        self.errors: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, cube_worker.__file__, "--code", str(contender.code), "--dim", str(dim),
             "--cube", json.dumps(cube_section), "--seed", str(seed), "--device", device, "--warmup", str(warmup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True,
            env=None if contender.env is None else dict(contender.env))
        self.ready = self._answer()

    def _answer(self) -> dict[str, Any]:
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            self.process.wait()
            self.errors.seek(0)
            raise WorkerFailed(f"the timing worker for {self.contender.name} ({self.contender.code}) stopped "
                               f"(exit {self.process.returncode}):\n{self.errors.read()[-2000:]}")
        return json.loads(line)

    def time(self, phase: str, batch: int, calls: int) -> list[float]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"phase": phase, "batch": batch, "calls": calls}) + "\n")
        self.process.stdin.flush()
        return self._answer()["seconds"]

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.write(json.dumps({"quit": True}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
        self.errors.close()


def time_alternating(first: Contender, second: Contender, dim: int, cube_section: dict[str, Any],
                     points: Sequence[tuple[str, int]], rounds: int, calls: int = 3, seed: int = 0,
                     device: str = "cpu", warmup: int = 3, desc: str = "bench: alternating") -> dict[
                         tuple[str, int], dict[str, list[float]]]:
    """Seconds per call (the median of ``calls`` calls) of each contender at each (phase, batch), once per round,
    the two asked in turn and the order swapped every round."""
    workers: list[Worker] = []
    try:
        for contender in (first, second):
            workers.append(Worker(contender, dim, cube_section, seed, device, warmup))
        times = {point: {w.contender.name: [] for w in workers} for point in points}
        for round_index in tqdm(range(rounds), desc=desc, unit="round"):
            order = workers if round_index % 2 == 0 else workers[::-1]
            for phase, batch in points:
                for worker in order:
                    seconds = worker.time(phase, batch, calls)
                    times[(phase, batch)][worker.contender.name].append(statistics.median(seconds))
        return times
    finally:
        for worker in workers:
            worker.close()


def ratios(times: dict[tuple[str, int], dict[str, list[float]]], own: str,
           other: str) -> dict[tuple[str, int], paired.RatioEstimate]:
    """How many times faster ``own`` is than ``other`` at each point (other's time over own's), with intervals."""
    return {point: paired.ratio_interval(by_name[own], by_name[other]) for point, by_name in times.items()}
