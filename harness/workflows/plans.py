"""plans/cube_ablation.yaml read once into a type: the cube ablation's plan, and the designs the learning curve's
``--design`` adds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from harness.workflows.profile import ROOT

ABLATION_PLAN = ROOT / "plans" / "cube_ablation.yaml"


class DesignEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    note: str = ""
    settings: dict[str, Any] | None = None  # params.yaml + the task profile + these; none: the default cube


class PlanFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task_profile: str  # relative to the repository
    pool: int
    val: float
    test: float
    size: int
    seeds: list[int]
    designs: dict[str, DesignEntry]
    probes: list[str]


def read_plan_file(path: Path) -> PlanFile:
    """The plan at ``path``, typed; a plan of other keys or values is a ValueError naming the file."""
    try:
        return PlanFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except ValidationError as error:
        raise ValueError(f"{path}: a plan has exactly the keys {sorted(PlanFile.model_fields)}, each of its type: "
                         f"{error}") from None
