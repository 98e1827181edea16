"""The baselines every run fits, scores and reports, in their order: names and roles only, so that reading results
(the report) needs no training code. ``cube/baselines.py`` holds how each is fitted (``FITS``, one per name here)."""

from __future__ import annotations

from dataclasses import dataclass

# Each baseline's name: shown in every table and file, and the one identifier code compares (never the text itself).
IDENTITY = "identity"
MEAN_ANSWER = "mean answer"
RIDGE = "ridge"
PROCRUSTES = "procrustes"
LINEAR = "linear (contrastive)"
MLP = "mlp"
LEGACY = "legacy q+0.15tanh(q)"  # the earlier system's fixed processor
# What the cube's defaults and the trainable baselines' values were chosen with: configurations x seeds on val MRR.
SWEEP_CONFIGS, SWEEP_SEEDS = 16, 3
SWEPT = f"{SWEEP_CONFIGS} configs x {SWEEP_SEEDS} seeds on val"


@dataclass(frozen=True)
class Rival:
    name: str
    in_tables: bool = True  # False: evaluated and kept in evaluate.json, one sentence in the report


RIVALS: tuple[Rival, ...] = (
    Rival(IDENTITY),
    Rival(MEAN_ANSWER),
    Rival(RIDGE),
    Rival(PROCRUSTES),
    Rival(LINEAR),
    Rival(MLP),
    Rival(LEGACY, in_tables=False),
)


def names(in_tables_only: bool = False) -> tuple[str, ...]:
    """The baselines' names in their order (the report's tables: ``in_tables_only``)."""
    return tuple(rival.name for rival in RIVALS if rival.in_tables or not in_tables_only)
