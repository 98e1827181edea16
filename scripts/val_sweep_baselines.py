"""Validation-only sweep of the trainable baselines: how params.yaml's `baselines` section was chosen.

Each baseline gets the cube's own tuning budget (16 configurations x the 3 seeds of `seed` and quality.extra_seeds,
as scripts/val_sweep_advanced.py gave the cube's advanced stage): every configuration trains the baseline from the
identity map, through the cube's dialogue -> optimized -> advanced stages (chain) or the advanced stage alone, under
each seed, and is scored on validation. The rule: the highest mean validation MRR. The test split is never read.
Run after `dvc repro datasets`, from the repository root:

    .venv/bin/python scripts/val_sweep_baselines.py [mlp|linear ...]

It prints every configuration's mean validation cosine, recall@1 and MRR with the per-seed MRR, then the chosen
values as the YAML to put under `baselines:` in params.yaml.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cube import numerics  # noqa: E402

numerics.pin(numerics.DEFAULT)  # before torch is imported: this study computes under the pipeline's default numerics

import torch  # noqa: E402

from cube import baselines, rivals  # noqa: E402
from cube.config import BaselinesConfig, MLPBaselineConfig, TunedStage  # noqa: E402
from cube.embedded import load_embedded  # noqa: E402
from harness import paths  # noqa: E402
from harness.config import load_params  # noqa: E402

GRIDS: dict[str, list[TunedStage]] = {
    "linear": [TunedStage(lr=lr, infonce_temperature=t, chain=chain)
               for chain, lr, t in itertools.product((True, False), (1e-4, 3e-4, 1e-3, 3e-3), (0.05, 0.1))],
    "mlp": [MLPBaselineConfig(lr=lr, hidden=h, chain=chain)
            for chain, lr, h in itertools.product((True, False), (1e-4, 3e-4, 1e-3, 3e-3), (256, 512))],
}
TRAIN = {"linear": baselines.linear, "mlp": baselines.mlp}
MEASURES = ("cosine", "recall@1", "mrr")


def main(names: list[str]) -> None:
    params = load_params(ROOT / paths.PARAMS)
    data = load_embedded(ROOT / paths.EMBEDDED)
    seeds = [params.seed, *params.quality.extra_seeds]
    chosen = {}
    for name in names or list(GRIDS):
        grid = GRIDS[name]
        assert len(grid) == rivals.SWEEP_CONFIGS and len(seeds) == rivals.SWEEP_SEEDS, "the cube's budget"
        print(f"## {name}: {len(grid)} configurations x seeds {seeds}, validation ({len(data.val)} pairs)")
        rows = []
        for tuned in grid:
            began = time.perf_counter()
            config = BaselinesConfig(**{name: tuned})
            runs = []
            for seed in seeds:
                fitted = TRAIN[name](data, seed, config, params.train, torch.device("cpu"))
                runs.append(data.val.score(fitted.predict(data.val.questions)))
            means = {m: statistics.fmean(r[m] for r in runs) for m in MEASURES}
            rows.append((means["mrr"], tuned))
            print(f"{tuned}  " + "  ".join(f"{m} {means[m]:.4f}" for m in MEASURES)
                  + "  MRR per seed " + " ".join(f"{r['mrr']:.3f}" for r in runs)
                  + f"  {time.perf_counter() - began:.0f}s", flush=True)
        chosen[name] = max(rows, key=lambda row: row[0])[1]
    print("\nbaselines:  # chosen on mean validation MRR")
    for name, tuned in chosen.items():
        print(f"  {name}:")
        for key, value in vars(tuned).items():
            print(f"    {key}: {str(value).lower() if isinstance(value, bool) else f'{value:g}'}")


if __name__ == "__main__":
    main(sys.argv[1:])
