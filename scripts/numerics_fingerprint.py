"""Hashes of the computations a training run is made of, under the portable pins: run on two CPUs, compare the lines.

    python scripts/numerics_fingerprint.py > fingerprint-$(hostname).txt

Each line is one computation on fixed inputs and the first 16 hex digits of the sha256 of its result's bytes: torch's
random draws, elementwise functions, a reduction, a matmul, the cube's forward, then its training step by step
(InfoNCE + cosine + diversity, AdamW) and the linear map's. The first line that differs between two machines names
the first computation whose bits depend on the CPU; every line after it may inherit the difference.
"""

from __future__ import annotations

import hashlib

from cube import numerics

numerics.pin("portable")  # before torch loads

import torch  # noqa: E402

from cube.config import CubeConfig, StageConfig  # noqa: E402
from cube.losses import stage_loss  # noqa: E402
from cube.processor import EmbeddingProcessor  # noqa: E402


def digest(*tensors: torch.Tensor) -> str:
    found = hashlib.sha256()
    for tensor in tensors:
        found.update(tensor.detach().contiguous().numpy().tobytes())
    return found.hexdigest()[:16]


def main() -> None:
    print(f"cpu: {numerics.cpu_model()}; torch {torch.__version__}; capability {numerics.describe().torch_cpu_capability}")
    torch.manual_seed(0)
    print("rand", digest(torch.rand(64, 384)), "randn", digest(torch.randn(64, 384)),
          "normal_", digest(torch.empty(64, 384).normal_(0, 0.01)), "randperm", digest(torch.randperm(1000)),
          "bernoulli_", digest(torch.empty(64, 384).bernoulli_(0.9)))
    q = torch.nn.functional.normalize(torch.randn(256, 384), dim=1)
    a = torch.nn.functional.normalize(q + 0.3 * torch.randn(256, 384), dim=1)
    print("inputs", digest(q, a))
    print("exp", digest(torch.exp(3 * q)), "log", digest(torch.log(q.abs() + 1e-3)), "tanh", digest(torch.tanh(3 * q)),
          "sum", digest(q.sum(1)), "norm", digest(q.norm(dim=1)), "matmul", digest(q @ a.T),
          "logsumexp", digest(torch.logsumexp(q @ a.T / 0.05, dim=1)))
    config = StageConfig(cosine_weight=1.0, infonce_weight=1.0, diversity_weight=0.05, mse_weight=0.5)
    cube = EmbeddingProcessor(384, CubeConfig())
    print("cube initial", digest(*cube.parameters()), "forward", digest(cube(q[:64])))
    optimizer = torch.optim.AdamW(cube.parameters(), lr=3e-3, weight_decay=0.01)
    for step in range(8):
        rows = slice(64 * (step % 4), 64 * (step % 4 + 1))
        loss, _ = stage_loss(cube(q[rows]), a[rows], config)
        optimizer.zero_grad()
        loss.backward()
        print(f"cube step {step}: loss {digest(loss)} gradient {digest(*(p.grad for p in cube.parameters()))}", end="")
        optimizer.step()
        print(f" weights {digest(*cube.parameters())}")
    linear = torch.nn.Linear(384, 384)
    optimizer = torch.optim.AdamW(linear.parameters(), lr=3e-3)
    for step in range(4):
        rows = slice(64 * step, 64 * (step + 1))
        loss, _ = stage_loss(linear(q[rows]), a[rows], config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print("linear after 4 steps", digest(*linear.parameters()))


if __name__ == "__main__":
    main()
