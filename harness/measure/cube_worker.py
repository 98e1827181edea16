"""One cube, timed on request, in a process of its own: the worker behind the interleaved timings of two codes (this
revision's cube against the baseline revision's) and of two numerics (portable against native).

Run as a script, ``python harness/measure/cube_worker.py --code DIR ...``: ``cube`` is imported from DIR (a revision's
tree), torch under whatever numerics the environment pins, and nothing from ``harness``, so every revision is timed by
this same code. Requests are JSON lines on stdin (``{"phase": "train", "batch": 64, "calls": 3}``); each answer is one
JSON line on stdout (``{"seconds": [...]}``). The phases are those of ``harness/measure/phases.py``: a no-grad forward,
and a training step (forward, cosine loss, backward, AdamW step) on fixed random unit inputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def build(code: Path, dim: int, cube_section: dict[str, Any], seed: int, device: str) -> tuple[Any, Any, str]:
    """The cube of the code in ``code``, its optimizer, and where its package was imported from."""
    import torch

    import cube
    from cube.config import CubeConfig
    from cube.processor import EmbeddingProcessor

    found = Path(cube.__file__).resolve().parent
    if found.parent != code.resolve():
        raise SystemExit(f"cube_worker: imported cube from {found}, not from {code}")
    config = CubeConfig(**{key: tuple(value) if isinstance(value, list) else value
                           for key, value in cube_section.items()})
    torch.manual_seed(seed)
    model = EmbeddingProcessor(dim, config).to(device)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3), str(found)


def serve(model: Any, optimizer: Any, dim: int, device: str, warmup: int) -> None:
    import torch
    import torch.nn.functional as F

    inputs: dict[int, tuple[Any, Any]] = {}
    warmed: set[tuple[str, int]] = set()

    def batch(size: int) -> tuple[Any, Any]:
        if size not in inputs:
            generator = torch.Generator().manual_seed(size)
            x = F.normalize(torch.randn(size, dim, generator=generator), dim=-1).to(device)
            inputs[size] = x, F.normalize(torch.randn(size, dim, generator=generator), dim=-1).to(device)
        return inputs[size]

    def forward(x: Any, target: Any) -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    def train(x: Any, target: Any) -> None:
        model.train()
        loss = 1.0 - F.cosine_similarity(model(x), target, dim=-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def finish() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    phases = {"forward": forward, "train": train}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            return
        step, (x, target) = phases[request["phase"]], batch(int(request["batch"]))
        if (request["phase"], x.shape[0]) not in warmed:
            for _ in range(warmup):
                step(x, target)
            finish()
            warmed.add((request["phase"], x.shape[0]))
        seconds = []
        for _ in range(int(request["calls"])):
            began = time.perf_counter()
            step(x, target)
            finish()
            seconds.append(time.perf_counter() - began)
        print(json.dumps({"seconds": seconds}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, required=True, help="the tree whose cube/ is timed")
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--cube", required=True, help="params.yaml's cube section as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(args.code)] + [p for p in sys.path if Path(p or ".").resolve() != here]
    model, optimizer, imported = build(args.code, args.dim, json.loads(args.cube), args.seed, args.device)
    import torch

    print(json.dumps({"ready": True, "cube": imported, "threads": torch.get_num_threads(),
                      "capability": str(torch.backends.cpu.get_cpu_capability())}), flush=True)
    serve(model, optimizer, args.dim, args.device, args.warmup)


if __name__ == "__main__":
    main()
