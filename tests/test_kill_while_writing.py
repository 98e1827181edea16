"""SIGKILL a real process while it writes a report or a checkpoint: the previous file stays whole and valid.

The writer is paused at the worst moment (a hook sleeps inside the write) so the kill lands mid-write every
time; the kill itself is a real SIGKILL of a separate Python process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cube.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def start(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_when(process: subprocess.Popen, ready: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert process.poll() is None, f"writer exited early: {process.stderr.read()}"
        assert time.monotonic() < deadline, "writer never reached the pause"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.fault
def test_killed_while_writing_a_report_leaves_the_previous_report(tmp_path):
    report = tmp_path / "report.md"
    report.write_text("# the previous report\n", encoding="utf-8")
    writer = start("""
        import sys, time
        from pathlib import Path
        from cube import atomic

        def slow_writer(tmp):
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write("# the new report, first half")
                handle.flush()
                Path(sys.argv[2]).touch()   # tell the test we are mid-write
                time.sleep(60)

        atomic.write_with(sys.argv[1], slow_writer)
    """, str(report), str(tmp_path / "mid-write"))
    kill_when(writer, tmp_path / "mid-write")
    assert report.read_text(encoding="utf-8") == "# the previous report\n"
    assert [p.name for p in tmp_path.glob("*.md")] == ["report.md"]  # the partial file is only ever a hidden .tmp


@pytest.mark.fault
def test_killed_between_weights_and_sidecar_keeps_the_previous_checkpoint(tmp_path):
    directory = tmp_path / "dialogue"
    save_checkpoint(directory, {"w": torch.ones(4)}, {"stage": "dialogue", "epoch": 1})
    writer = start("""
        import sys, time
        from pathlib import Path
        import torch
        from cube import atomic, checkpoint

        original = atomic.write_json

        def paused_write_json(target, obj):
            Path(sys.argv[2]).touch()   # new weights are on disk; the sidecar (the commit point) is not yet
            time.sleep(60)
            original(target, obj)

        atomic.write_json = paused_write_json
        checkpoint.save_checkpoint(sys.argv[1], {"w": torch.full((4,), 2.0)}, {"stage": "dialogue", "epoch": 2})
    """, str(directory), str(tmp_path / "mid-write"))
    kill_when(writer, tmp_path / "mid-write")
    survived = load_checkpoint(directory)
    assert survived.meta["epoch"] == 1 and torch.equal(survived.tensors["w"], torch.ones(4))
    assert json.loads((directory / "checkpoint.json").read_text())["epoch"] == 1
    assert len(list(directory.glob("weights-*.safetensors"))) == 2  # the orphan is ignored, removed by the next save
