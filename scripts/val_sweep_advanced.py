"""Validation-only sweep of the advanced stage's loss mix: how its defaults in params.yaml were chosen.

Run after `dvc repro` (it starts from every seed's `optimized` checkpoint: checkpoints/optimized for `seed`,
checkpoints/seeds/seed<N>/optimized for each quality.extra_seeds), from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/val_sweep_advanced.py [name ...]

Each variant changes a few keys of train.advanced, trains the stage once per seed and prints the mean validation
cosine, recall@1 and MRR with every seed's figures. The test split is never read: choose on these, then let the
pipeline's evaluate stage read test once for the chosen configuration.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cube import numerics  # noqa: E402

numerics.pin(numerics.DEFAULT)  # before torch is imported: this study computes under the pipeline's default numerics

import torch  # noqa: E402

from cube.checkpoint import load_checkpoint, load_model_weights  # noqa: E402
from cube.config import StageConfig  # noqa: E402
from cube.embedded import EmbeddedData, load_embedded  # noqa: E402
from cube.processor import EmbeddingProcessor, Mode  # noqa: E402
from cube.trainer import CubeTrainer, predict  # noqa: E402
from harness import paths  # noqa: E402
from harness.config import load_params  # noqa: E402

NCE = {"infonce_weight": 1.0, "infonce_temperature": 0.1, "triplet_weight": 0.0}
# relative to the stage as committed before this sweep: cosine 1, InfoNCE 0.5 at t 0.05, triplet 0.25, diversity 0.05,
# curriculum on, lr 3e-3, batch 64
BEFORE = {"infonce_weight": 0.5, "infonce_temperature": 0.05, "triplet_weight": 0.25, "curriculum": True}
VARIANTS: dict[str, dict[str, object]] = {
    "before": {},
    "cosine x3": {"cosine_weight": 3.0},
    "t 0.1": {"infonce_temperature": 0.1},
    "cosine x3, t 0.1": {"cosine_weight": 3.0, "infonce_temperature": 0.1},
    "lr 1e-3": {"lr": 1e-3},
    "no curriculum": {"curriculum": False},
    "+ mse 0.5": {"mse_weight": 0.5},
    "cosine x2, t 0.1, lr 1e-3": {"cosine_weight": 2.0, "infonce_temperature": 0.1, "lr": 1e-3},
    "nce": NCE,
    "nce, cosine x2": NCE | {"cosine_weight": 2.0},
    "nce, cosine x1.5, mse 0.5": NCE | {"cosine_weight": 1.5, "mse_weight": 0.5},
    "nce, no diversity": NCE | {"diversity_weight": 0.0},
    "nce, t 0.2": NCE | {"infonce_temperature": 0.2},
    "nce x1.5, cosine x2": NCE | {"infonce_weight": 1.5, "cosine_weight": 2.0},
    "nce, no curriculum (chosen)": NCE | {"curriculum": False},
    "nce, cosine x2, batch 256, lr 1e-3, no diversity": NCE | {"cosine_weight": 2.0, "diversity_weight": 0.0,
                                                                "batch_size": 256, "lr": 1e-3},
}
MEASURES = ("cosine", "recall@1", "mrr")


def val_scores(config: StageConfig, data: EmbeddedData, cube: object, seed: int, start: Path) -> dict[str, float]:
    """Train the advanced stage from ``start`` under ``seed``; the validation scores of its best epoch."""
    torch.manual_seed(seed)
    model = EmbeddingProcessor(data.dim, cube, Mode.DIALOGUE)
    load_model_weights(model, load_checkpoint(start), "best")
    with tempfile.TemporaryDirectory() as scratch:
        CubeTrainer(model, "advanced", config, data, seed=seed, checkpoint_dir=scratch).fit()
        load_model_weights(model, load_checkpoint(scratch), "best")
    return data.val.score(predict(model, data.val.questions, torch.device("cpu")))


def main(names: list[str]) -> None:
    params = load_params(ROOT / "params.yaml")
    data = load_embedded(ROOT / "data/embedded")
    starts = {params.seed: ROOT / paths.checkpoint_dir("optimized")}
    starts |= {seed: ROOT / paths.seed_dir(seed) / "optimized" for seed in params.quality.extra_seeds}
    before = replace(params.train.advanced, **BEFORE)
    for name in names or list(VARIANTS):
        began = time.perf_counter()
        config = replace(before, **VARIANTS[name])
        runs = {seed: val_scores(config, data, params.cube, seed, start) for seed, start in starts.items()}
        means = {m: sum(r[m] for r in runs.values()) / len(runs) for m in MEASURES}
        print(f"{name:50s} " + "  ".join(f"{m} {means[m]:.4f}" for m in MEASURES) + "  per seed (R@1/MRR/cos): "
              + " ".join(f"{r['recall@1']:.3f}/{r['mrr']:.3f}/{r['cosine']:.3f}" for r in runs.values())
              + f"  {time.perf_counter() - began:.0f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
