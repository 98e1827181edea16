"""The ``check`` stage: params.yaml validated (and its lattice against the teacher's width), every setting written
out for reading, and the stamp that orders the other stages after it."""

from __future__ import annotations

from pathlib import Path

import yaml

from cube import atomic
from harness import paths
from harness.config import Params


def check_lattice_fits_teacher(params: Params) -> None:
    """The reference teacher's width (from its config, no weights loaded) must fit the lattice unless an adapter
    projects it: raises LatticeSizeError naming lattices that fit."""
    from cube.reshaper import check_lattice
    from cube.teachers import teacher_width

    width = teacher_width(params.teacher.models[0].name, params.teacher.offline)
    if width is not None:
        check_lattice(width, tuple(params.cube.lattice), params.cube.adapter)


def run_check(params: Params, params_path: Path) -> None:
    check_lattice_fits_teacher(params)
    header = (f"# Written by `python -m harness check` from {params_path} and the defaults in cube/config.py and\n"
              "# harness/config.py: every setting the stages read. Edit params.yaml, not this file.\n")
    atomic.write_text(paths.PARAMS_RESOLVED, header + yaml.safe_dump(params.to_dict(), sort_keys=False))
    atomic.write_text(paths.PARAMS_CHECKED, "params.yaml passed `python -m harness check`\n")
    print(f"{params_path}: valid (params hash {params.params_hash()[:12]}); resolved into {paths.PARAMS_RESOLVED}")
