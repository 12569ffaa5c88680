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
# all_to_all: block j of rank r holds 100 r + j; afterwards block j holds 100 j + r.
inp = torch.tensor([100 * rank + j for j in range(size) for _ in range(3)], dtype=torch.float32)
out = torch.empty(3 * size)
dist.all_to_all_single(out, inp)
expect(torch.equal(out, torch.tensor([100 * j + rank for j in range(size) for _ in range(3)], dtype=torch.float32)),
       f"all_to_all_single {out}")
# Uneven splits (the MoE case): rank r sends r + j + 1 rows of 2 to rank j.
rows_in = [rank + j + 1 for j in range(size)]
rows_out = [j + rank + 1 for j in range(size)]
inp = torch.cat([torch.full((k, 2), 100 * rank + j, dtype=torch.int64) for j, k in enumerate(rows_in)])
out = torch.empty((sum(rows_out), 2), dtype=torch.int64)
dist.all_to_all_single(out, inp, output_split_sizes=rows_out, input_split_sizes=rows_in)
want = torch.cat([torch.full((k, 2), 100 * j + rank, dtype=torch.int64) for j, k in enumerate(rows_out)])
expect(torch.equal(out, want), f"all_to_all_single with uneven splits {out.tolist()}")
outs = [torch.empty(j + 1, dtype=torch.float64) for j in range(size)]
dist.all_to_all(outs, [torch.full((rank + 1,), float(10 * rank + j), dtype=torch.float64) for j in range(size)])
expect(all(torch.equal(o, torch.full((j + 1,), float(10 * j + rank), dtype=torch.float64)) for j, o in enumerate(outs)),
       f"all_to_all (lists) {outs}")
# PREMUL_SUM (FSDP2's custom gradient divide factor): every rank's input times its factor, summed.
# A per-rank tensor factor makes a post-multiplication wrong, so the check tells them apart.
if hasattr(dist.ReduceOp.PREMUL_SUM, "__call__"):
    t = torch.full((6,), float(rank + 1))
    dist.all_reduce(t, op=dist.ReduceOp.PREMUL_SUM(torch.tensor(float(rank + 1))))
    expect(torch.allclose(t, torch.full((6,), float(sum((k + 1) ** 2 for k in range(size))))), f"premul_sum all_reduce {t}")
    inp = torch.arange(2 * size, dtype=torch.float32)
    keep = inp.clone()
    out = torch.empty(2)
    dist.reduce_scatter_tensor(out, inp, op=dist.ReduceOp.PREMUL_SUM(0.5))
    expect(torch.allclose(out, 0.5 * size * torch.arange(2 * rank, 2 * rank + 2, dtype=torch.float32)),
           f"premul_sum reduce_scatter_tensor {out}")
    expect(torch.equal(inp, keep), "premul_sum reduce_scatter_tensor leaves its input alone")
    r = torch.full((3,), 2.0)
    dist.reduce(r, dst=0, op=dist.ReduceOp.PREMUL_SUM(0.25))
    if rank == 0:
        expect(torch.allclose(r, torch.full((3,), 0.5 * size)), f"premul_sum reduce {r}")
    try:
        dist.all_reduce(torch.ones(4, dtype=torch.int32), op=dist.ReduceOp.PREMUL_SUM(2.0))
        failures.append("premul_sum on int32: accepted")
    except Exception as e:  # noqa: BLE001
        expect("PREMUL_SUM" in str(e), f"premul_sum on int32 names the problem: {e}")
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
        ("strided", lambda: dist.all_reduce(torch.ones(8)[::2]), "contiguous"),
        ("meta device", lambda: dist.all_reduce(torch.ones(4, device="meta")), "CPU and CUDA")):
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
