"""What the portable numerics cost in speed: the cube under ``portable`` and under ``native``, timed in alternation.

The numerics are fixed when a process starts (``cube/numerics.py``), so each mode gets a worker process of its own
(``harness/measure/alternating.py``), running this tree's cube; a ratio is portable's speed over native's (below 1:
portable is slower), with its 95% interval over the rounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cube
from cube import numerics
from cube.config import to_plain
from harness.config import Params
from harness.measure.alternating import Contender, ratios, time_alternating
from harness.measure.phases import PHASES

CODE = Path(cube.__file__).resolve().parent.parent  # the tree this process's cube comes from


def point_key(phase: str, batch: int) -> str:
    return f"{phase}@{batch}"


def measure_numerics_cost(params: Params, dim: int, device: str) -> dict[str, Any]:
    """Portable's speed over native's for the cube's forward and training step at ``bench.numerics_batch_sizes``;
    on a GPU, or where portable cannot run, the reason instead."""
    bench = params.bench
    if device != "cpu":
        return {"measured": False, "reason": f"the numerics pin CPU code paths; this run's cube is on {device}"}
    try:
        numerics.check_supported("portable")
    except numerics.NumericsError as error:
        return {"measured": False, "reason": str(error)}
    points = [(phase, batch) for batch in bench.numerics_batch_sizes for phase in PHASES]
    times = time_alternating(Contender("portable", CODE, numerics.environment("portable")),
                             Contender("native", CODE, numerics.environment("native")),
                             dim, to_plain(params.cube), points, bench.numerics_rounds, seed=params.seed,
                             warmup=bench.warmup, desc="bench: portable against native numerics")
    found = ratios(times, own="portable", other="native")
    return {"measured": True, "rounds": bench.numerics_rounds, "in_force": numerics.in_force(),
            "portable_speed_over_native": {point_key(*point): estimate for point, estimate in found.items()}}
