"""How many of the default report's verdicts change when the inputs move in their last bit.

A verdict is about a training recipe, so float noise in the teacher embeddings (another CPU, BLAS or torch
release) must not move it. For each perturbation this script copies the working tree into a throw-away git
repository (``harness.workflows.profile.make_workspace``), takes this checkout's teacher embeddings from its cache, nudges
them, and re-runs every stage from ``datasets`` to ``evaluate``; then it lists each paired verdict of
``metrics/evaluate.json`` that differs from the committed one. Run after ``dvc repro``, from the repository root:

    .venv/bin/python scripts/perturbation_study.py [up down random]   # > reports/perturbation_study.txt

The perturbations, each on 10% of the sentences (rows drawn by a seed of their own):
- ``up``: every component one ulp towards +inf (``numpy.nextafter``);
- ``down``: every component one ulp towards -inf;
- ``random``: every component one ulp up or down at random.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cube import numerics  # noqa: E402

numerics.pin(numerics.DEFAULT)  # before torch is imported: this study computes under the pipeline's default numerics

import torch  # noqa: E402

from cube.embedding_cache import _content_hash  # noqa: E402
from harness.store.results import Evaluation, read_result  # noqa: E402
from harness.workflows.profile import make_workspace, run  # noqa: E402

KINDS = {"up": 1, "down": 2, "random": 3}  # perturbation -> the seed that draws its rows
STAGES = (["check"], ["datasets"], ["train", "autoencoder"], ["train", "dialogue"], ["train", "optimized"],
          ["train", "advanced"], ["seeds"], ["evaluate"])


def nudge(cache_file: Path, kind: str) -> int:
    """Move 10% of the cached embeddings by one ulp; returns how many rows moved."""
    tensors = load_file(cache_file)
    with safe_open(cache_file, "pt") as handle:
        meta = handle.metadata()
    vectors = tensors["embeddings"].numpy().copy()
    rng = np.random.default_rng(KINDS[kind])
    rows = rng.choice(len(vectors), size=len(vectors) // 10, replace=False)
    if kind == "random":
        towards = np.where(rng.random(vectors[rows].shape) < 0.5, np.inf, -np.inf).astype(np.float32)
    else:
        towards = np.float32(np.inf if kind == "up" else -np.inf)
    vectors[rows] = np.nextafter(vectors[rows], towards)
    tensors["embeddings"] = torch.from_numpy(vectors)
    meta["content_sha256"] = _content_hash(tensors["keys"], tensors["embeddings"])
    save_file(tensors, str(cache_file), metadata=meta)
    return len(rows)


def verdicts(evaluation: Evaluation) -> dict[str, str]:
    """Each comparison's verdict, marked when the report shows it as borderline."""
    return {f"{name} on {measure}": comparison.verdict + (" (borderline)" if comparison.borderline else "")
            for name, measures in evaluation.comparisons.items() for measure, comparison in measures.items()}


def same_verdict(was: str, now: str) -> bool:
    return was.removesuffix(" (borderline)") == now.removesuffix(" (borderline)")


def main(kinds: list[str]) -> int:
    committed = read_result(ROOT / "metrics" / "evaluate.json", Evaluation)
    reference = verdicts(committed)
    caches = sorted((ROOT / "data" / "cache").glob("*.safetensors"))
    if not caches:
        print("error: no teacher embeddings in data/cache; run `dvc repro` first", file=sys.stderr)
        return 2
    overlay = Path(tempfile.mkdtemp()) / "none.yaml"
    overlay.write_text("{}\n", encoding="utf-8")
    print(f"{len(reference)} verdicts in the committed metrics/evaluate.json "
          f"({committed.test_pairs} test pairs, seeds {committed.summary.seeds})")
    for kind in kinds:
        began = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"cube-perturb-{kind}-") as scratch:
            repo = make_workspace(Path(scratch), overlay)
            (repo / "data" / "cache").mkdir(parents=True)
            for cache in caches:
                shutil.copy2(cache, repo / "data" / "cache" / cache.name)
            moved = sum(nudge(path, kind) for path in (repo / "data" / "cache").glob("*.safetensors"))
            for command in STAGES:
                run([sys.executable, "-m", "harness", *command], repo)
            perturbed = read_result(repo / "metrics" / "evaluate.json", Evaluation)
        now = verdicts(perturbed)
        changed = {key: (was, now[key]) for key, was in reference.items() if not same_verdict(was, now[key])}
        mrr = perturbed.summary.models[f"cube: {perturbed.chosen_stage}"].test["mrr"]
        print(f"\n{kind}: {moved} cached rows moved by one ulp; {len(changed)} of {len(reference)} verdicts changed "
              f"(chosen stage {perturbed.chosen_stage}, test MRR {mrr.mean:.4f} ± {mrr.std:.4f}; "
              f"{time.perf_counter() - began:.0f} s)")
        for key, (was, became) in changed.items():
            print(f"- {key}: {was} -> {became}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(KINDS)))
