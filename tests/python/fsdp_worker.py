"""One rank of tests/python/test_torch.py's FSDP2 check: fully_shard on CPU over the backend in
argv[1]; prints per-step mean losses and a digest of this rank's parameter shards at the end."""
import gc
import hashlib
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.fsdp import fully_shard

import kumi.torch  # noqa: F401

backend, steps = sys.argv[1], int(sys.argv[2])
rank, size = int(os.environ["KUMI_RANK"]), int(os.environ["KUMI_WORLD_SIZE"])
dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{os.environ['TORCH_STORE_PORT']}", rank=rank,
                        world_size=size)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
for layer in model:
    if isinstance(layer, nn.Linear):
        fully_shard(layer)
fully_shard(model)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
gen = torch.Generator().manual_seed(1000 + rank)
w_true = torch.randn(32, 1, generator=torch.Generator().manual_seed(7))
for step in range(steps):
    x = torch.randn(16, 32, generator=gen)
    y = x @ w_true
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    l = loss.detach().clone()
    dist.all_reduce(l)
    print(f"LOSS {step} {l.item() / size:.8f}", flush=True)
# Each rank's shards (DTensor.full_tensor() would need torch's functional collectives, which reach
# only backends written in C++: a documented limit of a Python backend).
local = [p.to_local().detach() for p in model.parameters()]
digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in local)).hexdigest()
print(f"PARAMS {rank} {digest}", flush=True)
# Drop what holds the process group before destroying it, so that gloo's worker threads are
# joined while Python still runs. (Left to interpreter shutdown, a gloo thread can free its last
# work item there, block on the GIL and abort the process: "terminate called without an active
# exception", seen in about 1 of 10 gloo runs here; torch's issue, not kumi's.)
del opt, model, local
gc.collect()
dist.destroy_process_group()
