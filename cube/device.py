"""Choosing the torch device for a run, with the reason written down.

A GPU is used only when the installed torch build carries code for it: an
``sm_XY`` binary of the same major version and no higher minor, or ``compute_XY``
PTX at or below the GPU's capability (JIT-compiled). The RTX 5090 (sm_120) with
a torch build made for sm_90 and older is the case this guards: ``auto`` falls
back to the CPU and says why; ``cuda`` fails and names the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch


class DeviceError(RuntimeError):
    """The requested device cannot be used."""


class OutOfDeviceMemory(DeviceError):
    """A batch did not fit in the device's memory; the message names the batch size and a smaller one."""


def out_of_memory_message(what: str, batch_size: int, device: torch.device, setting: str) -> str:
    smaller = max(1, batch_size // 2)
    return (f"{what}: out of {device} memory at batch size {batch_size}; set {setting} to {smaller} or lower "
            "(or turn on cube.activation_checkpointing)")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    capability: tuple[int, int]


@dataclass(frozen=True)
class CudaProbe:
    """What torch reports about CUDA; tests build one by hand to fake any GPU and build."""

    torch_version: str
    build_cuda: str | None
    arch_list: tuple[str, ...]
    gpus: tuple[GpuInfo, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    reason: str


def compiled_arch_list() -> tuple[str, ...]:
    """The architectures this torch build carries code for, read from the build itself, so it is known without a
    GPU or driver too (``torch.cuda.get_arch_list()`` answers only when CUDA is usable); empty for a CPU build."""
    flags = getattr(torch._C, "_cuda_getArchFlags", lambda: None)()
    if flags:
        return tuple(flags.split())
    return tuple(torch.cuda.get_arch_list()) if torch.cuda.is_available() else ()


def probe_cuda() -> CudaProbe:
    gpus: tuple[GpuInfo, ...] = ()
    arch = compiled_arch_list() if torch.version.cuda else ()
    if torch.cuda.is_available():
        gpus = tuple(
            GpuInfo(i, torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))  # type: ignore[arg-type]
            for i in range(torch.cuda.device_count())
        )
    return CudaProbe(torch.__version__, torch.version.cuda, arch, gpus)


def _parse_arch(entry: str) -> tuple[str, int, int] | None:
    """'sm_86' -> ('sm', 8, 6); 'compute_90' -> ('compute', 9, 0); 'sm_120' -> ('sm', 12, 0); 'sm_90a' too."""
    match = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", entry)
    if not match:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3))


def build_supports(arch_list: tuple[str, ...], capability: tuple[int, int]) -> bool:
    """Can a torch build with ``arch_list`` run kernels on a GPU of ``capability``?"""
    major, minor = capability
    for entry in arch_list:
        parsed = _parse_arch(entry)
        if parsed is None:
            continue
        kind, arch_major, arch_minor = parsed
        if kind == "sm" and arch_major == major and arch_minor <= minor:
            return True
        if kind == "compute" and (arch_major, arch_minor) <= (major, minor):
            return True
    return False


def compatibility_problem(probe: CudaProbe, gpu: GpuInfo) -> str | None:
    """None when the build can drive ``gpu``; otherwise the sentence that explains why not and the fix."""
    if build_supports(probe.arch_list, gpu.capability):
        return None
    major, minor = gpu.capability
    return (
        f"GPU {gpu.index} ({gpu.name}) has compute capability sm_{major}{minor}, but torch {probe.torch_version} "
        f"(CUDA {probe.build_cuda}) was built only for {', '.join(probe.arch_list) or 'no CUDA architectures'}; "
        f"install a torch build that includes sm_{major}{minor} (for sm_120 / RTX 50xx: a cu128-or-newer build, "
        "e.g. pip install torch --index-url https://download.pytorch.org/whl/cu128)"
    )


def choose_device(requested: str, probe: CudaProbe | None = None) -> DeviceChoice:
    """``auto``: the first GPU the build can drive, else CPU (with the reason); ``cpu``; ``cuda``: GPU or a clear error."""
    if requested not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"unknown device {requested!r}; use auto, cpu or cuda")
    if requested == "cpu":
        return DeviceChoice(torch.device("cpu"), "cpu requested")
    probe = probe or probe_cuda()
    if not probe.gpus:
        if requested == "cuda":
            raise DeviceError(
                f"device 'cuda' was requested but torch {probe.torch_version} sees no CUDA GPU "
                f"(build CUDA: {probe.build_cuda}); set device: auto or cpu, or run where a GPU and a CUDA build of torch are"
            )
        return DeviceChoice(torch.device("cpu"), f"auto: no CUDA GPU visible to torch {probe.torch_version}")
    problems = []
    for gpu in probe.gpus:
        problem = compatibility_problem(probe, gpu)
        if problem is None:
            how = "cuda requested" if requested == "cuda" else "auto"
            major, minor = gpu.capability
            reason = f"{how}: {gpu.name} (sm_{major}{minor}) is supported by this build"
            return DeviceChoice(torch.device("cuda", gpu.index), reason)
        problems.append(problem)
    if requested == "cuda":
        raise DeviceError("device 'cuda' was requested but no GPU can be used: " + "; ".join(problems))
    return DeviceChoice(torch.device("cpu"), "auto: falling back to CPU because " + "; ".join(problems))


def set_determinism(deterministic: bool) -> None:
    """``train.deterministic``: deterministic kernels everywhere (on GPU too), or torch's fastest ones.

    cuBLAS needs a fixed workspace for reproducible matmuls; it reads ``CUBLAS_WORKSPACE_CONFIG`` when its
    handle is first made, so this runs before any CUDA work. An op with no deterministic kernel then raises
    and names itself, rather than quietly varying between runs.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
