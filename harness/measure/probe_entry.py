"""The entry of the bench's fresh-process probes: pins the numerics of params.yaml before torch loads, then runs the
probe, so a probe measures the code the bench stage depends on and not the CLI."""

from __future__ import annotations

import importlib
import sys

PROBES = {"memory": "harness.measure.memory_probe", "peers": "harness.measure.peer_probe"}


def command(probe: str, *args: str) -> list[str]:
    """The command line that runs ``probe`` in a fresh Python process."""
    return [sys.executable, "-m", "harness.measure.probe_entry", probe, *args]


def main(argv: list[str]) -> int:
    from cube import numerics
    from harness import paths
    from harness.config import numerics_of

    if not argv or argv[0] not in PROBES:
        print(f"usage: python -m harness.measure.probe_entry {{{','.join(PROBES)}}} [options]", file=sys.stderr)
        return 2
    numerics.pin(numerics_of(paths.PARAMS))
    return importlib.import_module(PROBES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
