"""How fast torch's BLAS runs the cell rule's own matmul shapes, under one numerics mode, at several row counts.

    python scripts/cell_rule_matmuls.py portable      (then: ... native, to compare)

Rows are batch x cells (the default lattice has 384 cells, so 24,576 rows is batch 64). For each row count it times,
median of 20 calls, the four products a training step makes per step at the default cube (C = 8 channels, H = 32
hidden): the perceive layer (rows, 7C) @ (7C, H) with its constant term, the update (rows, H) @ (H, 16) (the update
weight zero-padded to 16 rows, as ``cube.propagation`` does), the hidden gradient (rows, C) @ (C, H) and the perceive
weight's gradient (7C, rows) @ (rows, H); then a square 1024 x 1024 product, the matmul peak the bench's roofline
uses. Figures are GFLOP/s. The numerics are fixed when torch is imported (``cube.numerics.pin``), so each mode needs a
process of its own.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable

from cube import numerics

CHANNELS, HIDDEN, PADDED_UPDATE = 8, 32, 16
ROWS = (3_072, 24_576, 98_304, 393_216)  # batch 8, 64, 256 and 1,024 of the default lattice


def rates_at(rows: int) -> list[float]:
    """GFLOP/s of the four products at ``rows`` rows, each the median of 20 timed calls after one untimed."""
    import torch

    from harness.measure.trackers import time_calls

    width = 7 * CHANNELS
    gathered, constant = torch.randn(rows, width), torch.randn(rows, HIDDEN)
    perceive, hidden = torch.randn(HIDDEN, width), torch.randn(rows, HIDDEN)
    update, bias, grad = torch.randn(PADDED_UPDATE, HIDDEN), torch.randn(PADDED_UPDATE), torch.randn(rows, CHANNELS)
    out = torch.empty(rows, HIDDEN)
    products: list[tuple[Callable[[], object], int]] = [
        (lambda: torch.addmm(constant, gathered, perceive.t(), out=out), rows * width * HIDDEN),
        (lambda: torch.addmm(bias, hidden, update.t()), rows * HIDDEN * PADDED_UPDATE),
        (lambda: torch.mm(grad, update[:CHANNELS]), rows * CHANNELS * HIDDEN),
        (lambda: torch.mm(gathered.t(), hidden), rows * width * HIDDEN),
    ]
    cpu = torch.device("cpu")
    return [2 * macs / statistics.median(time_calls(call, cpu, warmup=1, repeats=20)) / 1e9 for call, macs in products]


def main(mode: str) -> None:
    numerics.pin(mode)
    import torch

    from harness.measure.roofline import measure_matmul_flops

    torch.manual_seed(0)
    print(f"numerics {mode}, torch {torch.__version__}, {torch.get_num_threads()} threads; GFLOP/s")
    print("| rows | perceive (addmm) | update (addmm) | hidden gradient (mm) | perceive weight gradient (mm) |")
    print("|---|---|---|---|---|")
    for rows in ROWS:
        print(f"| {rows:,} | " + " | ".join(f"{rate:.1f}" for rate in rates_at(rows)) + " |")
    print(f"square 1024 x 1024 (the bench's matmul peak): {measure_matmul_flops(torch.device('cpu')) / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in numerics.MODES:
        sys.exit(f"usage: python scripts/cell_rule_matmuls.py {{{'|'.join(numerics.MODES)}}}")
    main(sys.argv[1])
