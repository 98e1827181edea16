"""What a reader needs to trust or reproduce a figure: code revision, params, libraries, device, seed."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime

import torch

from cube import numerics
from cube.device import DeviceChoice
from harness.config import Params


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        # pipeline outputs (lock file, metrics, logs, reports) change during a run; only sources count
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!dvc.lock", ":!metrics", ":!dvclive", ":!reports"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return rev + (" (with uncommitted changes)" if dirty else "")


def library_versions() -> dict[str, str]:
    import transformers

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torch_cuda": str(torch.version.cuda), "transformers": transformers.__version__}
    for name in ("dvc", "dvclive", "safetensors", "numpy"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - absent optional tools are reported, not fatal
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class Provenance:
    """Where a report's figures come from: code, params, seed, device, numerics, libraries, when."""

    git_revision: str
    params_hash: str
    seed: int
    deterministic_algorithms: bool
    device: str
    device_reason: str
    cpu_threads: int
    numerics: numerics.NumericsInForce
    libraries: dict[str, str]
    written_at: str


def provenance(params: Params, device: DeviceChoice) -> Provenance:
    return Provenance(git_revision=git_revision(), params_hash=params.params_hash(), seed=params.seed,
                      deterministic_algorithms=params.train.deterministic, device=str(device.device),
                      device_reason=device.reason, cpu_threads=torch.get_num_threads(), numerics=numerics.describe(),
                      libraries=library_versions(), written_at=datetime.now(UTC).isoformat(timespec="seconds"))
