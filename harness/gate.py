"""The regression gate: this run's metrics against the committed baseline, metric by metric.

Quality (test cosine, recall@1, MRR per stage) may fall by at most its tolerance;
deterministic figures (parameter count, FLOPs, split sizes) must match exactly;
timings gate only as own-vs-peer speed ratios measured in one run, since absolute
timings differ between machines. Baselines are kept per profile (the params hash,
gate tolerances left out), so the CI's tiny profile and the default run each have one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cube import atomic
from cube.config import GateConfig, Params
from harness import paths

Kind = Literal["quality", "exact", "ratio"]
UNMEASURED = ("gate", "reliability", "quality")  # no gated figure depends on them (the gate reads seed's run only)
QUALITY_TOLERANCE = {"cosine": "cosine_drop", "recall@1": "recall_drop", "mrr": "mrr_drop"}


class GateError(RuntimeError):
    """The gate cannot compare (no baseline for this profile, unreadable metrics)."""


@dataclass(frozen=True)
class Check:
    metric: str
    kind: Kind
    baseline: float | None
    current: float | None
    verdict: str  # "ok", "improved", "REGRESSION", "new", "missing"

    @property
    def failed(self) -> bool:
        return self.verdict in ("REGRESSION", "missing")


def profile_key(params: Params) -> str:
    """sha256 of every parameter except the gate's own settings, so loosening a tolerance keeps the baseline."""
    measured = {section: value for section, value in params.to_dict().items() if section not in UNMEASURED}
    # how many processes train changes the figures by float rounding only, far inside the gate's tolerances
    measured["train"] = {key: value for key, value in measured["train"].items() if key != "distributed"}
    canonical = json.dumps(measured, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def collect(evaluation: dict[str, Any], bench: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The gated metrics of one run: name -> {kind, value}."""
    found: dict[str, dict[str, Any]] = {}
    for stage, result in evaluation["stages"].items():
        for measure in QUALITY_TOLERANCE:
            found[f"{stage}.test.{measure}"] = {"kind": "quality", "value": result["test"][measure]}
        found[f"{stage}.parameters"] = {"kind": "exact", "value": result["parameters"]}
    found["test_pairs"] = {"kind": "exact", "value": evaluation["test_pairs"]}
    found["test_candidates"] = {"kind": "exact", "value": evaluation["test_candidates"]}
    found["flops_per_sample_forward"] = {"kind": "exact", "value": bench["flops_per_sample_forward"]}
    for name, ratio in bench["peers"]["speed_ratios"].items():
        found[f"speed_ratio.{name}"] = {"kind": "ratio", "value": ratio}
    return found


def judge(metric: str, kind: Kind, baseline: float, current: float, gate: GateConfig) -> str:
    if kind == "exact":
        return "ok" if current == baseline else "REGRESSION"
    if kind == "quality":
        tolerance = getattr(gate, QUALITY_TOLERANCE[metric.rsplit(".", 1)[-1]])
        floor = baseline - tolerance
    else:
        floor = baseline * (1 - gate.speed_ratio_drop)
    if current < floor:
        return "REGRESSION"
    return "improved" if current > baseline and kind == "quality" else "ok"


def compare(baseline: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]], gate: GateConfig) -> list[Check]:
    checks = []
    for metric, entry in baseline.items():
        now = current.get(metric)
        if now is None:
            checks.append(Check(metric, entry["kind"], entry["value"], None, "missing"))
        else:
            checks.append(Check(metric, entry["kind"], entry["value"], now["value"],
                                judge(metric, entry["kind"], entry["value"], now["value"], gate)))
    checks += [Check(m, e["kind"], None, e["value"], "new") for m, e in current.items() if m not in baseline]
    return checks


def markdown(checks: list[Check]) -> str:
    def number(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"

    lines = ["| metric | kind | baseline | current | change | verdict |", "|---|---|---|---|---|---|"]
    for c in checks:
        change = "-" if c.baseline is None or c.current is None else f"{c.current - c.baseline:+.4f}"
        verdict = f"**{c.verdict}**" if c.failed else c.verdict
        lines.append(f"| {c.metric} | {c.kind} | {number(c.baseline)} | {number(c.current)} | {change} | {verdict} |")
    return "\n".join(lines)


def _read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise GateError(f"{path} is missing: {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise GateError(f"{path} is not valid JSON ({error}); restore it from git or rerun the stage that writes it") from None


def current_metrics() -> dict[str, dict[str, Any]]:
    evaluation = _read_json(paths.EVALUATE_METRICS, "run `dvc repro` (the evaluate stage) first")
    bench = _read_json(paths.BENCH_METRICS, "run `dvc repro` (the bench stage) first")
    return collect(evaluation, bench)


def reliability_checks() -> list[Check]:
    """Every drill the reliability stage ran must have passed: an absolute rule, not one against the baseline."""
    if not paths.RELIABILITY_METRICS.exists():
        return []
    drills = _read_json(paths.RELIABILITY_METRICS, "run `dvc repro` (the reliability stage) first")
    if not drills.get("run"):
        return []
    return [Check(f"reliability.{kind}.failed", "exact", 0, len(drills[kind]["failed"]),
                  "ok" if not drills[kind]["failed"] else "REGRESSION") for kind in ("bad_input", "fault")]


def run_gate(params: Params, baseline_path: Path | None = None, update: bool = False) -> tuple[bool, str]:
    """(passed, markdown). With ``update`` the current metrics become this profile's baseline."""
    baseline_path = baseline_path or Path(params.gate.baseline)
    key = profile_key(params)
    current = current_metrics()
    stored = _read_json(baseline_path, "create it with `python -m harness gate --update`") if baseline_path.exists() \
        else {"profiles": {}}
    if update:
        stored["profiles"][key] = {"lattice": list(params.cube.lattice), "steps": params.cube.steps,
                                   "max_pairs": params.data.max_pairs, "metrics": current}
        atomic.write_json(baseline_path, stored)
        return True, f"baseline for profile {key} written to {baseline_path} ({len(current)} metrics)"
    profile = stored["profiles"].get(key)
    if profile is None:
        known = ", ".join(stored["profiles"]) or "none"
        raise GateError(f"{baseline_path} has no baseline for this params profile ({key}; known: {known}). If the "
                        "params change is intended, record one with `python -m harness gate --update` and commit it")
    checks = compare(profile["metrics"], current, params.gate) + reliability_checks()
    failed = [c for c in checks if c.failed]
    summary = (f"gate FAILED: {len(failed)} of {len(checks)} metrics regressed or went missing" if failed
               else f"gate passed: {len(checks)} metrics within tolerance of the baseline")
    return not failed, f"Gate against {baseline_path}, profile {key}\n\n{markdown(checks)}\n\n{summary}"
