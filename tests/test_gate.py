"""The gate's verdicts on hand-made runs whose answer is known (the pipeline test plants real regressions)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from harness.config import GateConfig
from harness.judge import gate
from harness.judge.gate import confirm_speed, params_differences
from harness.render.gate_report import markdown
from harness.stats.paired import RatioEstimate
from harness.store.results import GateBaselines, RunSnapshot

GATE = GateConfig(quality_drops={"cosine": 0.01, "recall@1": 0.03, "mrr": 0.02}, speed_ratio_drop=0.4, noise_floor=0.001,
                  memory_increase=0.25, speed_remeasure=2)
RNG = np.random.default_rng(0)
SEEDS = [0, 1, 2, 3, 4]
MRR_PAIRS = [list(1.0 / RNG.integers(1, 20, 600)) for _ in SEEDS]  # one row of per-pair scores per seed
COSINE_PAIRS = [list(RNG.uniform(0.1, 0.7, 600)) for _ in SEEDS]


def ratio(value: float, spread: float = 0.05) -> dict[str, float]:
    return {"ratio": value, "low": value * (1 - spread), "high": value * (1 + spread), "repeats": 21}


BASELINE = {
    "metrics": {
        "dialogue.test.mrr": {"kind": "quality", "value": float(np.mean(MRR_PAIRS))},
        "dialogue.test.cosine": {"kind": "quality", "value": float(np.mean(COSINE_PAIRS))},
        "dialogue.parameters": {"kind": "exact", "value": 5217},
        "work.counted_flops_train": {"kind": "exact", "value": 1_000_000.0},
        "speed.train_own_vs_eager_reference": {"kind": "speed", "value": ratio(2.0)},
        "memory.train.batch64.cuda_max_allocated_mib": {"kind": "memory", "value": 100.0},
    },
    "seeds": SEEDS,
    "pairs": {"dialogue": {"mrr": MRR_PAIRS, "cosine": COSINE_PAIRS}},
    "params": {"seed": 0, "numerics": "portable", "data": {"task": "dialogue"}},
    "revision": "0123456789abcdef0123456789abcdef01234567",
    "machine": {"cpu_model": "AMD EPYC", "cpu_flags": ["avx", "avx2", "fma", "avx512f"], "threads": 2,
                "numerics": "portable", "torch_cpu_capability": "AVX2"},
}


def shifted(rows: list[list[float]], by: float | list[float]) -> list[list[float]]:
    """Every seed's per-pair scores moved by ``by`` (one value, or one per seed)."""
    offsets = by if isinstance(by, list) else [by] * len(rows)
    return [list(np.asarray(row) + offset) for row, offset in zip(rows, offsets)]


def run(pairs: dict[str, list[list[float]]] | None = None, **changes: object) -> dict:
    """The baseline run with some per-pair scores or metric values changed (the means follow the pairs)."""
    current = copy.deepcopy(BASELINE)
    for measure, values in (pairs or {}).items():
        current["pairs"]["dialogue"][measure] = values
        current["metrics"][f"dialogue.test.{measure}"]["value"] = float(np.mean([np.mean(row) for row in values]))
    for name, value in changes.items():
        current["metrics"][name.replace("__", ".")]["value"] = value
    return current


RECORDED = RunSnapshot.model_validate(BASELINE)


def compare(baseline: dict, current: dict, gate_config: GateConfig, **kwargs: bool) -> list:
    """The gate's comparison of two hand-made runs, written as the dicts of reports/baseline.json."""
    return gate.compare(RunSnapshot.model_validate(baseline), RunSnapshot.model_validate(current), gate_config,
                        **kwargs)


def verdicts(current: dict, **kwargs: bool) -> dict[str, str]:
    return {check.metric: check.verdict for check in compare(BASELINE, current, GATE, **kwargs)}


def test_the_unchanged_run_passes():
    assert set(verdicts(run()).values()) == {"ok"}


def test_a_measure_the_gate_no_longer_lists_is_not_gated_not_missing_and_the_others_still_are():
    """gate.quality_drops without cosine: the baseline's cosine is reported as not gated, whatever this run has."""
    without_cosine = dataclasses.replace(GATE, quality_drops={"recall@1": 0.03, "mrr": 0.02})
    current = run({"mrr": shifted(MRR_PAIRS, -0.02)})
    del current["metrics"]["dialogue.test.cosine"]
    found = {check.metric: check.verdict for check in compare(BASELINE, current, without_cosine)}
    assert found["dialogue.test.cosine"] == "not gated here"
    assert found["dialogue.test.mrr"] == "REGRESSION"


def test_a_fall_of_exactly_the_tolerance_in_every_seed_fails():
    assert verdicts(run({"mrr": shifted(MRR_PAIRS, -0.02)}))["dialogue.test.mrr"] == "REGRESSION"


