"""DistributedDataParallel over NCCL with one process: the cube's steps under DDP equal the same steps without it.

    python -m torch.distributed.run --nproc_per_node=1 scripts/gpu_ddp_check.py      (scripts/gpu_check.py runs it)

Checks that NCCL initialises on this GPU, that DDP's gradient hooks see the gradients of the cube's hand-written
backward, and that with one process (the all-reduce of one gradient) training is unchanged: the weights after five
AdamW steps equal a plain run's within float tolerance. Prints one line; exit status 1 on a difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cube.config import CubeConfig  # noqa: E402
from cube.processor import EmbeddingProcessor  # noqa: E402

STEPS, BATCH, DIM = 5, 256, 384


def weights_after_steps(device: torch.device, wrap: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = EmbeddingProcessor(DIM, CubeConfig()).to(device)
    trained = DistributedDataParallel(model, device_ids=[device.index]) if wrap else model
    optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-3)
    data = F.normalize(torch.randn(STEPS * BATCH, DIM, generator=torch.Generator().manual_seed(1)), dim=-1).to(device)
    for batch in data.split(BATCH):
        loss = (1 - F.cosine_similarity(trained(batch), batch.flip(0))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return [p.detach().cpu().clone() for p in model.parameters()]


def main() -> int:
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", device_id=device)
    try:
        plain, wrapped = weights_after_steps(device, False), weights_after_steps(device, True)
    finally:
        dist.destroy_process_group()
    largest = max(float((a - b).abs().max()) for a, b in zip(plain, wrapped))
    same = largest <= 1e-6
    print(f"DDP over NCCL (world size 1, torch {torch.__version__}, NCCL {torch.cuda.nccl.version()}): {STEPS} steps, "
          f"largest weight difference to a plain run {largest:.2e}: {'same' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
