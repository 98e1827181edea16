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

Exit status: 0 when supported, 1 when not (the message names the fix), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # cube/device.py of this checkout (the image copies it beside this script)

FIX = ("install torch from PyTorch's cu128-or-newer wheel index "
       "(pip install torch --index-url https://download.pytorch.org/whl/cu128, or TORCH_CUDA=cu129/cu130; "
       "TORCH_CHANNEL=nightly for nightly builds)")


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

    flags = getattr(torch._C, "_cuda_getArchFlags", lambda: None)()  # compile-time list; no GPU needed
    arch = tuple(flags.split()) if flags else tuple(torch.cuda.get_arch_list())
    return arch, f"torch {torch.__version__} (CUDA {torch.version.cuda})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch-list", help="space- or comma-separated arch list to check instead of the installed torch's")
    parser.add_argument("--capability", type=parse_capability, default=(12, 0),
                        help="GPU compute capability that must be supported (default 12.0, RTX 5090)")
    args = parser.parse_args(argv)

    from cube.device import build_supports

    if args.arch_list is not None:
        arch, build = tuple(args.arch_list.replace(",", " ").split()), "the given arch list"
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