def test_a_significant_fall_inside_the_tolerance_fails_but_float_noise_does_not():
    worse = [[v - 0.01 if i % 2 else v for i, v in enumerate(row)] for row in COSINE_PAIRS]  # 0.005 below
    assert verdicts(run({"cosine": worse}))["dialogue.test.cosine"] == "REGRESSION"
    noise = shifted(COSINE_PAIRS, -1e-7)  # another CPU's rounding: consistent, but negligible
    assert verdicts(run({"cosine": noise}))["dialogue.test.cosine"] == "ok"


def test_a_small_fall_that_is_not_significant_passes():
    swap = copy.deepcopy(MRR_PAIRS)
    swap[0][0], swap[0][1] = swap[0][0] - 0.05, swap[0][1] + 0.04  # one pair worse, one better
    assert verdicts(run({"mrr": swap}))["dialogue.test.mrr"] == "ok"


def _trajectories(rng: np.random.Generator, seeds: int, seed_spread: float) -> list[list[float]]:
    """Per-pair cosines of ``seeds`` training runs of one recipe: a shared per-pair level, an offset per run and
    per-pair noise per run (runs of one recipe agree on which pairs are easy, not on the last digits)."""
    level = np.random.default_rng(7).uniform(0.1, 0.7, 600)
    return [list(level + rng.normal(0.0, seed_spread) + rng.normal(0.0, 0.03, 600)) for _ in range(seeds)]


def test_other_trajectories_of_the_same_recipe_pass_where_one_seed_against_one_would_fail():
    rng = np.random.default_rng(3)
    recorded, again = _trajectories(rng, 5, 0.01), _trajectories(rng, 5, 0.01)
    baseline = run({"cosine": recorded})
    seed_level = compare(baseline, run({"cosine": again}), GATE)
    assert {c.metric: c.verdict for c in seed_level}["dialogue.test.cosine"] in ("ok", "improved", "inconclusive")
    # the same runs judged as the gate once did, seed 0 against seed 0 on pairs alone: float chaos reads as a change
    first = {"seeds": [0], "pairs": {"dialogue": {"cosine": recorded[:1]}}}
    one_seed = compare(run({"cosine": recorded[:1]}) | first, run({"cosine": again[:1]}) | {"seeds": [0]}, GATE)
    assert {c.metric: c.verdict for c in one_seed}["dialogue.test.cosine"] in ("REGRESSION", "improved")


def test_a_fall_shared_by_every_trajectory_fails():
    rng = np.random.default_rng(4)
    recorded, worse = _trajectories(rng, 5, 0.003), shifted(_trajectories(rng, 5, 0.003), -0.015)
    checks = {c.metric: c for c in compare(run({"cosine": recorded}), run({"cosine": worse}), GATE)}
    assert checks["dialogue.test.cosine"].verdict == "REGRESSION", checks["dialogue.test.cosine"].detail


def test_a_fall_beyond_the_tolerance_within_the_seed_noise_is_inconclusive_not_failed():
    spread = [0.02, -0.06, 0.03, -0.07, 0.0]  # five runs that disagree widely: a mean fall of 0.016
    checks = {c.metric: c for c in compare(BASELINE, run({"cosine": shifted(COSINE_PAIRS, spread)}), GATE)}
    assert checks["dialogue.test.cosine"].verdict == "inconclusive" and not checks["dialogue.test.cosine"].failed
    assert "within the noise" in checks["dialogue.test.cosine"].detail


def test_other_seeds_than_the_baseline_compare_means_only():
    current = run({"mrr": shifted(MRR_PAIRS, -0.005)}) | {"seeds": [0, 1, 2, 3, 9]}
    checks = {c.metric: c for c in compare(BASELINE, current, GATE)}
    assert checks["dialogue.test.mrr"].verdict == "ok" and "means compared" in checks["dialogue.test.mrr"].detail


def test_a_nan_fails_wherever_it_is():
    assert verdicts(run(dialogue__test__mrr=float("nan")))["dialogue.test.mrr"] == "REGRESSION"
    with_nan = copy.deepcopy(MRR_PAIRS)
    with_nan[2][5] = float("nan")
    checks = {c.metric: c for c in compare(BASELINE, run() | {"pairs": {"dialogue": {"mrr": with_nan}}}, GATE)}
    assert checks["dialogue.test.mrr"].verdict == "REGRESSION" and "non-finite" in checks["dialogue.test.mrr"].detail


def test_exact_figures_must_match_unless_the_params_changed():
    assert verdicts(run(dialogue__parameters=5218))["dialogue.parameters"] == "REGRESSION"
    assert verdicts(run(work__counted_flops_train=2_000_000.0))["work.counted_flops_train"] == "REGRESSION"
    assert verdicts(run(dialogue__parameters=5218), params_differ=True)["dialogue.parameters"] == "changed with params"


