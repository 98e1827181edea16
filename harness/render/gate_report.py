"""The gate's verdict as text: its table of checks and what to do about them (``python -m harness gate`` prints it)."""

from __future__ import annotations

import math
from typing import Any

from harness.judge.gate import INCONCLUSIVE, Check, GateVerdict
from harness.stats.paired import RatioEstimate


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, RatioEstimate):
        return f"{value.ratio:.2f}"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e3 else f"{value:,.6g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(checks: list[Check]) -> str:
    lines = ["| metric | kind | baseline | current | verdict | detail |", "|---|---|---|---|---|---|"]
    for c in checks:
        verdict = f"**{c.verdict}**" if c.failed else c.verdict
        lines.append(f"| {c.metric} | {c.kind} | {_shown(c.baseline)} | {_shown(c.current)} | {verdict} | {c.detail} |")
    return "\n".join(lines)


def verdicts_in(text: str) -> dict[str, str]:
    """Each metric's verdict read back from a printed gate table (for scripts and tests that see only the output:
    a detail cell may name earlier measurements' verdicts, so searching the text for a word is not enough)."""
    verdicts = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) >= 6 and cells[0] not in ("metric", "---"):
            verdicts[cells[0]] = cells[4].strip("*")
    return verdicts


def render(verdict: GateVerdict) -> str:
    text = f"Gate against {verdict.baseline_path}, profile {verdict.profile!r}"
    if verdict.warnings:
        text += "\n\n" + "\n".join(f"WARNING: {warning}" for warning in verdict.warnings)
    if verdict.checks is not None:
        checks, failed = verdict.checks, verdict.failed
        differences = verdict.params_differences
        text += "\n\n" + ("Params that differ from the baseline's:\n" + "\n".join(f"- {d}" for d in differences)
                          + "\n\n" if differences else "") + markdown(checks) + "\n\n"
        inconclusive = sum(c.verdict == INCONCLUSIVE for c in checks)
        text += (f"gate FAILED: {len(failed)} of {len(checks)} metrics regressed or went missing"
                 + "".join(f"\n- {c.metric}: {c.detail or c.verdict}" for c in failed) if failed
                 else f"gate passed: {len(checks)} metrics checked" + (f", {inconclusive} inconclusive (a speed ratio "
                                                                       "still undecided after re-measuring, or a fall "
                                                                       "within the noise: reported, not failed)"
                                                                       if inconclusive else ""))
        if verdict.seeds < 2:
            text += ("\nnote: one seed only, so the quality intervals cover the test pairs but not the spread between "
                     "training runs; list quality.extra_seeds to gate the recipe rather than one trajectory")
    if verdict.recorded is not None:
        text += (f"\n\nbaseline for profile {verdict.profile!r} written to {verdict.baseline_path} "
                 f"({verdict.recorded} metrics)")
    return text
