"""Same inputs, same figures, on another CPU: the tiny pipeline as it runs here, and again on a simulated CPU that
offers AVX2 and nothing wider, must give the same ``metrics/evaluate.json`` to the bit.

The simulation lowers every dispatch this machine can lower: the portable pins (which the pipeline sets itself),
MKL told it has AVX2 only (``MKL_ENABLE_INSTRUCTIONS``), and glibc's own AVX-512 variants masked
(``GLIBC_TUNABLES``). The second run embeds afresh, in a clone of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cube import numerics

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docker"))
from compare_metrics import compare  # noqa: E402

pytestmark = pytest.mark.slow

AVX2_ONLY = {
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX512DQ,-AVX512CD,-AVX512BW,-AVX512VL,-AVX512_VNNI,-AVX512_BF16",
}


def test_the_tiny_pipeline_on_a_simulated_avx2_only_cpu_gives_evaluate_json_to_the_bit(tiny_run, tmp_path):
    from harness.workflows.profile import make_workspace

    repo = make_workspace(tmp_path / "repo")
    env = numerics.environment("native", os.environ) | AVX2_ONLY  # the stages pin portable themselves
    env |= {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "dvc", "repro", "evaluate"], cwd=repo, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (tiny_run / "data" / "cache").is_symlink()  # the first run embedded afresh too
    for name, at_least in (("evaluate.json", 632), ("evaluate_seeds.json", 10_000), ("quality.json", 7)):
        here = json.loads((tiny_run / "metrics" / name).read_text(encoding="utf-8"))
        simulated = json.loads((repo / "metrics" / name).read_text(encoding="utf-8"))
        problems, numbers, worst = compare(here, simulated, tolerance=0.0)
        assert not problems, f"{name}: {len(problems)} differences, e.g. {problems[:5]}"
        assert numbers >= at_least and worst == 0.0, (name, numbers, worst)
