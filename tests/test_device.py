"""Device choice against faked GPUs and torch builds (the RTX 5090 / sm_120 case among them)."""

import pytest
import torch

from cube.device import CudaProbe, DeviceError, GpuInfo, build_supports, choose_device

OLD_BUILD = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "compute_90")
CU128_BUILD = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120")
RTX5090 = GpuInfo(0, "NVIDIA GeForce RTX 5090", (12, 0))
H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", (9, 0))


@pytest.mark.parametrize(
    ("arch", "capability", "ok"),
    [
        (OLD_BUILD, (9, 0), True),
        (OLD_BUILD, (8, 9), True),  # sm_86 binary runs on 8.9
        (OLD_BUILD, (12, 0), True),  # compute_90 PTX is JIT-compiled for newer GPUs
        (OLD_BUILD[:-1], (12, 0), False),  # without PTX, sm_90 binaries cannot run on sm_120
        (("sm_80", "sm_86"), (7, 5), False),  # a newer binary never runs on an older GPU
        (("sm_80",), (9, 0), False),  # other major version, no PTX
        (CU128_BUILD, (12, 0), True),
        (("sm_90a",), (9, 0), True),
        ((), (8, 0), False),
    ],
)
def test_build_support_rule(arch, capability, ok):
    assert build_supports(arch, capability) is ok


def old_probe(gpu=RTX5090, arch=OLD_BUILD[:-1]):
    return CudaProbe("2.5.1+cu124", "12.4", arch, (gpu,))


def test_auto_falls_back_to_cpu_on_an_unsupported_gpu_and_says_why():
    choice = choose_device("auto", old_probe())
    assert choice.device == torch.device("cpu")
    assert "RTX 5090" in choice.reason and "sm_120" in choice.reason and "cu128" in choice.reason


def test_cuda_on_an_unsupported_gpu_names_build_capability_and_fix():
    with pytest.raises(DeviceError) as err:
        choose_device("cuda", old_probe())
    message = str(err.value)
    assert "2.5.1+cu124" in message and "sm_120" in message and "sm_90" in message and "cu128" in message


def test_supported_gpu_is_used():
    choice = choose_device("auto", CudaProbe("2.11.0+cu130", "13.0", CU128_BUILD, (RTX5090,)))
    assert choice.device == torch.device("cuda", 0) and "supported" in choice.reason
    assert choose_device("cuda", old_probe(H100, OLD_BUILD)).device == torch.device("cuda", 0)


def test_no_gpu():
    none = CudaProbe("2.13.0+cpu", None, (), ())
    assert choose_device("auto", none).device == torch.device("cpu")
    with pytest.raises(DeviceError, match="sees no CUDA GPU"):
        choose_device("cuda", none)
    assert choose_device("cpu", none).reason == "cpu requested"


def test_second_gpu_used_when_only_it_is_supported():
    probe = CudaProbe("2.5.1+cu124", "12.4", OLD_BUILD[:-1], (RTX5090, GpuInfo(1, "NVIDIA H100", (9, 0))))
    assert choose_device("auto", probe).device == torch.device("cuda", 1)
