"""``python -m harness exp run [dvc exp run options]``: every ``-S`` checked against params.yaml's schema before DVC
runs anything, then ``dvc exp run`` with the same arguments.

DVC applies ``-S`` itself and, for a key params.yaml lacks, answers in Hydra's words ("Could not override ... use
+key") or, with ``+key``, fails deep in a stage; a bad value deletes the check stage's output before failing. Here
each override (sweeps included: ``a,b,c``, ``range(start, stop[, step])``, ``choice(a, b)``) is laid over
params.yaml and validated by the same loader the pipeline uses, so a typo gets the nearest valid key and a bad
value its allowed range, and nothing in the workspace is touched.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from cube.config import ConfigError
from cube.reshaper import LatticeSizeError
from cube.teachers import TeacherError
from harness.config import params_from_dict
from harness.stages.check import check_lattice_fits_teacher

SWEEP = re.compile(r"^(range|choice)\((.*)\)$")


class OverrideError(ValueError):
    """A ``-S`` that DVC could not apply or the params schema refuses."""


def overrides(argv: list[str]) -> list[str]:
    """The ``-S``/``--set-param`` values of a ``dvc exp run`` command line."""
    found = []
    for i, arg in enumerate(argv):
        if arg in ("-S", "--set-param") and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--set-param="):
            found.append(arg.split("=", 1)[1])
        elif arg.startswith("-S") and len(arg) > 2:
            found.append(arg[2:])
    return found


def values(text: str) -> list[Any]:
    """Every value one override stands for: a sweep's members, or the single value, parsed as YAML as DVC does."""
    sweep = SWEEP.match(text.strip())
    if sweep and sweep.group(1) == "range":
        bounds = [int(part) for part in sweep.group(2).split(",")]
        return list(range(*bounds))
    items = sweep.group(2).split(",") if sweep else _split_top_level(text)
    return [yaml.safe_load(item.strip()) if item.strip() else None for item in items]


def _split_top_level(text: str) -> list[str]:
    """``a,b`` -> [a, b], but ``[8, 8, 6]`` stays one value."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]


def apply(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``raw`` with the dotted ``key`` set to ``value`` (intermediate sections created, so an unknown key reaches the
    schema and is named there)."""
    changed = copy.deepcopy(raw)
    node = changed
    *parents, leaf = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value
    return changed


def check_overrides(params_file: Path, given: list[str]) -> None:
    """Raise OverrideError for the first override the schema refuses, naming it, its key's nearest valid spelling or
    the allowed values."""
    raw = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
    for text in given:
        left, sep, value = text.partition("=")
        target, _, key = left.rpartition(":")  # DVC's optional "file:" before the key
        if target and Path(target).name != params_file.name:
            raise OverrideError(f"-S {text}: the pipeline's params live in {params_file.name}, not {target}")
        if key.startswith("~"):
            continue  # removing a key leaves its default, which the schema has
        key = key.lstrip("+")
        if not sep or not key:
            raise OverrideError(f"-S {text}: expected key=value, e.g. -S cube.steps=20")
        for member in values(value):
            try:
                check_lattice_fits_teacher(params_from_dict(apply(raw, key, member), f"-S {key}={member}"))
            except (ConfigError, LatticeSizeError, TeacherError) as err:
                raise OverrideError(f"-S {key}={member}: {err}" if isinstance(err, LatticeSizeError) else str(err)) \
                    from None


def run(argv: list[str], params_file: Path = Path("params.yaml")) -> int:
    """Check every override, then hand the command line to ``dvc exp run``; its exit status."""
    if not argv or argv[0] != "run":
        print("usage: python -m harness exp run [dvc exp run options, e.g. -S cube.steps=20 --queue]", file=sys.stderr)
        return 2
    try:
        check_overrides(params_file, overrides(argv[1:]))
    except OverrideError as err:
        print(f"error: {err}\nnothing was run and the workspace is unchanged", file=sys.stderr)
        return 2
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([sys.executable, "-m", "dvc", "exp", *argv], env=env, check=False).returncode
