"""``python -m harness compare`` (``make compare``): DVC's experiments side by side in one screen.

Reads ``dvc exp show --json`` and prints a markdown table: each experiment's name, the params.yaml settings that
differ between the rows (the ones swept), the chosen stage's validation MRR (what experiments are chosen on) and
test figures (for reading), and training speed, sorted by validation MRR. Rows without results (queued, running,
failed) are listed last with their state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

SPEED = "train samples/s"
FIGURES = (("metrics/quality.json", "val_mrr", "val MRR"), ("metrics/quality.json", "test_mrr", "test MRR"),
           ("metrics/quality.json", "test_recall@1", "test R@1"),
           ("metrics/quality.json", "mrr_minus_linear", "MRR - linear"),
           ("metrics/speed.json", "train_samples_per_s", SPEED))
MAX_PARAMS = 6  # with the name and the figures, about 12 columns


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def short(rev: str) -> str:
    """A commit's short hash; other revisions (``workspace``) as they are."""
    return rev[:7] if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev) else rev


def rows_of(shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per workspace, commit and experiment: its name, params.yaml settings and figures. A queued or running
    experiment has no figures of its own yet (DVC may show those its workspace started from), so none are shown."""
    rows = []

    def add(entry: dict[str, Any], name: str, executor_state: str | None = None) -> None:
        data = entry.get("data") or {}
        params = flatten(((data.get("params") or {}).get("params.yaml") or {}).get("data") or {})
        metrics = {file: (found or {}).get("data") or {} for file, found in (data.get("metrics") or {}).items()}
        figures = {label: metrics.get(file, {}).get(key) for file, key, label in FIGURES}
        if executor_state in ("queued", "running"):
            figures, state = dict.fromkeys(figures), executor_state
        else:
            state = "ok" if figures["val MRR"] is not None else ("failed" if entry.get("error") else "no results")
        rows.append({"name": name, "rev": str(entry.get("rev", "")), "params": params, "figures": figures,
                     "state": state, "speed_measured": True})

    for top in shown:
        add(top, top.get("name") or short(str(top.get("rev", ""))))
        for experiment in top.get("experiments") or []:
            executor_state = (experiment.get("executor") or {}).get("state")
            for rev in experiment.get("revs") or []:
                add(rev, rev.get("name") or experiment.get("name") or short(str(rev.get("rev", ""))), executor_state)
    return rows


def bench_settings(lock_text: str | None) -> dict[str, Any] | None:
    """The params.yaml values the bench stage last ran under, by a dvc.lock; None where it never ran."""
    if not lock_text:
        return None
    stage = (yaml.safe_load(lock_text).get("stages") or {}).get("bench") or {}
    settings = (stage.get("params") or {}).get("params.yaml")
    return None if settings is None else flatten(settings)


def blank_unmeasured_speed(rows: list[dict[str, Any]], lock_of: Callable[[str], str | None]) -> None:
    """An experiment run up to ``evaluate`` carries its workspace's speed file, measured under other settings: its
    speed is blanked unless its dvc.lock says the bench ran under the row's own settings."""
    for row in rows:
        if row["figures"][SPEED] is None:
            continue
        settings = bench_settings(lock_of(row["rev"]))
        if settings is None or any(row["params"].get(key) != value for key, value in settings.items()):
            row["figures"][SPEED], row["speed_measured"] = None, False


def lock_at(rev: str) -> str | None:
    """dvc.lock in the workspace or at a commit (experiments are commits too)."""
    if rev == "workspace":
        path = Path("dvc.lock")
        return path.read_text(encoding="utf-8") if path.exists() else None
    shown = subprocess.run(["git", "show", f"{rev}:dvc.lock"], capture_output=True, text=True, check=False)
    return shown.stdout if shown.returncode == 0 else None


def swept(rows: list[dict[str, Any]]) -> list[str]:
    """The settings whose values differ between rows, in params.yaml order."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["params"] if k not in keys]
    return [k for k in keys if len({json.dumps(r["params"].get(k)) for r in rows}) > 1]


def table(rows: list[dict[str, Any]]) -> str:
    keys = swept(rows)
    hidden = keys[MAX_PARAMS:]
    keys = keys[:MAX_PARAMS]
    ranked = sorted(rows, key=lambda r: (r["state"] != "ok", -(r["figures"]["val MRR"] or 0.0)))
    header = ["experiment", *keys, *[label for _, _, label in FIGURES]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in ranked:
        cells = [row["name"] + ("" if row["state"] == "ok" else f" ({row['state']})")]
        cells += [json.dumps(row["params"].get(k)) if isinstance(row["params"].get(k), list) else
                  str(row["params"].get(k, "")) for k in keys]
        for _, _, label in FIGURES:
            value = row["figures"][label]
            cells.append("" if value is None else f"{value:,.0f}" if label.endswith("/s") else f"{value:+.4f}"
                         if label.startswith("MRR -") else f"{value:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    if hidden:
        text += f"\n\n{len(hidden)} more swept setting(s) not shown: {', '.join(hidden)}"
    if not all(row["speed_measured"] for row in rows):
        text += (f"\n\n{SPEED} is blank where the bench did not run under the row's own settings (an experiment run "
                 "up to `evaluate`); `dvc exp run ... bench` measures it.")
    return text + "\n\nSorted by validation MRR (what a stage and an experiment are chosen on); test is for reading."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness compare", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--commits", type=int, default=1, metavar="N",
                        help="experiments of the last N commits (default 1: HEAD's, as `dvc exp show`); an experiment "
                             "run before a later commit is listed with -n 2 or more")
    args = parser.parse_args(argv)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json", "-n", str(args.commits)],
                           capture_output=True, text=True, env=env, check=False)
    if shown.returncode:
        print(f"error: dvc exp show failed:\n{shown.stderr.strip()}", file=sys.stderr)
        return 2
    rows = rows_of(json.loads(shown.stdout))
    blank_unmeasured_speed(rows, lock_at)
    if not any(row["state"] == "ok" for row in rows):
        print("compare: no run with results yet; run `make repro` or `python -m harness exp run -S key=value` first",
              file=sys.stderr)
        return 2
    print(table(rows))
    return 0
