"""``reports/baseline.json``, the gate's baselines: read, written in their reading layout, and their profile names."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from cube import atomic
from harness import paths
from harness.store.results import GateBaselines


class GateError(RuntimeError):
    """The gate cannot compare (no baseline for this profile, unreadable metrics)."""


def baseline_text(baselines: GateBaselines) -> str:
    """baseline.json: indented for reading in a diff, except the per-pair scores, one line per profile."""
    stored = baselines.model_dump(mode="json")
    shown: dict[str, Any] = {"profiles": {}}
    compact: dict[str, str] = {}
    for name, entry in stored["profiles"].items():
        placeholder = f"@pairs of {name}"
        compact[json.dumps(placeholder)] = json.dumps(entry.get("pairs", {}), separators=(",", ":"), sort_keys=True)
        shown["profiles"][name] = entry | {"pairs": placeholder}
    text = json.dumps(shown, indent=2, ensure_ascii=False, sort_keys=True)
    for placeholder, pairs in compact.items():
        text = text.replace(placeholder, pairs)
    return text + "\n"


def read_baselines(path: Path) -> GateBaselines:
    """The committed baselines, or none yet (the first ``--update`` writes the file)."""
    if not path.exists():
        return GateBaselines(profiles={})
    try:
        return GateBaselines.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise GateError(f"{path} is not a gate baseline file ({str(error)[:500]}); restore it from git") from None


def write_baselines(path: Path, baselines: GateBaselines) -> None:
    atomic.write_text(path, baseline_text(baselines))


def check_profile_name(profile: str, baseline_path: Path, known: list[str], update: bool) -> None:
    """A profile with no baseline yet: refused with the nearest known name, unless it is a real profile being recorded
    (``default`` or ``profiles/<name>.yaml``), so a typo never records a baseline under the wrong name."""
    real = profile == "default" or (paths.PROFILES / f"{profile}.yaml").is_file()
    if update and real:
        return
    names = sorted({*known, *(p.stem for p in paths.PROFILES.glob("*.yaml"))} - {profile})
    nearest = difflib.get_close_matches(profile, names, 1)
    hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
    if not real:
        raise GateError(f"no profile {profile!r}: neither 'default' nor profiles/{profile}.yaml.{hint} "
                        f"Baselines in {baseline_path}: {', '.join(known) or 'none'}")
    raise GateError(f"{baseline_path} has no baseline for profile {profile!r} (known: {', '.join(known) or 'none'})."
                    f"{hint} To make this run its first baseline, check this run's report, then run `python -m harness "
                    f"gate --profile {profile} --update` and commit {baseline_path}")
