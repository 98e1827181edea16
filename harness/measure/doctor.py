"""The device doctor: what torch was built for, which GPUs are here, whether the build can drive them."""

from __future__ import annotations

import os

import psutil
import torch

from cube import numerics
from cube.device import CudaProbe, choose_device, compatibility_problem, probe_cuda
from harness.measure.nvml import nvml_devices
from harness.store.results import CpuFound, Doctor, GpuFound, NvmlFound


def diagnose(requested: str, probe: CudaProbe | None = None) -> Doctor:
    """Everything the doctor prints, as data (recorded in metrics/doctor.json and shown in the report)."""
    probe = probe or probe_cuda()
    choice = choose_device(requested, probe)
    return Doctor(
        torch=probe.torch_version,
        build_cuda=probe.build_cuda,
        arch_list=list(probe.arch_list),
        gpus=[GpuFound(index=gpu.index, name=gpu.name, capability=f"sm_{gpu.capability[0]}{gpu.capability[1]}",
                       supported_by_build=compatibility_problem(probe, gpu) is None,
                       problem=compatibility_problem(probe, gpu))
              for gpu in probe.gpus],
        nvml=NvmlFound(**nvml_devices()),
        cpu=cpu_found(),
        requested_device=requested,
        chosen_device=str(choice.device),
        reason=choice.reason,
    )


def cpu_found() -> CpuFound:
    """The CPU and the numerics in force: what the machine fingerprint of a speed figure is made of."""
    found = numerics.describe()
    return CpuFound(model=found.cpu_model, logical_cpus=os.cpu_count(), torch_threads=torch.get_num_threads(),
                    memory_total_gib=psutil.virtual_memory().total / 2**30, flags=found.cpu_flags,
                    numerics=found.mode, pins=found.pins, torch_cpu_capability=found.torch_cpu_capability)


def format_report(found: Doctor) -> str:
    lines = [
        f"torch {found.torch}, built with CUDA {found.build_cuda or 'none (CPU build)'}",
        f"build arch list: {', '.join(found.arch_list) or '(none)'}",
    ]
    if not found.gpus:
        lines.append("GPUs visible to torch: none")
    for gpu in found.gpus:
        verdict = "build can run on it" if gpu.supported_by_build else f"build CANNOT run on it: {gpu.problem}"
        lines.append(f"GPU {gpu.index}: {gpu.name}, compute capability {gpu.capability}; {verdict}")
    nvml = found.nvml
    if nvml.status == "ok":
        lines.append(f"NVML: driver {nvml.driver}")
        lines += [f"  GPU {d.index} {d.name}: {d.memory_used_mib:,.0f} / {d.memory_total_mib:,.0f} MiB used"
                  for d in nvml.devices]
    else:
        lines.append(f"NVML: {nvml.status}")
    cpu = found.cpu
    lines.append(f"CPU: {cpu.model}, {cpu.logical_cpus} logical CPUs, torch uses {cpu.torch_threads} threads, "
                 f"{cpu.memory_total_gib:.1f} GiB RAM")
    lines.append(f"CPU flags that matter: {' '.join(cpu.flags) or '(none reported)'}; numerics {cpu.numerics}, "
                 f"torch's CPU capability {cpu.torch_cpu_capability}, pins "
                 f"{' '.join(f'{k}={v}' for k, v in cpu.pins.items()) or 'none'}")
    if found.gpus:
        lines.append(f"numerics: {numerics.GPU_NOTE}")
    lines.append(f"device '{found.requested_device}' -> {found.chosen_device} ({found.reason})")
    return "\n".join(lines)
