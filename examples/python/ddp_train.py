"""DDP training with kumi as the torch.distributed backend: the only kumi line is the import.

    torchrun --nproc-per-node 4 examples/python/ddp_train.py          # torch's launcher
    kumirun -np 4 -- python examples/python/ddp_train.py              # kumi's (KUMI_* -> env below)

A small regression model on synthetic data, 300 steps; rank 0 prints the loss every 50 steps.
Switch BACKEND=gloo to compare."""
import os

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import kumi.torch  # noqa: F401  registers backend "kumi"


def main():
    if "RANK" not in os.environ:  # under kumirun: torch's env:// wants these names
        os.environ.update(RANK=os.environ["KUMI_RANK"], WORLD_SIZE=os.environ["KUMI_WORLD_SIZE"],
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", "29510"))
    dist.init_process_group(os.environ.get("BACKEND", "kumi"))
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(rank)
    w = torch.randn(64, 1, generator=torch.Generator().manual_seed(1))
    for step in range(300):
        x = torch.randn(32, 64, generator=gen)
        loss = nn.functional.mse_loss(model(x), x @ w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rank == 0 and step % 50 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
