"""One rank of tests/python/test_torch.py's DDP check: a small MLP trained for STEPS steps with
DistributedDataParallel over the backend named in argv[1] ("kumi" or "gloo"); prints the loss of
every step and a digest of the final parameters, which the test compares across backends and ranks."""
import gc
import hashlib
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

import kumi.torch  # noqa: F401

backend = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
rank, size = int(os.environ["KUMI_RANK"]), int(os.environ["KUMI_WORLD_SIZE"])
dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{os.environ['TORCH_STORE_PORT']}", rank=rank,
                        world_size=size)
torch.manual_seed(0)  # the same initial model everywhere (DDP also broadcasts rank 0's)
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
ddp = DDP(model, bucket_cap_mb=0.01)  # several buckets: allreduces overlap the backward pass
opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
gen = torch.Generator().manual_seed(1000 + rank)  # each rank its own data
w_true = torch.randn(32, 1, generator=torch.Generator().manual_seed(7))
for step in range(steps):
    x = torch.randn(16, 32, generator=gen)
    y = x @ w_true + 0.01 * torch.randn(16, 1, generator=gen)
    loss = nn.functional.mse_loss(ddp(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    # The mean loss over ranks, so that every backend's run prints the same sequence.
    l = loss.detach().clone()
    dist.all_reduce(l, op=dist.ReduceOp.SUM)
    print(f"LOSS {step} {l.item() / size:.8f}", flush=True)
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
print(f"PARAMS {rank} {digest}", flush=True)
# Drop what holds the process group before destroying it, so that gloo's worker threads are
# joined while Python still runs. (Left to interpreter shutdown, a gloo thread can free its last
# work item there, block on the GIL and abort the process: "terminate called without an active
# exception", seen in about 1 of 10 gloo runs here; torch's issue, not kumi's.)
del ddp, opt, model
gc.collect()
dist.destroy_process_group()
