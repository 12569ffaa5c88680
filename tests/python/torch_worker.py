"""One rank of tests/python/test_torch.py: torch.distributed with backend "kumi" (CPU tensors),
every result checked against a direct computation. Run under kumirun (rank and size from
KUMI_RANK/KUMI_WORLD_SIZE, torch's store at TORCH_STORE_PORT)."""
import os
import sys

import torch
import torch.distributed as dist

import kumi.torch  # noqa: F401  (registers the backend)

rank, size = int(os.environ["KUMI_RANK"]), int(os.environ["KUMI_WORLD_SIZE"])
dist.init_process_group("kumi", init_method=f"tcp://127.0.0.1:{os.environ['TORCH_STORE_PORT']}", rank=rank,
                        world_size=size)
failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)


for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.uint8,
              torch.int8):
    t = torch.full((1000,), rank + 1, dtype=dtype)
    dist.all_reduce(t)
    expect(torch.all(t == size * (size + 1) // 2).item(), f"all_reduce sum {dtype}")
t = torch.full((10,), float(rank), dtype=torch.float32)
dist.all_reduce(t, op=dist.ReduceOp.AVG)
expect(torch.allclose(t, torch.full((10,), (size - 1) / 2)), "all_reduce avg")
t = torch.full((10,), float(rank))
dist.all_reduce(t, op=dist.ReduceOp.MAX)
expect(torch.all(t == size - 1).item(), "all_reduce max")
# async with a future, as DDP uses it
t = torch.ones(100)
work = dist.all_reduce(t, async_op=True)
fut = work.get_future()
res = fut.wait()
expect(torch.all(t == size).item(), "async all_reduce")
b = torch.full((7,), float(rank))
dist.broadcast(b, src=size - 1)
expect(torch.all(b == size - 1).item(), "broadcast")
outs = [torch.empty(3) for _ in range(size)]
dist.all_gather(outs, torch.full((3,), float(rank)))
expect(all(torch.all(o == k).item() for k, o in enumerate(outs)), "all_gather")
flat = torch.empty(3 * size)
dist.all_gather_into_tensor(flat, torch.full((3,), float(rank)))
expect(torch.equal(flat, torch.arange(size).repeat_interleave(3).float()), "all_gather_into_tensor")
inp = torch.arange(4 * size, dtype=torch.float32)
out = torch.empty(4)
dist.reduce_scatter_tensor(out, inp)
expect(torch.equal(out, size * torch.arange(4 * rank, 4 * rank + 4, dtype=torch.float32)), "reduce_scatter_tensor")
r = torch.full((5,), float(rank + 1))
dist.reduce(r, dst=0)
if rank == 0:
    expect(torch.all(r == size * (size + 1) / 2).item(), "reduce")
dist.barrier()
if size > 1:
    if rank == 0:
        dist.send(torch.tensor([42.0]), dst=1)
    elif rank == 1:
        got = torch.empty(1)
        dist.recv(got, src=0)
        expect(got.item() == 42.0, "send/recv")
# Errors from bad calls raised in Python, naming the problem; the group stays usable.
for what, call, word in (
        ("bool dtype", lambda: dist.all_reduce(torch.ones(4, dtype=torch.bool)), "dtype"),
        ("sizes", lambda: dist.all_gather_into_tensor(torch.empty(2), torch.ones(3)), "elements"),
        ("strided", lambda: dist.all_reduce(torch.ones(8)[::2]), "contiguous")):
    try:
        call()
        failures.append(f"{what}: accepted")
    except Exception as e:  # noqa: BLE001 - torch may wrap kumi's error
        expect(word in str(e), f"{what}: the error names the problem: {e}")
t = torch.ones(3)
dist.all_reduce(t)
expect(torch.all(t == size).item(), "usable after refused calls")
dist.barrier()
dist.destroy_process_group()
if failures:
    print(f"torch_worker FAILED {rank}: {failures}", flush=True)
    sys.exit(1)
print(f"torch_worker ok {rank} {size}", flush=True)
