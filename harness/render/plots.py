"""The report's figures, drawn with matplotlib and written as PNG (atomically)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
from pydantic import BaseModel, ConfigDict

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cube import atomic  # noqa: E402
from harness.stats.paired import PairedDifference  # noqa: E402
from harness.store.results import Bench, Exponents, ModelSummary, Scaling, ScalingRow  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    atomic.write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    plt.close(figure)


class EpochRecord(BaseModel):
    """One epoch of a stage's history as its checkpoint sidecar keeps it: training loss, and the validation figures
    (``val/<measure>``) among its other series."""

    model_config = ConfigDict(extra="allow", frozen=True)

    epoch: int
    train_loss: float

    def val(self, measure: str) -> float:
        return (self.model_extra or {})[f"val/{measure}"]


class CheckpointHistory(BaseModel):
    """The part of a checkpoint's sidecar the report plots."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    history: list[EpochRecord]


def loss_curves(histories: dict[str, list[EpochRecord]], monitors: dict[str, str], path: Path) -> None:
    """One panel per stage, each with its own scales (the stages' losses differ by orders of magnitude): training
    loss on the left axis, on the right the validation measure the stage keeps its best epoch by (its monitor)."""
    figure, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3.6), squeeze=False)
    for axis, (stage, history) in zip(axes[0], histories.items()):
        epochs = [r.epoch for r in history]
        axis.plot(epochs, [r.train_loss for r in history], marker=".", color="tab:blue", label="training loss")
        axis.set(title=stage, xlabel="epoch")
        axis.set_ylabel("training loss", color="tab:blue")
        axis.grid(alpha=0.3)
        val = axis.twinx()
        monitor = monitors[stage]
        val.plot(epochs, [r.val(monitor) for r in history], marker=".", color="tab:orange")
        val.set_ylabel(f"validation {monitor} (chosen on)", color="tab:orange")
    _save(figure, path)


def quality_bars(rows: dict[str, ModelSummary], seeds: list[int], path: Path) -> None:
    """Test recall@1, MRR and cosine, one panel each with its own zoomed axis (differences of 0.01 must show): every
    stage and baseline as a bar, mean over seeds with ± std."""
    measures = ["recall@1", "mrr", "cosine"]
    names = list(rows)
    figure, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 0.38 * len(names) + 1.6), sharey=True)
    for axis, measure in zip(axes, measures):
        means = [rows[n].test[measure].mean for n in names]
        stds = [rows[n].test[measure].std for n in names]
        colours = ["tab:blue" if n.startswith("cube") else "tab:grey" for n in names]
        axis.barh(range(len(names)), means, xerr=stds, color=colours, capsize=2)
        low, high = min(m - s for m, s in zip(means, stds)), max(m + s for m, s in zip(means, stds))
        margin = 0.08 * (high - low) or 0.01
        axis.set_xlim(max(0.0, low - margin), high + margin)
        axis.set(title=f"test {measure}", xlabel="mean ± std over seeds (axis zoomed)")
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    figure.suptitle(f"cube stages (blue) and baselines (grey), seeds {', '.join(map(str, seeds))}", fontsize=9)
    _save(figure, path)


def paired_differences(comparisons: dict[str, dict[str, PairedDifference]], measures: tuple[str, ...], stage: str,
                       path: Path) -> None:
    """Cube minus each baseline, one panel per measure: the mean difference with its 95% interval, 0 marked."""
    names = list(comparisons)
    figure, axes = plt.subplots(1, len(measures), figsize=(4 * len(measures), 0.45 * len(names) + 1.6), sharey=True)
    colours = {"better": "tab:green", "worse": "tab:red", "no significant difference": "tab:grey"}
    for axis, measure in zip(axes, measures):
        for row, name in enumerate(names):
            entry = comparisons[name][measure]
            axis.errorbar(entry.mean, row, xerr=[[entry.mean - entry.low], [entry.high - entry.mean]],
                          fmt="o", capsize=3, color=colours[entry.verdict])
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set(title=f"{measure}: cube ({stage}) - baseline", xlabel="difference (95% interval)")
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    figure.suptitle("green: cube better, red: worse, grey: no significant difference", fontsize=9)
    _save(figure, path)


