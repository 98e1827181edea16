"""What the training stages log as curves: series that move, not constants or copies of another."""

from __future__ import annotations

from pathlib import Path

from cube.config import StageConfig
from harness.stages.train import plotted_series, prune_constant_series


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


def test_the_summary_dvc_compares_is_the_kept_epoch_not_the_last() -> None:
    from cube.trainer import TrainResult
    from harness.stages.train import kept_summary

    history = [{"epoch": e, "train_loss": 1.0 / e, "val/mrr": mrr, "val/candidates": 50, "seconds": 2.0}
               for e, mrr in ((1, 0.30), (2, 0.40), (3, 0.35))]
    result = TrainResult("advanced", history, best_epoch=2, best_value=0.40, monitor="mrr", epochs_run=3,
                         stopped_early=False, resumed_from_epoch=None, start_val={"mrr": 0.2, "candidates": 50})
    assert kept_summary(result, StageConfig()) == {"train_loss": 0.5, "val": {"mrr": 0.40}, "kept_epoch": 2,
                                                   "step": 1}
    unchanged = TrainResult("advanced", history, best_epoch=0, best_value=0.2, monitor="mrr", epochs_run=3,
                            stopped_early=True, resumed_from_epoch=None, start_val={"mrr": 0.2, "candidates": 50})
    assert kept_summary(unchanged, StageConfig()) == {"val": {"mrr": 0.2}, "kept_epoch": 0, "step": 0}
