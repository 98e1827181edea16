"""The gate's verdicts on hand-made metric sets (the pipeline test runs it on a real tiny run)."""

from __future__ import annotations

from dataclasses import replace

from cube.config import GateConfig, Params
from harness.gate import compare, markdown, profile_key

BASELINE = {
    "dialogue.test.mrr": {"kind": "quality", "value": 0.50},
    "dialogue.test.cosine": {"kind": "quality", "value": 0.40},
    "dialogue.parameters": {"kind": "exact", "value": 5217},
    "speed_ratio.train_own_vs_conv3d_reference": {"kind": "ratio", "value": 2.0},
}
GATE = GateConfig(cosine_drop=0.01, recall_drop=0.03, mrr_drop=0.02, speed_ratio_drop=0.4)


def verdicts(changes: dict[str, float]) -> dict[str, str]:
    current = {name: {**entry, "value": changes.get(name, entry["value"])} for name, entry in BASELINE.items()}
    return {check.metric: check.verdict for check in compare(BASELINE, current, GATE)}


def test_the_unchanged_run_passes():
    assert set(verdicts({}).values()) == {"ok"}


def test_quality_may_fall_by_its_tolerance_and_no_more():
    assert verdicts({"dialogue.test.mrr": 0.485})["dialogue.test.mrr"] == "ok"
    assert verdicts({"dialogue.test.mrr": 0.47})["dialogue.test.mrr"] == "REGRESSION"
    assert verdicts({"dialogue.test.cosine": 0.385})["dialogue.test.cosine"] == "REGRESSION"
    assert verdicts({"dialogue.test.mrr": 0.6})["dialogue.test.mrr"] == "improved"


def test_deterministic_figures_must_match_exactly():
    assert verdicts({"dialogue.parameters": 5218})["dialogue.parameters"] == "REGRESSION"


def test_speed_ratios_gate_relatively_and_only_downwards():
    name = "speed_ratio.train_own_vs_conv3d_reference"
    assert verdicts({name: 1.3})[name] == "ok"
    assert verdicts({name: 1.1})[name] == "REGRESSION"
    assert verdicts({name: 5.0})[name] == "ok"


def test_a_missing_metric_fails_and_a_new_one_is_listed():
    current = {k: v for k, v in BASELINE.items() if k != "dialogue.test.mrr"} | {"extra": {"kind": "exact", "value": 1}}
    checks = {c.metric: c for c in compare(BASELINE, current, GATE)}
    assert checks["dialogue.test.mrr"].failed and checks["dialogue.test.mrr"].verdict == "missing"
    assert checks["extra"].verdict == "new" and not checks["extra"].failed
    table = markdown(list(checks.values()))
    assert "| dialogue.test.mrr | quality | 0.5000 | - | - | **missing** |" in table


def test_profile_key_follows_the_params_but_not_the_gate_tolerances():
    params = Params()
    assert profile_key(replace(params, gate=GateConfig(mrr_drop=0.5))) == profile_key(params)
    assert profile_key(replace(params, cube=replace(params.cube, steps=3))) != profile_key(params)
