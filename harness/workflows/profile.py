"""Run the whole pipeline under a profile in a throw-away clone: keep its report, or gate it.

``python -m harness profile profiles/chatterbot.yaml`` copies this working tree (tracked and untracked files, not
ignored ones, not the committed results) into a fresh git repository, lays the profile over params.yaml, runs
``dvc repro`` there and copies the report, its plots and its metrics to ``reports/<profile name>/``. The clone
shares this checkout's embedding cache (``data/cache``, keyed by model, weights and text, so sharing is safe) and
``models/`` (optional local teachers such as the 768-d all-mpnet-base-v2 from ``scripts/get-mpnet.sh``).

``--gate`` judges the run against ``reports/baseline.json``'s baseline of the same name instead (CI:
``python -m harness profile profiles/tiny.yaml --gate``, ``make gate-tiny``); ``--update`` records that baseline.
A gated run shares nothing: it embeds every sentence afresh, as a fresh machine does (the cache cannot change a
figure, since an embedding depends on its sentence alone, but a gated run should not lean on that either).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from cube import atomic
from harness import paths
from harness.measure.revision_speed import head_revision
from harness.store.provenance import git_revision
from harness.store.results import ProfileRun

ROOT = paths.REPO
TINY = ROOT / "profiles" / "tiny.yaml"
RESULTS = ("reports/", "metrics/", "dvclive/", "dvc.lock")  # outputs of the default run, rebuilt in the clone


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


def make_workspace(dest: Path, overlay: Path = TINY, source: Path = ROOT) -> Path:
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
    run(["git", "commit", "-qm", f"profile {overlay.stem}"], dest)
    return dest


SHARED = ("data/cache", "models")  # reused by the clone through symlinks
KEPT = ("reports/*.md", "reports/*.png", "metrics/*.json")


def missing_local_teachers(overlay: Path) -> list[str]:
    """Teachers the profile names as folders under models/ that this checkout does not have."""
    models = (yaml.safe_load(overlay.read_text(encoding="utf-8")) or {}).get("teacher", {}).get("models", [])
    names = [m.get("name", "") for m in models if isinstance(m, dict)]
    return [name for name in names if name.startswith("models/") and not (ROOT / name).is_dir()]


def share(dest: Path) -> None:
    for name in SHARED:
        source = ROOT / name
        source.mkdir(parents=True, exist_ok=True)
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).symlink_to(source, target_is_directory=True)


def keep_results(dest: Path, out: Path, overlay: Path, revision: str, wall_seconds: float) -> None:
    """Copy the clone's report and metrics to ``out``; the report gets a line saying where it came from and how
    long the pipeline took, and ``profile_run.json`` the same facts."""
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for pattern in KEPT:
        for path in dest.glob(pattern):
            if path.name != "baseline.json":
                shutil.copy2(path, staging / path.name)
    run_facts = ProfileRun(profile=str(overlay.relative_to(ROOT)), revision=revision,
                           dvc_repro_wall_seconds=round(wall_seconds, 1), cpu_count=os.cpu_count())
    atomic.write_json(staging / "profile_run.json", run_facts.model_dump(mode="json"))
    report = staging / "report.md"
    origin = (f"> Profile `{overlay.relative_to(ROOT)}` laid over params.yaml, run by `python -m harness profile` "
              f"from revision {revision} in a throw-away clone (the provenance table's git revision is that "
              f"clone's single commit). The whole `dvc repro` took {wall_seconds / 60:.0f} min on "
              f"{os.cpu_count()} CPU cores.\n\n")
    report.write_text(origin + report.read_text(encoding="utf-8"), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness profile", description=__doc__.splitlines()[0])
    parser.add_argument("overlay", type=Path, help="a profile: params.yaml values to change (profiles/*.yaml)")
    parser.add_argument("--out", type=Path, help="where the report goes (default: reports/<profile name>)")
    parser.add_argument("--keep", type=Path, help="build the clone here and keep it (default: a temp dir)")
    parser.add_argument("--gate", action="store_true",
                        help="gate the run against reports/baseline.json's baseline of this profile instead of keeping it")
    parser.add_argument("--update", action="store_true", help="with --gate: record this profile's baseline instead")
    args = parser.parse_args(argv)
    overlay = args.overlay.resolve()
    if not overlay.is_file():
        print(f"error: no profile file {args.overlay}; profiles are in {ROOT / 'profiles'}", file=sys.stderr)
        return 2
    missing = missing_local_teachers(overlay)
    if missing:
        print(f"error: {args.overlay} uses the teacher folder(s) {', '.join(missing)}, not installed in {ROOT}; "
              "install it first (scripts/get-mpnet.sh puts all-mpnet-base-v2 in models/)", file=sys.stderr)
        return 2
    out = args.out or ROOT / "reports" / overlay.stem
    revision = git_revision()  # of the tree copied now, whatever is edited while the pipeline runs
    with tempfile.TemporaryDirectory(prefix=f"cube-{overlay.stem}-") as scratch:
        dest = args.keep or Path(scratch)
        if dest.exists() and any(dest.iterdir()):
            print(f"error: --keep {dest} is not empty (an earlier clone?); remove it or name another folder",
                  file=sys.stderr)
            return 2
        dest.mkdir(parents=True, exist_ok=True)
        print(f"profile {overlay.stem}: workspace {dest}", flush=True)
        make_workspace(dest, overlay)
        if not (args.gate or args.update):
            share(dest)  # a gated run embeds afresh, as CI does: cached embeddings can differ in the last bits
        began = time.perf_counter()
        repro = run([sys.executable, "-m", "dvc", "repro"], dest, check=False)
        wall_seconds = time.perf_counter() - began
        if repro.returncode:
            print(f"error: the pipeline under {args.overlay} failed in {dest} (dvc repro exit {repro.returncode}); "
                  f"{out} is left as it was. The end of DVC's output:\n{(repro.stdout + repro.stderr)[-3000:]}",
                  file=sys.stderr)
            return 1
        print(repro.stdout[-3000:], flush=True)
        if args.gate or args.update:
            return gate(dest, overlay.stem, args.update)
        keep_results(dest, out, overlay, revision, wall_seconds)
    print(f"report: {out / 'report.md'}")
    return 0


def gate(clone: Path, name: str, update: bool) -> int:
    """The regression gate on the clone's run against this checkout's baseline named ``name``; its exit status."""
    command = [sys.executable, "-m", "harness", "gate", "--profile", name, "--baseline",
               str(ROOT / "reports" / "baseline.json"), "--code-repo", str(ROOT)]
    if update:
        command.append("--update")
        revision = head_revision(ROOT)  # the clone's cube/ is this checkout's: HEAD's, when nothing in it changed
        if revision:
            command += ["--revision", revision]
    result = run(command, clone, check=False)
    print(result.stdout + result.stderr)
    return result.returncode
