"""Device choice against faked GPUs and torch builds (the RTX 5090 / sm_120 case among them)."""

import os

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


def test_deterministic_switch_sets_torch_cudnn_and_cublas():
    from cube.device import set_determinism

    try:
        set_determinism(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
        set_determinism(False)
        assert not torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.deterministic
    finally:
        set_determinism(False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_deterministic_gpu_training_repeats_bit_for_bit():
    """train.deterministic on a GPU: two runs of the same seeded steps end with identical weights."""
    from cube.config import CubeConfig
    from cube.device import set_determinism
    from cube.processor import EmbeddingProcessor

    def weights_after_steps() -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = EmbeddingProcessor(384, CubeConfig()).cuda()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        data = torch.nn.functional.normalize(torch.randn(256, 384, generator=torch.Generator().manual_seed(1)), dim=-1).cuda()
        for batch in data.split(64):
            loss = 1 - torch.nn.functional.cosine_similarity(model(batch), batch.flip(0)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return [p.detach().cpu().clone() for p in model.parameters()]

    try:
        set_determinism(True)
        first, second = weights_after_steps(), weights_after_steps()
    finally:
        set_determinism(False)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_the_doctor_reads_a_cuda_builds_arch_list_without_a_gpu(monkeypatch):
    """A CUDA build on a machine without a GPU (the CUDA image here): the arch list still comes from the build, so
    the doctor can say it has sm_120, and auto falls back to the CPU with the reason."""
    from cube.device import choose_device, probe_cuda

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch._C, "_cuda_getArchFlags", lambda: "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    probe = probe_cuda()
    assert probe.arch_list == ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120") and probe.gpus == ()
    choice = choose_device("auto", probe)
    assert choice.device == torch.device("cpu") and "no CUDA GPU visible" in choice.reason


def test_nvml_reads_the_gpu_torch_uses_by_uuid_not_by_torch_s_index(monkeypatch):
    """Under CUDA_VISIBLE_DEVICES=3 torch's cuda:0 is the driver's GPU 3: NVML must be asked by UUID."""
    import sys
    import types

    import torch

    from harness.measure.nvml import nvml_memory

    asked = []
    memory = types.SimpleNamespace(used=2 * 2**20, total=8 * 2**20)
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda index: pytest.fail("NVML asked by torch's index"),
        nvmlDeviceGetHandleByUUID=lambda uuid: asked.append(uuid) or "handle of GPU 3",
        nvmlDeviceGetMemoryInfo=lambda handle: memory if handle == "handle of GPU 3" else None)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: types.SimpleNamespace(uuid="3f1c0c9e-0000-4000-8000-000000000003"))
    found = nvml_memory(torch.device("cuda", 0))
    assert asked == ["GPU-3f1c0c9e-0000-4000-8000-000000000003"]
    assert found == {"nvml": "ok", "nvml_used_mib": 2.0, "nvml_total_mib": 8.0}
