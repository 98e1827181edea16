"""What the NVIDIA driver (NVML, nvidia-ml-py) reports: its GPUs and their memory. No driver is a normal state:
each reading carries the reason instead of numbers, never an exception."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def _read(reading: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``reading(pynvml)`` between nvmlInit and nvmlShutdown; ``{"status": "unavailable: why"}`` when NVML fails."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as error:  # no driver library, no permission: report it
        return {"status": f"unavailable: {error}"}
    try:
        return {"status": "ok", **reading(pynvml)}
    except Exception as error:
        return {"status": f"unavailable: {error}"}
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def nvml_devices() -> dict[str, Any]:
    """Every GPU the driver sees, with its memory, and the driver's version."""
    def reading(nvml: Any) -> dict[str, Any]:
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append({"index": index, "name": _text(nvml.nvmlDeviceGetName(handle)),
                            "memory_used_mib": memory.used / 2**20, "memory_total_mib": memory.total / 2**20})
        return {"driver": _text(nvml.nvmlSystemGetDriverVersion()), "devices": devices}

    return {"devices": []} | _read(reading)


def nvml_memory(device: torch.device) -> dict[str, Any]:
    """``device``'s memory as the driver reports it (a bench row's NVML columns)."""
    if device.type != "cuda":
        return {"nvml": "not applicable (CPU run)"}

    def reading(nvml: Any) -> dict[str, Any]:
        # torch numbers the GPUs CUDA_VISIBLE_DEVICES leaves visible, NVML every GPU on the machine: the UUID is the
        # one name both share, so cuda:0 under CUDA_VISIBLE_DEVICES=3 is read as the driver's GPU 3, not its GPU 0
        index = device.index if device.index is not None else torch.cuda.current_device()
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        return {"nvml_used_mib": info.used / 2**20, "nvml_total_mib": info.total / 2**20}

    found = _read(reading)
    return {"nvml": found.pop("status"), **found}
