"""torch.distributed.all_reduce throughput and latency, backend kumi beside backend gloo in one run
(the same processes, buffers and sizes; groups alternate per size), CPU float32 tensors.

    kumirun -np 2 -- python benchmarks/python/torch_allreduce.py        # or torchrun --nproc-per-node 2

Prints, per size, the median time and bus bandwidth of each backend and their ratio; rank 0 only."""
import os
import statistics
import time

import torch
import torch.distributed as dist

import kumi.torch  # noqa: F401


def main():
    rank = int(os.environ.get("RANK", os.environ.get("KUMI_RANK", 0)))
    size = int(os.environ.get("WORLD_SIZE", os.environ.get("KUMI_WORLD_SIZE", 1)))
    port = os.environ.get("TORCH_STORE_PORT", "29650")
    init = "env://" if "MASTER_ADDR" in os.environ else f"tcp://127.0.0.1:{port}"
    dist.init_process_group("kumi", init_method=init, rank=rank, world_size=size)
    groups = {"kumi": dist.group.WORLD, "gloo": dist.new_group(backend="gloo")}
    sizes = [8] + [1 << s for s in range(20, 27)]  # 8 B, then 1..64 MiB
    reps = int(os.environ.get("REPS", "7"))
    if rank == 0:
        print(f"# all_reduce float32 sum, {size} ranks, median of {reps} (after 2 warm-up calls)")
        print(f"{'bytes':>10} {'kumi us':>10} {'gloo us':>10} {'kumi GB/s':>10} {'gloo GB/s':>10} {'kumi/gloo':>9}")
    for nbytes in sizes:
        t = torch.ones(max(1, nbytes // 4), dtype=torch.float32)
        times = {}
        for name, g in groups.items():
            for _ in range(2):
                dist.all_reduce(t, group=g)
            # Back-to-back calls per sample, so that small sizes measure the call, not the skew
            # between ranks leaving the barrier.
            iters = max(1, min(200, (8 << 20) // nbytes))
            samples = []
            for _ in range(reps):
                dist.barrier(group=g)
                t0 = time.perf_counter()
                for _ in range(iters):
                    dist.all_reduce(t, group=g)
                samples.append((time.perf_counter() - t0) / iters)
            times[name] = statistics.median(samples)
        if rank == 0:
            bus = lambda s: nbytes * 2 * (size - 1) / size / s / 1e9  # noqa: E731
            print(f"{nbytes:>10} {times['kumi'] * 1e6:>10.1f} {times['gloo'] * 1e6:>10.1f} {bus(times['kumi']):>10.3f} "
                  f"{bus(times['gloo']):>10.3f} {times['gloo'] / times['kumi']:>9.2f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
