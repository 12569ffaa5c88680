"""One rank of the torch CUDA check (scripts/device-check.sh): backend "kumi" on CUDA tensors, on
a machine with a GPU and a CUDA build of torch. Every process may share one GPU (kumirun -np 2
on a one-GPU machine; kumirun's variables, torch's store at TORCH_STORE_PORT). Checks stream semantics as NCCL users rely on them: a collective is
queued on the current stream, work.wait() orders the then-current stream after it, and results
are right once the stream is synchronized. Prints "torch_cuda_worker ok <rank> <size>"."""
import os
import sys

import torch
import torch.distributed as dist

import kumi.torch  # noqa: F401 - registers the backend

failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)


if not torch.cuda.is_available():
    print("torch_cuda_worker: torch sees no GPU", flush=True)
    sys.exit(2)

rank, size = int(os.environ["KUMI_RANK"]), int(os.environ["KUMI_WORLD_SIZE"])
dev = torch.device("cuda", int(os.environ.get("KUMI_LOCAL_RANK", rank)) % torch.cuda.device_count())
torch.cuda.set_device(dev)
dist.init_process_group("kumi", init_method=f"tcp://127.0.0.1:{os.environ['TORCH_STORE_PORT']}", rank=rank,
                        world_size=size)

# On a side stream: the input is written there, the collective queued after it, and a kernel
# queued after the collective sees its result.
side = torch.cuda.Stream(dev)
with torch.cuda.stream(side):
    x = torch.full((1 << 20,), float(rank + 1), device=dev)
    work = dist.all_reduce(x, async_op=True)
    work.wait()
    y = x * 2
side.synchronize()
want = float(size * (size + 1) // 2)
expect(torch.all(x == want).item(), "all_reduce on a side stream")
expect(torch.all(y == 2 * want).item(), "a kernel after the collective on its stream sees the result")

# wait() on another stream than the one the collective went on: that stream waits for it.
a = torch.full((4 << 20,), 1.0, device=dev)
w = dist.all_reduce(a, async_op=True)
other = torch.cuda.Stream(dev)
with torch.cuda.stream(other):
    w.wait()
    b = a + 1
other.synchronize()
expect(torch.all(b == size + 1).item(), "wait() orders another stream after the collective")

# Every dtype torch uses with collectives.
for dt in (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int64, torch.int8,
           torch.uint8):
    t = torch.full((1000,), rank + 1, dtype=dt, device=dev)
    dist.all_reduce(t)
    expect(torch.all(t.float() == want).item(), f"all_reduce {dt}")

# The calls DDP and FSDP make.
bcast = torch.full((333,), float(rank), device=dev)
dist.broadcast(bcast, src=size - 1)
expect(torch.all(bcast == size - 1).item(), "broadcast")
gathered = torch.empty(size * 5, device=dev)
dist.all_gather_into_tensor(gathered, torch.full((5,), float(rank), device=dev))
expect(torch.equal(gathered.cpu(), torch.arange(size).repeat_interleave(5).float()), "all_gather_into_tensor")
outs = [torch.empty(3, device=dev) for _ in range(size)]
dist.all_gather(outs, torch.full((3,), float(rank), device=dev))
expect(all(torch.all(o == k).item() for k, o in enumerate(outs)), "all_gather (list)")
rs = torch.empty(4, device=dev)
dist.reduce_scatter_tensor(rs, torch.arange(4 * size, dtype=torch.float32, device=dev) + rank, op=dist.ReduceOp.AVG)
full = sum(torch.arange(4 * size, dtype=torch.float32) + k for k in range(size)) / size
expect(torch.allclose(rs.cpu(), full[4 * rank:4 * (rank + 1)]), "reduce_scatter_tensor AVG")
a2a = torch.empty(size * 2, device=dev)
dist.all_to_all_single(a2a, torch.tensor([100.0 * rank + j for j in range(size) for _ in range(2)], device=dev))
expect(torch.equal(a2a.cpu(), torch.tensor([100.0 * j + rank for j in range(size) for _ in range(2)])),
       "all_to_all_single")
dist.barrier()

# A short DDP run on the GPU: every rank ends with the same parameters.
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8)).to(dev)
ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev])
opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
gen = torch.Generator(device="cpu").manual_seed(rank)
for _ in range(50):
    inp = torch.randn(32, 64, generator=gen).to(dev)
    loss = ddp(inp).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
every = torch.empty(size * flat.numel(), device=dev)
dist.all_gather_into_tensor(every, flat)
expect(all(torch.equal(every[k * flat.numel():(k + 1) * flat.numel()], flat) for k in range(size)),
       "DDP on CUDA: the same parameters on every rank")
expect(torch.isfinite(flat).all().item(), "DDP on CUDA: finite parameters")
del ddp, model
dist.destroy_process_group()
if failures:
    print(f"torch_cuda_worker FAILED {rank}: {failures}", flush=True)
    sys.exit(1)
print(f"torch_cuda_worker ok {rank} {size}", flush=True)
