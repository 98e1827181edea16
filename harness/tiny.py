"""The tiny profile in a throw-away git repository: CI's pipeline run and regression gate.

``python -m harness.tiny [--update] [--keep DIR]`` copies this working tree (tracked and
untracked files, not ignored ones, not the committed results), applies ``profiles/tiny.yaml``
to params.yaml, runs ``dvc repro`` there and then the gate against this repository's
``reports/baseline.json`` (``--update`` records the tiny profile's baseline instead).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OVERLAY = ROOT / "profiles" / "tiny.yaml"
RESULTS = ("reports/", "metrics/", "dvclive/", "dvc.lock")  # outputs of the default run, rebuilt in the copy


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` laid over ``base``, nested mappings merged key by key."""
    for key, value in changes.items():
        base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run with this interpreter's environment first on PATH (dvc stages call `python -m harness`)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}) in {cwd}:\n{result.stdout}\n{result.stderr}")
    return result


def make_workspace(dest: Path, overlay: Path = OVERLAY, source: Path = ROOT) -> Path:
    """A fresh git repository at ``dest`` holding this tree with the overlay applied to params.yaml."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], source).stdout.split("\0")
    for name in filter(None, listed):
        path = source / name
        if path.is_file() and not name.startswith(RESULTS):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / name)
    params = merge(yaml.safe_load((dest / "params.yaml").read_text(encoding="utf-8")),
                   yaml.safe_load(overlay.read_text(encoding="utf-8")))
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    run(["git", "init", "-q"], dest)
    run(["make", "git-identity"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "tiny profile"], dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="record the tiny profile's baseline instead of gating")
    parser.add_argument("--keep", type=Path, help="build the workspace here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cube-tiny-") as scratch:
        dest = args.keep or Path(scratch)
        dest.mkdir(parents=True, exist_ok=True)
        print(f"tiny profile workspace: {dest}", flush=True)
        make_workspace(dest)
        print(run([sys.executable, "-m", "dvc", "repro"], dest).stdout[-2000:], flush=True)
        gate = [sys.executable, "-m", "harness", "gate", "--profile", "tiny", "--baseline",
                str(ROOT / "reports" / "baseline.json")]
        result = run(gate + (["--update"] if args.update else []), dest, check=False)
        print(result.stdout + result.stderr)
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
