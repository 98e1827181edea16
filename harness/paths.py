"""Where the pipeline reads and writes, relative to the repository root (DVC runs stages there)."""

from __future__ import annotations

from pathlib import Path

from cube.stages import STAGE_NAMES

REPO = Path(__file__).resolve().parent.parent  # the checkout itself, for tools run from elsewhere (profiles, tests)
PARAMS = Path("params.yaml")
EMBEDDED = Path("data/embedded")
METRICS = Path("metrics")
DVCLIVE = Path("dvclive")
REPORTS = Path("reports")
PROFILES = Path("profiles")  # params.yaml overlays (harness/workflows/profile.py); gate baselines are named after them

STAGES = STAGE_NAMES  # the training stages, in order (cube/stages.py)


CHECKPOINTS = Path("checkpoints")


def checkpoint_dir(stage: str) -> Path:
    return CHECKPOINTS / stage


SEED_CHECKPOINTS = CHECKPOINTS / "seeds"  # the `seeds` stage: one folder per extra seed


def seed_dir(seed: int) -> Path:
    return SEED_CHECKPOINTS / f"seed{seed}"


def train_metrics(stage: str) -> Path:
    return METRICS / f"train_{stage}.json"


EVALUATE_METRICS = METRICS / "evaluate.json"
QUALITY_HEADLINE = METRICS / "quality.json"  # the figures dvc exp show compares; evaluate.json has everything
SPEED_HEADLINE = METRICS / "speed.json"
EVALUATE_SEEDS = METRICS / "evaluate_seeds.json"  # every seed's scores, behind evaluate.json's mean ± std
BENCH_METRICS = METRICS / "bench.json"
RELIABILITY_METRICS = METRICS / "reliability.json"
DOCTOR = METRICS / "doctor.json"
DATA_CARD = METRICS / "data_card.json"
DATASETS_RUN = METRICS / "datasets_run.json"  # cache hits and encodes of the last datasets run: nothing reads it
PARAMS_CHECKED = Path("data/params.checked")  # check's stamp, constant: the datasets stage depends on it to run after
PARAMS_RESOLVED = Path("data/params.resolved.yaml")  # the check stage's output: params.yaml with every default
REPORT = REPORTS / "report.md"
