"""What a reader needs to trust or reproduce a figure: code revision, params, libraries, device, seed."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from typing import Any

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


def provenance(params: Params, device: DeviceChoice) -> dict[str, Any]:
    return {
        "git_revision": git_revision(),
        "params_hash": params.params_hash(),
        "seed": params.seed,
        "deterministic_algorithms": params.train.deterministic,
        "device": str(device.device),
        "device_reason": device.reason,
        "cpu_threads": torch.get_num_threads(),
        "numerics": numerics.describe(),
        "libraries": library_versions(),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