def test_speed_a_twofold_slowdown_fails_noise_passes_and_a_wide_interval_is_inconclusive():
    name = "speed.train_own_vs_eager_reference"
    assert verdicts(run(speed__train_own_vs_eager_reference=ratio(1.0)))[name] == "REGRESSION"
    assert verdicts(run(speed__train_own_vs_eager_reference=ratio(1.6, 0.2)))[name] == "ok"
    assert verdicts(run(speed__train_own_vs_eager_reference=ratio(1.2, 0.3)))[name] == "inconclusive"


def test_a_speed_verdict_stands_only_when_another_process_agrees():
    name = "speed.train_own_vs_eager_reference"
    slow = compare(BASELINE, run(speed__train_own_vs_eager_reference=ratio(1.0)), GATE)
    calls = []

    def measure(value: float, spread: float = 0.05):
        def again() -> dict[str, RatioEstimate]:
            calls.append(value)
            return {"train_own_vs_eager_reference": RatioEstimate(**ratio(value, spread))}
        return again

    confirmed = {c.metric: c for c in confirm_speed(slow, RECORDED, GATE, measure(0.9))}
    assert confirmed[name].verdict == "REGRESSION" and calls == [0.9]  # both processes: regressed
    calls.clear()
    outlier = {c.metric: c for c in confirm_speed(slow, RECORDED, GATE, measure(1.9))}
    assert outlier[name].verdict == "inconclusive" and not outlier[name].failed  # the processes disagree ...
    assert calls == [1.9, 1.9, 1.9] and "verdicts of 4 processes" in outlier[name].detail  # ... so timed again
    undecided = compare(BASELINE, run(speed__train_own_vs_eager_reference=ratio(1.2, 0.3)), GATE)
    settled = {c.metric: c for c in confirm_speed(undecided, RECORDED, GATE, measure(1.9))}
    assert settled[name].verdict == "ok"


def test_memory_peaks_may_grow_by_their_tolerance_only():
    name = "memory.train.batch64.cuda_max_allocated_mib"
    assert verdicts(run(memory__train__batch64__cuda_max_allocated_mib=120.0))[name] == "ok"
    assert verdicts(run(memory__train__batch64__cuda_max_allocated_mib=1000.0))[name] == "REGRESSION"


def test_a_missing_metric_fails_and_a_new_one_is_listed():
    current = run()
    del current["metrics"]["dialogue.test.cosine"]
    current["metrics"]["extra"] = {"kind": "exact", "value": 1}
    checks = {c.metric: c for c in compare(BASELINE, current, GATE)}
    assert checks["dialogue.test.cosine"].failed and checks["dialogue.test.cosine"].verdict == "missing"
    assert checks["extra"].verdict == "new" and not checks["extra"].failed
    assert "| dialogue.test.cosine | quality |" in markdown(list(checks.values()))


def test_the_params_that_differ_are_listed_and_the_gate_section_is_not():
    old = {"train": {"advanced": {"lr": 0.003}}, "gate": {"mrr_drop": 0.02}, "seed": 0}
    new = {"train": {"advanced": {"lr": 5.0}}, "gate": {"mrr_drop": 0.5}, "seed": 0}
    assert params_differences(old, new) == ["train.advanced.lr: 0.003 -> 5.0"]


def test_the_baseline_file_reads_back_as_written_with_its_pairs_on_one_line():
    import json

    from harness.store.baselines import baseline_text

    stored = {"profiles": {"tiny": BASELINE | {"params": {"seed": 0}}, "default": BASELINE | {"params": {}}}}
    text = baseline_text(GateBaselines.model_validate(stored))
    assert json.loads(text) == json.loads(json.dumps(stored))
    assert sum('"pairs": {' in line for line in text.splitlines()) == 2  # one line per profile's per-pair scores


def test_a_mistyped_profile_is_refused_with_the_nearest_name_and_never_recorded(tmp_path, monkeypatch):
    import json

    import pytest

    from harness.config import load_params
    from harness.judge.gate import GateError, run_gate

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"profiles": {"default": {}, "tiny": {}}}), encoding="utf-8")
    params = load_params(root / "params.yaml")
    for update in (False, True):
        with pytest.raises(GateError, match="no profile 'tinny'.*Did you mean 'tiny'"):
            run_gate(params, baseline, profile="tinny", update=update)
    with pytest.raises(GateError, match="no baseline for profile 'translation'.*--profile translation --update"):
        run_gate(params, baseline, profile="translation")
    assert json.loads(baseline.read_text(encoding="utf-8")) == {"profiles": {"default": {}, "tiny": {}}}


