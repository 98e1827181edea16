"""Which CPU code paths torch's kernels may take: one setting, applied before torch is imported.

torch's CPU kernels pick their instructions from the CPU they find: ATen's vectorised code (``ATEN_CPU_CAPABILITY``),
MKL's BLAS (``MKL_CBWR``) and oneDNN (``ONEDNN_MAX_CPU_ISA``). Another choice adds floats in another order, so the
same inputs give other last bits on another CPU. ``portable`` pins ATen and oneDNN to AVX2, the widest set every
x86-64 CPU of the last decade has, MKL to its one branch that runs alike on Intel and AMD (``COMPATIBLE``), and the
intra-op thread count (reductions are split by it), so a figure recomputes to the bit on any x86-64 CPU with AVX2.
``native`` lets each library choose: faster on some CPUs, reproducible on the same kind
of CPU only; it exists for speed studies and is named in every report made under it.

Each library reads its variable once, when it first computes, so the pins are set in the environment before torch
is imported (``pin``), and child processes inherit them. This module imports nothing from torch at load time.

On a GPU the pins cover the CPU's share of the work only; what CUDA can fix (deterministic kernels, no TF32) is set by
``cube.device.set_determinism``; the GPU's own order of additions depends on its model and the CUDA libraries, which
no setting pins (``GPU_NOTE``).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Mode = Literal["portable", "native"]
PORTABLE: Mode = "portable"
NATIVE: Mode = "native"
MODES: tuple[str, ...] = (PORTABLE, NATIVE)
DEFAULT: Mode = PORTABLE

PORTABLE_THREADS = 2  # the committed runs' intra-op threads: a reduction's order of additions depends on it
PINS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels (and SLEEF's maths) for AVX2
    # MKL's conditional numerical reproducibility. Its ISA branches (AVX2, AVX512) exist on Intel CPUs only: on any
    # other x86-64 CPU MKL silently takes its AUTO branch, the CPU's own kernels (an AMD EPYC's figures under
    # MKL_CBWR=AVX2 differed from an Intel Xeon's). COMPATIBLE, the SSE2 branch without approximate reciprocals, is
    # the one MKL runs alike on every vendor's CPU; it costs speed, measured by the bench ("Cost of portability").
    "MKL_CBWR": "COMPATIBLE",
    "MKL_DYNAMIC": "FALSE",  # MKL uses the threads it is given, not fewer on a machine it judges busy or small
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (conv, matmul primitives) no wider than AVX2
    "OMP_NUM_THREADS": str(PORTABLE_THREADS),
    "MKL_NUM_THREADS": str(PORTABLE_THREADS),
}
# torch.compile's on-disk cache is keyed without the ATen capability: a kernel compiled under one mode and loaded
# under the other computed wrong figures (the eager reference's output off by 1.87) or crashed the process (double
# free), measured with torch 2.13.0. Each mode keeps its own cache, as the embedding cache keeps its own rows.
INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"
REQUIRED_FLAGS = ("avx2", "fma")  # what the pinned code paths execute
REPORTED_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni",
                  "amx_tile", "amx_bf16", "amx_int8")
GPU_NOTE = ("on a GPU the pins cover the CPU's work only; deterministic kernels and no TF32 are set for CUDA, but "
            "its order of additions depends on the GPU model and the CUDA libraries, which no setting pins")


class NumericsError(RuntimeError):
    """The requested numerics cannot be had here; the message says why and the way out."""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), not just the architecture."""
    for line in _cpuinfo().splitlines():
        if line.split(":", 1)[0].strip() in ("model name", "Model", "cpu model"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags the kernel reports for this CPU (empty where it reports none)."""
    for line in _cpuinfo().splitlines():
        if line.split(":", 1)[0].strip() in ("flags", "Features"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def check_supported(mode: str, machine: str | None = None, flags: frozenset[str] | None = None) -> None:
    """Refuse ``portable`` on a CPU that cannot run the pinned code paths, saying why and naming ``native``."""
    if mode not in MODES:
        raise NumericsError(f"numerics: {mode!r} is not a mode; choose one of {', '.join(MODES)}")
    if mode != "portable":
        return
    machine = machine or platform.machine()
    flags = cpu_flags() if flags is None else flags
    if machine not in ("x86_64", "AMD64", "amd64"):
        raise NumericsError(
            f"numerics: portable pins x86-64 AVX2 code paths, and this machine is {machine}: its figures cannot equal "
            "an x86-64 machine's. Set `numerics: native` in params.yaml (or `-S numerics=native`) to run with this "
            "CPU's own kernels; the report then names the mode, and its figures reproduce on this kind of CPU only")
    missing = [flag for flag in REQUIRED_FLAGS if flag not in flags]
    if flags and missing:
        raise NumericsError(
            f"numerics: portable pins torch's CPU kernels to AVX2, and this CPU ({cpu_model()}) lacks "
            f"{', '.join(missing)}. Set `numerics: native` in params.yaml (or `-S numerics=native`) to run with the "
            "kernels this CPU has; the report then names the mode, and its figures will not equal a portable run's")


def environment(mode: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the pins of ``mode``: set for portable, removed for
    native (so a native child of a portable process really is native), and torch.compile's cache of the mode."""
    env = dict(os.environ if base is None else base)
    for name, value in PINS.items():
        if mode == "portable":
            env[name] = value
        else:
            env.pop(name, None)
    env[INDUCTOR_CACHE] = inductor_cache(mode)
    return env


def inductor_cache(mode: str) -> str:
    """torch.compile's cache folder for ``mode``: beside torch's default one, one per mode."""
    user = "".join(c if c.isalnum() else "_" for c in os.environ.get("USER", "") or str(os.getuid()))
    return os.path.join(tempfile.gettempdir(), f"torchinductor_{user}_{mode}")


def pin(mode: str) -> None:
    """Put ``mode``'s pins in this process's environment, before torch is imported (refused after, unless the
    environment already holds them)."""
    check_supported(mode)
    wanted = environment(mode)
    managed = (*PINS, INDUCTOR_CACHE)
    changed = {name for name in managed if os.environ.get(name) != wanted.get(name)}
    if not changed:
        return
    if "torch" in sys.modules:
        raise NumericsError(f"numerics: {mode} asked for after torch was imported, with {', '.join(sorted(changed))} "
                            "not yet as it needs; pin the numerics first thing in the process")
    for name in managed:
        if name in wanted:
            os.environ[name] = wanted[name]
        else:
            os.environ.pop(name, None)


def in_force() -> str:
    """The mode this process's environment holds: portable when every pin is set as portable sets it."""
    return "portable" if all(os.environ.get(name) == value for name, value in PINS.items()) else "native"


def cache_tag() -> str:
    """What an embedding cache key needs of the numerics: portable figures are the same on every x86-64 CPU with
    AVX2; native ones only on the CPU that made them."""
    mode = in_force()
    if mode == "portable":  # the pins themselves, so that other pins never read rows computed under these
        return "portable " + ",".join(f"{name}={value}" for name, value in sorted(PINS.items()))
    return f"native on {cpu_model()} ({_capability()})"


def _capability() -> str:
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


@dataclass(frozen=True)
class NumericsInForce:
    """The mode, the pins in force, what torch reports, the CPU and its flags that matter, threads."""

    mode: str
    pins: dict[str, str]
    torch_cpu_capability: str
    cpu_model: str
    machine: str
    cpu_flags: list[str]
    threads: int
    gpu: str


def describe() -> NumericsInForce:
    """What decides the order of this process's floating-point additions (provenance, the doctor)."""
    import torch

    flags = cpu_flags()
    return NumericsInForce(mode=in_force(), pins={name: os.environ[name] for name in PINS if name in os.environ},
                           torch_cpu_capability=_capability(), cpu_model=cpu_model(), machine=platform.machine(),
                           cpu_flags=[flag for flag in REPORTED_FLAGS if flag in flags],
                           threads=torch.get_num_threads(), gpu=GPU_NOTE)
