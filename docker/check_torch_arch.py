#!/usr/bin/env python3
"""Fail the CUDA image build unless the installed torch can run on an RTX 5090 (sm_120).

Run right after torch is installed in Dockerfile.cuda. The arch list is the one torch was
compiled for (``torch._C._cuda_getArchFlags()``, readable without a GPU, which a build never
has; ``torch.cuda.get_arch_list()`` when a GPU is visible). The rule is the harness's own
(``cube.device.build_supports``): an ``sm_12x`` binary of the same major and no higher minor,
or ``compute_XY`` PTX at or below 12.0. ``--arch-list`` replaces the installed build's list,
so the check can be tested against fake lists without torch's CUDA build:

    python docker/check_torch_arch.py --arch-list "sm_80 sm_90 compute_90"   # passes (PTX)
    python docker/check_torch_arch.py --arch-list "sm_80 sm_90"              # fails: no sm_120

``--wheel`` reads the list out of a torch wheel without installing it (the same string
``_cuda_getArchFlags`` returns, stored in ``torch/lib/libtorch_python.so``), and ``--pypi-version V``
downloads PyPI's default Linux wheel of torch V first (about 0.5 GB, no nvidia-* wheels): that is how CI
checks the wheel the CUDA image pins without building the image:

    python docker/check_torch_arch.py --pypi-version 2.13.0

Exit status: 0 when supported, 1 when not (the message names the fix), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # cube/device.py of this checkout (the image copies it beside this script)

FIX = ("build the image with TORCH_SOURCE=pypi (PyPI's default Linux torch, a CUDA 13.0 build with sm_120), or "
       "TORCH_SOURCE=pytorch / nightly with TORCH_CUDA=cu128 or newer; outside the image: "
       "pip install torch --index-url https://download.pytorch.org/whl/cu128")


def parse_capability(text: str) -> tuple[int, int]:
    """'12.0' or 'sm_120' -> (12, 0)."""
    text = text.strip().lower().removeprefix("sm_")
    try:
        if "." in text:
            major, minor = text.split(".", 1)
            return int(major), int(minor)
        return int(text[:-1]), int(text[-1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"capability {text!r}: write it as 12.0 or sm_120") from None


def installed_arch_list() -> tuple[tuple[str, ...], str]:
    """The installed torch's compiled arch list and a one-line description of the build."""
    import torch

    from cube.device import compiled_arch_list  # the doctor's reading of the same build

    return compiled_arch_list(), f"torch {torch.__version__} (CUDA {torch.version.cuda})"


ARCH_FLAGS = re.compile(rb"(?:(?:sm|compute)_\d+[af]? )*(?:sm|compute)_\d+[af]?")
ARCH_LIBRARY = "torch/lib/libtorch_python.so"


def wheel_arch_list(wheel: Path) -> tuple[tuple[str, ...], str]:
    """The arch list compiled into a torch wheel: the longest NUL-delimited string of libtorch_python.so that is
    only ``sm_XY`` / ``compute_XY`` entries (what ``torch._C._cuda_getArchFlags()`` returns once installed)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            library = archive.read(ARCH_LIBRARY)
    except (OSError, zipfile.BadZipFile, KeyError) as error:
        raise SystemExit(f"check_torch_arch: {wheel}: not a torch wheel with {ARCH_LIBRARY} ({error})") from None
    found = [chunk for chunk in library.split(b"\0") if ARCH_FLAGS.fullmatch(chunk)]
    arch = tuple(max(found, key=len).decode().split()) if found else ()
    return arch, f"the wheel {wheel.name}"


def download_pypi_wheel(version: str, into: Path) -> Path:
    """PyPI's default wheel of torch ``version`` for this platform, without its dependencies and without the host's
    local wheel folders or extra indexes (a local CPU wheel would win on version)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL")}
    env["PIP_CONFIG_FILE"] = os.devnull
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--index-url", "https://pypi.org/simple", "--dest", str(into), f"torch=={version}"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wheels = sorted(into.glob("torch-*.whl"))
    if result.returncode != 0 or not wheels:
        raise SystemExit(f"check_torch_arch: could not download torch=={version} from PyPI: "
                         f"{(result.stderr or result.stdout).strip()[-400:]}")
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capability", type=parse_capability, default=(12, 0),
                        help="GPU compute capability that must be supported (default 12.0, RTX 5090)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--arch-list", help="space- or comma-separated arch list to check instead of the installed torch's")
    source.add_argument("--wheel", type=Path, help="a torch wheel file to read the arch list from")
    source.add_argument("--pypi-version", help="download PyPI's default Linux torch wheel of this version, then check it")
    args = parser.parse_args(argv)

    from cube.device import build_supports

    if args.arch_list is not None:
        arch, build = tuple(args.arch_list.replace(",", " ").split()), "the given arch list"
    elif args.wheel is not None:
        arch, build = wheel_arch_list(args.wheel)
    elif args.pypi_version is not None:
        with tempfile.TemporaryDirectory(prefix="cube-torch-wheel-") as scratch:
            arch, build = wheel_arch_list(download_pypi_wheel(args.pypi_version, Path(scratch)))
        build = f"PyPI's torch {args.pypi_version} ({build.removeprefix('the wheel ')})"
    else:
        arch, build = installed_arch_list()
    major, minor = args.capability
    wanted = f"sm_{major}{minor}"
    listed = " ".join(arch) or "none (a CPU-only build)"
    if build_supports(arch, args.capability):
        print(f"check_torch_arch: ok: {build} supports {wanted}; arch list: {listed}")
        return 0
    print(f"check_torch_arch: FAILED: {build} lacks {wanted} (RTX 5090 / Blackwell): arch list is {listed}; "
          f"an image built with it could not run on an RTX 5090. Fix: {FIX}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