def test_peer_ratios_are_gated_on_the_machine_that_made_the_baseline_only():
    """A peer ratio is a property of the hardware too: against a baseline from another CPU it is a report figure."""
    name = "speed.train_own_vs_eager_reference"
    slow = run(speed__train_own_vs_eager_reference=ratio(1.0))
    assert verdicts(slow)[name] == "REGRESSION"  # same machine: gated
    elsewhere = copy.deepcopy(BASELINE)
    elsewhere["machine"]["cpu_model"] = "Another CPU"
    checks = {c.metric: c for c in compare(elsewhere, slow, GATE)}
    assert checks[name].verdict == "not gated here" and not checks[name].failed
    assert "cpu_model: Another CPU -> AMD EPYC" in checks[name].detail
    assert checks["dialogue.test.mrr"].verdict == "ok"  # everything else is judged as before


def revision_speed(*values: float, spread: float = 0.05):
    """A stand-in for timing the two revisions: each call returns the next of ``values`` for both phases."""
    calls = []

    def measure(revision: str) -> dict[str, RatioEstimate]:
        calls.append(revision)
        value = values[min(len(calls), len(values)) - 1]
        return {phase: RatioEstimate(**ratio(value, spread)) for phase in ("forward", "train")}
    return measure, calls


def test_this_revisions_cube_against_the_baselines_regresses_only_when_a_second_measurement_agrees():
    measure, calls = revision_speed(0.5, 0.5)  # a twofold slowdown, twice
    checks, warnings = gate.revision_checks(RECORDED, GATE, measure)
    assert [c.verdict for c in checks] == ["REGRESSION", "REGRESSION"] and len(calls) == 2 and not warnings
    assert "0123456789ab" in checks[0].detail and "vs floor 0.70" in checks[0].detail
    measure, calls = revision_speed(1.0)  # the same code: fine at once
    checks, _ = gate.revision_checks(RECORDED, GATE, measure)
    assert [c.verdict for c in checks] == ["ok", "ok"] and len(calls) == 1
    measure, calls = revision_speed(0.5, 1.0, 1.0)  # one unlucky measurement does not fail the gate
    checks, _ = gate.revision_checks(RECORDED, GATE, measure)
    assert all(c.verdict != "REGRESSION" for c in checks)


def test_without_the_baselines_revision_the_speed_is_not_judged_and_the_gate_says_why():
    from harness.measure.revision_speed import RevisionUnavailable

    def unavailable(revision: str) -> dict[str, RatioEstimate]:
        raise RevisionUnavailable(f"the baseline's revision {revision[:12]} is not in /repo: this is a shallow clone")

    checks, warnings = gate.revision_checks(RECORDED, GATE, unavailable)
    assert [c.verdict for c in checks] == ["NOT JUDGED", "NOT JUDGED"] and not any(c.failed for c in checks)
    assert "shallow clone" in warnings[0]
    no_revision = RECORDED.model_copy(update={"revision": None})
    checks, warnings = gate.revision_checks(no_revision, GATE, unavailable)
    assert [c.verdict for c in checks] == ["NOT JUDGED", "NOT JUDGED"] and "make baseline" in warnings[0]


def test_a_shallow_clone_lacks_the_baselines_revision_and_says_so(tmp_path):
    import subprocess

    from harness.measure.revision_speed import RevisionUnavailable, export_cube, head_revision

    origin = tmp_path / "origin"
    (origin / "cube").mkdir(parents=True)
    def git(*args: str, cwd: Path = origin) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                              capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (origin / "cube" / "a.py").write_text("OLD = 1\n")
    git("add", "-A")
    git("commit", "-qm", "old")
    old = git("rev-parse", "HEAD")
    (origin / "cube" / "a.py").write_text("NEW = 2\n")
    assert head_revision(origin) is None  # cube/ changed and not committed: no revision to record
    git("commit", "-qam", "new")
    assert head_revision(origin) == git("rev-parse", "HEAD")
    assert (export_cube(origin, old, tmp_path / "old") / "cube" / "a.py").read_text() == "OLD = 1\n"
    git("clone", "-q", "--depth", "1", f"file://{origin}", str(tmp_path / "shallow"), cwd=tmp_path)
    with pytest.raises(RevisionUnavailable, match="shallow clone.*--unshallow"):
        export_cube(tmp_path / "shallow", old, tmp_path / "nowhere")


def test_a_stale_baseline_is_named():
    current = RunSnapshot.model_validate(BASELINE | {"params": {"seed": 0, "numerics": "native",
                                                               "data": {"task": "dialogue", "languages": "deu-eng"}}})
    found = gate.staleness(RECORDED, current)
    assert any("without data.languages" in line for line in found)
    assert any("numerics portable, this run under native" in line for line in found)
    assert "make baseline" in found[-1]
    assert gate.staleness(RECORDED, RECORDED) == []