def throughput(bench: Bench, path: Path, label: Callable[[str], str] = str) -> None:
    """Samples per second against batch size, one panel per phase, median with min-max bars.

    With a peer sweep, every line comes from it (the cube and each peer timed in alternation at each batch, so load
    lands on all alike); without one, the cube's line is the batch sweep's.
    """
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, phase in zip(axes, ("forward", "train")):
        if bench.peer_sweep:
            names = list(dict.fromkeys(r.implementation for point in bench.peer_sweep for r in point.rows))
            for name in names:
                points = [(r.batch_size, r.samples_per_s, r.samples_per_s_min, r.samples_per_s_max)
                          for point in bench.peer_sweep for r in point.rows
                          if r.implementation == name and r.phase == phase]
                _rate_line(axis, points, label(name), "-" if name == "own" else "--")
        else:
            rows = [r for r in bench.rows if r.phase == phase]
            _rate_line(axis, [(r.batch_size, r.samples_per_s, r.samples_per_s_min, r.samples_per_s_max)
                              for r in rows], label("own"), "-")
        axis.set(xscale="log", yscale="log", xlabel="batch size", ylabel="samples / s", title=phase)
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=7)
    how = "cube and peers timed in alternation at each batch" if bench.peer_sweep else "the cube's batch sweep"
    figure.suptitle(f"throughput against batch size on {bench.device} ({how})", fontsize=10)
    _save(figure, path)


def _rate_line(axis: plt.Axes, points: list[tuple[int, float, float, float]], label: str, style: str) -> None:
    """(batch, median, min, max) points as one line with min-max bars."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    errors = [[y - p[2] for y, p in zip(ys, points)], [p[3] - y for y, p in zip(ys, points)]]
    axis.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, linestyle=style, label=label)


def scaling(scaling_result: Scaling, device: str, path: Path) -> None:
    """Log-log: time and memory per sample against lattice side, and against propagation steps."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    side_rows, fits = scaling_result.by_side.rows, scaling_result.by_side.exponent
    series: list[tuple[Callable[[ScalingRow], Any], str, Callable[[Exponents], float | None]]] = [
        (lambda r: r.ms_per_sample, "time (ms)", lambda e: e.time),
        (lambda r: r.saved_mib_per_sample, "saved for backward (MiB)", lambda e: e.saved_memory)]
    if side_rows[0].cuda_peak_increase_mib_per_sample is not None:
        series.append((lambda r: r.cuda_peak_increase_mib_per_sample, "CUDA peak allocated (MiB)",
                       lambda e: e.cuda_peak_memory))
    for value, label, fit in series:
        axes[0].plot([r.side for r in side_rows], [value(r) for r in side_rows], marker="o",
                     label=f"{label}, exponent {_exponent(fit(fits))}")
    axes[0].set(title="per sample against lattice side (cells = side³)", xlabel="lattice side")
    for name in ("plain", "checkpointed"):
        rows, fits = scaling_result.by_steps[name].rows, scaling_result.by_steps[name].exponent
        for value, label, fit in series[:2]:
            axes[1].plot([r.steps for r in rows], [value(r) for r in rows], marker="o",
                         linestyle="-" if name == "plain" else "--",
                         label=f"{label}, {name}, exponent {_exponent(fit(fits))}")
    axes[1].set(title="per sample against propagation steps", xlabel="steps")
    for axis in axes:
        axis.set(xscale="log", yscale="log")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=7)
    figure.suptitle(f"scaling of a training forward+backward on {device}", fontsize=10)
    _save(figure, path)


def _exponent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
