"""The numerics setting: portable pins torch's CPU code paths before torch loads, native leaves them to the CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cube import numerics
from harness.config import numerics_of

PROBE = """
import hashlib, sys
from cube import numerics
numerics.pin(sys.argv[1])
import torch
from cube.config import TeacherModelConfig
from cube.teachers import get_teacher
from cube.processor import EmbeddingProcessor
from cube.config import CubeConfig
sentences = [f"sentence number {i} about {w}" for i, w in enumerate(["tea", "rain", "the sea", "a long road"] * 25)]
teacher = get_teacher(TeacherModelConfig(), torch.device("cpu"))
vectors = teacher.encode(sentences, progress=False)
torch.manual_seed(0)
cube = EmbeddingProcessor(384, CubeConfig())
with torch.no_grad():
    out = cube(vectors)
digest = hashlib.sha256(vectors.numpy().tobytes() + out.numpy().tobytes()).hexdigest()
print(numerics.in_force(), torch.backends.cpu.get_cpu_capability(), digest, teacher.key)
"""


def probe(mode: str, extra: dict[str, str] | None = None) -> list[str]:
    env = numerics.environment(mode) | (extra or {})
    result = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_portable_pins_every_code_path_and_native_removes_the_pins():
    portable, native = numerics.environment("portable", {}), numerics.environment("native", dict(numerics.PINS))
    cache = numerics.INDUCTOR_CACHE
    assert {k: v for k, v in portable.items() if k != cache} == numerics.PINS
    assert list(native) == [cache]
    assert portable[cache] != native[cache]  # torch.compile's cache is not keyed by the numerics: one per mode
    assert numerics.in_force() == "portable"  # conftest pins the tests' own process


@pytest.mark.skipif("avx512f" not in numerics.cpu_flags(), reason="this CPU has no AVX-512: native takes the AVX2 "
                    "code paths too, so there is nothing for the modes to differ in")
def test_native_and_portable_differ_on_a_cpu_with_avx512_and_portable_equals_a_simulated_avx2_cpu():
    """The pins act: native takes AVX-512 code and gives other last bits; portable gives the bits an AVX2-only CPU
    gives. The embedding cache keeps the two apart."""
    portable, native = probe("portable"), probe("native")
    simulated = probe("portable", {"MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert portable[:2] == ["portable", "AVX2"] and native[:2] == ["native", "AVX512"]
    assert portable[2] != native[2]  # other instructions, other bits
    assert portable[2] == simulated[2]  # the same bits as on a CPU that offers AVX2 only
    assert portable[3] != native[3]  # the teacher's cache key names the numerics


@pytest.mark.slow
def test_portable_gives_the_same_bits_whichever_mkl_branches_the_cpu_offers():
    """MKL honours a pinned ISA branch only where the CPU offers it (its AVX2 branch: on Intel CPUs only) and else
    silently takes the CPU's own kernels. Here a CPU that offers MKL nothing past SSE4.2 stands in for a CPU MKL
    will not run its AVX2 branch on: portable's teacher embeddings and cube outputs must not change."""
    portable = probe("portable")
    without_avx_branches = probe("portable", {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"})
    assert portable[:2] == without_avx_branches[:2] == ["portable", "AVX2"]
    assert portable[2] == without_avx_branches[2]


def test_portable_is_refused_where_the_pinned_code_paths_cannot_run():
    with pytest.raises(numerics.NumericsError, match="numerics: native"):
        numerics.check_supported("portable", machine="aarch64", flags=frozenset({"neon"}))
    with pytest.raises(numerics.NumericsError, match=r"lacks avx2, fma.*numerics: native"):
        numerics.check_supported("portable", machine="x86_64", flags=frozenset({"sse4_2", "avx"}))
    numerics.check_supported("native", machine="aarch64", flags=frozenset())  # native runs anywhere


def test_pinning_other_numerics_after_torch_is_loaded_is_refused():
    import torch  # noqa: F401 - loaded, as in any test

    numerics.pin("portable")  # what is in force already: nothing to do
    with pytest.raises(numerics.NumericsError, match="after torch was imported"):
        numerics.pin("native")
    assert numerics.in_force() == "portable"


def test_a_stage_refuses_portable_on_a_cpu_without_avx2(tmp_path):
    """Through the CLI: exit 2, one line naming the way out, before any work."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text(
        "import cube.numerics as n\nn.cpu_flags = lambda: frozenset({'sse2', 'avx'})\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(fake))
    result = subprocess.run([sys.executable, "-m", "harness", "check"], env=env, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "lacks avx2" in result.stderr and "numerics: native" in result.stderr


def test_a_tool_reads_the_numerics_of_params_yaml(tmp_path):
    params = tmp_path / "params.yaml"
    assert numerics_of(params) == "portable"  # no file: the default
    params.write_text("numerics: native\n", encoding="utf-8")
    assert numerics_of(params) == "native"
    params.write_text("numerics: fast\n", encoding="utf-8")
    with pytest.raises(ValueError, match="allowed values: 'portable', 'native'"):
        numerics_of(params)
