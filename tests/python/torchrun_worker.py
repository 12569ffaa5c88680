"""Started by torchrun (or torch.multiprocessing): init_process_group("kumi") from torch's own
environment and store, one all_reduce checked; prints "torchrun_worker ok <rank> <size>"."""
import os
import sys

import torch
import torch.distributed as dist

import kumi.torch  # noqa: F401


def main(rank=None, size=None, port=None):
    if rank is None:
        dist.init_process_group("kumi")  # env:// from torchrun: RANK, WORLD_SIZE, MASTER_ADDR/PORT
    else:
        dist.init_process_group("kumi", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    r, n = dist.get_rank(), dist.get_world_size()
    t = torch.full((1000,), float(r + 1))
    dist.all_reduce(t)
    ok = torch.all(t == n * (n + 1) / 2).item()
    dist.destroy_process_group()
    print(f"torchrun_worker {'ok' if ok else 'WRONG'} {r} {n}", flush=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
