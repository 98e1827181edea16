"""The `reliability` stage: run the bad-input table and the fault drills now, against this code, and count them.

The drills are the project's own tests, marked ``bad_input`` (something a user may hand the harness, which
must be refused with a clear error and leave nothing half-written) or ``fault`` (a kill, a corruption or a
diverging loss, which must lose nothing). They run in this process through pytest, so the report's counts
come from this run, not from a file written elsewhere. Drills that run whole nested pipelines are marked
``slow``; the stage leaves them to `make test` unless ``reliability.include_slow`` is on, and the report
names them as not run here.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness import paths
from harness.config import Params
from harness.store.results import DrillCounts, Reliability, write_result

log = logging.getLogger(__name__)
KINDS = ("bad_input", "fault")
PASSED, FAILED, SKIPPED, NOT_RUN = "passed", "failed", "skipped", "not run"  # a drill's outcome
TESTS = Path("tests")


class DrillCollector:
    """A pytest plugin that records each drill's kind and outcome (setup, call and teardown together)."""

    def __init__(self) -> None:
        self.kind: dict[str, str] = {}
        self.slow: set[str] = set()
        self.selected: set[str] = set()
        self.outcome: dict[str, str] = {}

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        for item in items:
            for kind in KINDS:
                if item.get_closest_marker(kind):
                    self.kind[item.nodeid] = kind
            if item.get_closest_marker("slow"):
                self.slow.add(item.nodeid)

    def pytest_collection_finish(self, session: Any) -> None:
        self.selected = {item.nodeid for item in session.items}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.outcome[report.nodeid] = FAILED
        elif report.skipped:
            self.outcome.setdefault(report.nodeid, SKIPPED)
        elif report.when == "call":
            self.outcome.setdefault(report.nodeid, PASSED)


def _summary(collector: DrillCollector) -> dict[str, DrillCounts]:
    out = {}
    for kind in KINDS:
        ids = sorted(n for n, k in collector.kind.items() if k == kind)
        ran = [n for n in ids if n in collector.selected]
        counts = Counter(collector.outcome.get(n, NOT_RUN) for n in ran)
        out[kind] = DrillCounts(
            tried=len(ran) - counts[SKIPPED],
            passed=counts[PASSED],
            failed=sorted(n for n in ran if collector.outcome.get(n) in (FAILED, None)),
            skipped=counts[SKIPPED],
            left_to_make_test=sorted(n for n in ids if n not in collector.selected),
        )
    return out


def run_drills(params: Params, tests: Path = TESTS) -> Reliability:
    """Run the drills selected by ``params.reliability``; write and return ``metrics/reliability.json``."""
    settings = params.reliability
    if not settings.run:
        result = Reliability(run=False, reason="reliability.run is false in params.yaml")
    else:
        result = _run_pytest(tests, settings.include_slow)
    return write_result(paths.RELIABILITY_METRICS, result, Reliability)


def _run_pytest(tests: Path, include_slow: bool) -> Reliability:
    try:
        import pytest
    except ImportError:
        return Reliability(run=False, reason="pytest is not installed here; install the dev extras "
                                             "(pip install -e '.[dev]') to run the drills")
    if not tests.is_dir():
        return Reliability(run=False, reason=f"no {tests}/ folder next to params.yaml")
    selection = " or ".join(KINDS) if include_slow else f"({' or '.join(KINDS)}) and not slow"
    collector = DrillCollector()
    started = time.perf_counter()
    # the stage's own outputs must not be touched by pytest: no cache folder, quiet, one pass
    code = pytest.main([str(tests), "-q", "-p", "no:cacheprovider", "-m", selection,
                        "--ignore", str(tests / "bench")], plugins=[collector])
    log.info("reliability drills: pytest exit code %s", int(code))
    return Reliability(run=True, selection=selection, pytest_exit_code=int(code),
                       seconds=round(time.perf_counter() - started, 1), **_summary(collector))
