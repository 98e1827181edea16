"""What the training stages log as curves: series that move, not constants or copies of another."""

from __future__ import annotations

from pathlib import Path

from cube.config import StageConfig
from harness.train import plotted_series, prune_constant_series


def test_constant_and_duplicate_series_are_not_plotted(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    (metrics / "val").mkdir(parents=True)
    (metrics / "train_loss.tsv").write_text("step\ttrain_loss\n0\t0.5\n1\t0.5\n")
    (metrics / "val" / "recall@10.tsv").write_text("step\trecall@10\n0\t1.0\n1\t1.0\n")
    (metrics / "val" / "mrr.tsv").write_text("step\tmrr\n0\t0.5\n1\t0.6\n")
    (metrics / "lr.tsv").write_text("step\tlr\n0\t0.003\n1\t0.003\n")
    removed = prune_constant_series(metrics)
    assert sorted(p.name for p in removed) == ["lr.tsv", "recall@10.tsv"]
    assert sorted(p.relative_to(metrics).as_posix() for p in metrics.rglob("*.tsv")) == ["train_loss.tsv", "val/mrr.tsv"]
    record = {"epoch": 1, "train_loss": 0.5, "loss/cosine": 0.5, "val/candidates": 122, "val/mrr": 0.5, "lr": 0.003,
              "pairs_used": 980}
    assert set(plotted_series(record, StageConfig())) == {"train_loss", "val/mrr"}
    curriculum = StageConfig(scheduler="plateau", curriculum=True, mse_weight=1.0)
    assert set(plotted_series(record | {"loss/mse": 0.1}, curriculum)) == {
        "train_loss", "loss/cosine", "loss/mse", "val/mrr", "lr", "pairs_used"}
