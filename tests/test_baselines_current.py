"""The committed gate baselines describe the committed runs of this code: pair by pair, to the bit, and not stale.

The default baseline against the committed default run's metrics; the tiny baseline against the tiny pipeline run
afresh by the tests (the same figures on any CPU of the maker that made the baseline: the numerics are pinned; across
makers the training does not yet recompute, docs/portability.md). A change that moves a figure, or a new
params key, fails here until the baseline is recorded again (`make baseline`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cube.numerics import cpu_model
from harness.config import load_params
from harness.judge import gate
from harness.store.baselines import read_baselines
from harness.store.results import Bench, Evaluation, RunSnapshot, read_result, read_seed_runs

ROOT = Path(__file__).resolve().parent.parent
BASELINES = read_baselines(ROOT / "reports" / "baseline.json")


def run_snapshot(repo: Path) -> RunSnapshot:
    """What the gate would keep of the run in ``repo``: its figures, per-pair scores and params."""
    metrics, params = repo / "metrics", load_params(repo / "params.yaml")
    found = gate.snapshot(read_result(metrics / "evaluate.json", Evaluation), read_seed_runs(metrics /
                          "evaluate_seeds.json"), read_result(metrics / "bench.json", Bench),
                          tuple(params.gate.quality_drops))
    return found.model_copy(update={"params": params.to_dict()})


def assert_current(profile: str, run: RunSnapshot) -> None:
    recorded = BASELINES.profiles[profile]
    assert gate.staleness(recorded, run) == [], f"the {profile} baseline is stale: run `make baseline`"
    assert gate.params_differences(recorded.params, run.params) == []
    assert recorded.seeds == run.seeds
    assert recorded.pairs == run.pairs, f"the {profile} baseline's per-pair scores are not the run's: `make baseline`"
    for name, figure in recorded.metrics.items():
        if figure.kind in ("quality", "exact"):
            assert run.metrics[name].value == figure.value, name
    assert recorded.revision is not None and recorded.machine is not None


def test_the_default_baseline_is_the_committed_default_run_pair_by_pair():
    assert_current("default", run_snapshot(ROOT))


def vendor(cpu_model: str) -> str:
    """The CPU's maker, as its model name gives it."""
    return next((name for name in ("Intel", "AMD") if name in cpu_model), cpu_model)


@pytest.mark.slow
def test_the_tiny_baseline_is_the_tiny_run_made_afresh_pair_by_pair(tiny_run):
    recorded = BASELINES.profiles["tiny"].machine
    if recorded is not None and vendor(recorded.cpu_model) != vendor(cpu_model()):
        # a known defect, kept in sight: the embeddings recompute across makers, the training does not yet
        pytest.xfail(f"the tiny baseline was made on an {recorded.cpu_model}, this is an {cpu_model()}: training "
                     "does not yet recompute to the bit across CPU makers (docs/portability.md)")
    assert_current("tiny", run_snapshot(tiny_run))
