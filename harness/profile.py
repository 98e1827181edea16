"""Run the whole pipeline under another profile in a throw-away clone and keep its report.

``python -m harness.profile profiles/chitchat.yaml`` copies this working tree, applies the overlay to
params.yaml (as ``harness.tiny`` does), runs ``dvc repro`` there and copies the report, its plots and
its metrics to ``reports/<profile name>/``. The clone shares this checkout's embedding cache
(``data/cache``, keyed by model, weights and text, so sharing is safe) and ``models/`` (optional local
teachers such as the 768-d all-mpnet-base-v2 from ``scripts/get-mpnet.sh``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from harness.provenance import git_revision
from harness.tiny import ROOT, make_workspace, run

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


def keep_results(dest: Path, out: Path, overlay: Path, revision: str) -> None:
    """Copy the clone's report and metrics to ``out``; the report gets a line saying where it came from."""
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for pattern in KEPT:
        for path in dest.glob(pattern):
            if path.name != "baseline.json":
                shutil.copy2(path, staging / path.name)
    report = staging / "report.md"
    origin = (f"> Profile `{overlay.relative_to(ROOT)}` laid over params.yaml, run by `python -m harness.profile` "
              f"from revision {revision} in a throw-away clone (the provenance table's git revision is that "
              "clone's single commit).\n\n")
    report.write_text(origin + report.read_text(encoding="utf-8"), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.profile", description=__doc__.splitlines()[0])
    parser.add_argument("overlay", type=Path, help="a profile: params.yaml values to change (profiles/*.yaml)")
    parser.add_argument("--out", type=Path, help="where the report goes (default: reports/<profile name>)")
    parser.add_argument("--keep", type=Path, help="build the clone here and keep it (default: a temp dir)")
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
        share(dest)
        repro = run([sys.executable, "-m", "dvc", "repro"], dest, check=False)
        if repro.returncode:
            print(f"error: the pipeline under {args.overlay} failed in {dest} (dvc repro exit {repro.returncode}); "
                  f"{out} is left as it was. The end of DVC's output:\n{(repro.stdout + repro.stderr)[-3000:]}",
                  file=sys.stderr)
            return 1
        print(repro.stdout[-3000:], flush=True)
        keep_results(dest, out, overlay, revision)
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
