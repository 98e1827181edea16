"""This revision's cube against the baseline revision's, both timed here, in alternation: speed compared code with code.

The baseline's ``cube/`` is taken from git at the revision the baseline records (``git archive`` into a throw-away
folder); each revision's cube runs in a worker process of its own under this process's numerics
(``harness/measure/alternating.py``). A ratio is this revision's speed over the baseline revision's (below 1: this
revision is slower), with its 95% interval over the rounds. Figures from another machine never enter.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import cube
from harness.measure.alternating import Contender, ratios, time_alternating
from harness.measure.phases import PHASES
from harness.stats.paired import RatioEstimate

CODE = Path(cube.__file__).resolve().parent.parent  # the tree this process's cube comes from: this revision's


class RevisionUnavailable(RuntimeError):
    """The baseline's revision cannot be had here; the message says why and how to get it."""


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)


def head_revision(repo: Path) -> str | None:
    """HEAD of ``repo`` when its ``cube/`` is exactly HEAD's (nothing changed, nothing untracked), else None: only
    then is the revision the code that a baseline recorded now was measured with."""
    head = git(repo, "rev-parse", "HEAD")
    if head.returncode:
        return None
    changed = git(repo, "status", "--porcelain", "--untracked-files=all", "--", "cube")
    return None if changed.returncode or changed.stdout.strip() else head.stdout.decode().strip()


def export_cube(repo: Path, revision: str, dest: Path) -> Path:
    """``cube/`` as it is at ``revision`` in ``repo``, written under ``dest``; returns ``dest``."""
    if git(repo, "cat-file", "-e", f"{revision}^{{commit}}").returncode:
        shallow = git(repo, "rev-parse", "--is-shallow-repository").stdout.decode().strip() == "true"
        why = ("this is a shallow clone; fetch the history (`git fetch --unshallow`) or at least that commit"
               if shallow else "fetch it, or record a baseline on a revision this repository has (`make baseline`)")
        raise RevisionUnavailable(f"the baseline's revision {revision[:12]} is not in {repo}: {why}")
    archive = git(repo, "archive", "--format=tar", revision, "cube")
    if archive.returncode:
        raise RevisionUnavailable(f"git archive {revision[:12]} cube failed in {repo}: "
                                  f"{archive.stderr.decode(errors='replace')[-500:]}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def measure_revision_speed(revision: str, repo: Path, dim: int, cube_section: dict[str, Any], batch: int,
                           rounds: int, seed: int = 0, device: str = "cpu") -> dict[str, RatioEstimate]:
    """Per phase, this revision's cube speed over ``revision``'s at ``batch``: both cubes built from the same settings
    (``cube_section``), timed in alternation."""
    with tempfile.TemporaryDirectory(prefix="cube-baseline-code-") as scratch:
        baseline_code = export_cube(repo, revision, Path(scratch))
        points = [(phase, batch) for phase in PHASES]
        times = time_alternating(Contender("this revision", CODE), Contender("baseline revision", baseline_code),
                                 dim, cube_section, points, rounds, seed=seed, device=device,
                                 desc=f"gate: this cube against {revision[:12]}'s")
    found = ratios(times, own="this revision", other="baseline revision")
    return {phase: found[(phase, batch)] for phase in PHASES}
