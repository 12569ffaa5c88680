"""A DDP training step of a ~25M-parameter MLP on CPU, backend kumi beside backend gloo in one run:
the same processes alternate between two DDP copies of the model, one per process group.

    kumirun -np 2 -- python benchmarks/python/ddp_step.py      # or torchrun --nproc-per-node 2

Prints (rank 0) the median step time of each and their ratio."""
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import kumi.torch  # noqa: F401


def main():
    rank = int(os.environ.get("RANK", os.environ.get("KUMI_RANK", 0)))
    size = int(os.environ.get("WORLD_SIZE", os.environ.get("KUMI_WORLD_SIZE", 1)))
    init = "env://" if "MASTER_ADDR" in os.environ else f"tcp://127.0.0.1:{os.environ.get('TORCH_STORE_PORT', '29660')}"
    dist.init_process_group("kumi", init_method=init, rank=rank, world_size=size)
    groups = {"kumi": dist.group.WORLD, "gloo": dist.new_group(backend="gloo")}
    torch.manual_seed(0)
    width, depth = 2048, 6  # 6 x (2048 x 2048 + 2048) = 25.2M parameters
    models = {}
    for name, g in groups.items():
        torch.manual_seed(0)
        net = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())])
        models[name] = (DDP(net, process_group=g), torch.optim.SGD(net.parameters(), lr=1e-4))
    params = sum(p.numel() for p in models["kumi"][0].parameters())
    x = torch.randn(8, width)
    steps = int(os.environ.get("STEPS", "8"))
    times = {name: [] for name in groups}
    for _ in range(steps):
        for name, (ddp, opt) in models.items():
            dist.barrier(group=groups[name])
            t0 = time.perf_counter()
            loss = ddp(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times[name].append(time.perf_counter() - t0)
    if rank == 0:
        k, g = statistics.median(times["kumi"][1:]), statistics.median(times["gloo"][1:])
        print(f"DDP step, {params / 1e6:.1f}M parameters, {size} ranks, median of {steps - 1}: "
              f"kumi {k * 1e3:.1f} ms, gloo {g * 1e3:.1f} ms, gloo/kumi {g / k:.2f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
