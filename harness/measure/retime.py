"""This revision's cube against the baseline revision's, timed here for the gate (the independent peers are timed
again by ``peer_probe.measure``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.config import Params
from harness.stats import paired


def measure_revision(params: Params, settings: dict[str, Any], dim: int, code_repo: Path,
                     revision: str) -> dict[str, paired.RatioEstimate]:
    """Per phase, this revision's cube speed over ``revision``'s, timed here with the cube ``settings`` (the baseline's)."""
    from cube.device import choose_device
    from harness.measure.revision_speed import measure_revision_speed

    device = choose_device(params.train.device).device
    return measure_revision_speed(revision, code_repo, dim, settings, params.bench.peer_batch_size,
                                  params.gate.revision_rounds, seed=params.seed, device=str(device))

