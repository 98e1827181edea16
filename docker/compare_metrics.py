#!/usr/bin/env python3
"""Compare two metrics files (e.g. metrics/evaluate.json from a run in the container and one outside).

    python docker/compare_metrics.py A.json B.json [--tolerance 0]

Every number is compared (nested keys joined by '/'); keys present on one side only are a mismatch.
The default tolerance is 0: on the CPU, with the same seed and the same pinned libraries, the runs
are expected to be identical. Exit 0 when they match, 1 when not (the differences are listed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}/{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def compare(a: dict[str, Any], b: dict[str, Any], tolerance: float) -> tuple[list[str], int, float]:
    fa, fb = flatten(a), flatten(b)
    problems = [f"{key}: only in the first" for key in sorted(fa.keys() - fb.keys())]
    problems += [f"{key}: only in the second" for key in sorted(fb.keys() - fa.keys())]
    numbers, worst = 0, 0.0
    for key in sorted(fa.keys() & fb.keys()):
        x, y = fa[key], fb[key]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            numbers += 1
            diff = abs(float(x) - float(y))
            worst = max(worst, diff)
            if diff > tolerance:
                problems.append(f"{key}: {x!r} != {y!r} (|diff| {diff:.3g})")
        elif x != y:
            problems.append(f"{key}: {x!r} != {y!r}")
    return problems, numbers, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.0, help="largest allowed absolute difference (default 0)")
    args = parser.parse_args(argv)
    problems, numbers, worst = compare(json.loads(args.first.read_text()), json.loads(args.second.read_text()), args.tolerance)
    if problems:
        print(f"compare_metrics: MISMATCH between {args.first} and {args.second}: {len(problems)} difference(s) "
              f"(tolerance {args.tolerance}):")
        print("\n".join(f"  {line}" for line in problems[:50]))
        return 1
    print(f"compare_metrics: match: {numbers} numbers equal between {args.first} and {args.second} "
          f"(largest |diff| {worst:.3g}, tolerance {args.tolerance})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
