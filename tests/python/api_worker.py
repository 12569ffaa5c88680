"""One rank of tests/python/test_api.py: the kumi Python API on numpy arrays, every result checked
against numpy's own. Run under kumirun; prints "api_worker ok <rank> <size>" when all is right."""
import os
import sys

import numpy as np

import kumi

comm = kumi.init()
r, n = comm.rank, comm.size
failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)


def contribution(rank, dtype, count=1000):
    return (np.arange(count) % 7 + rank + 1).astype(dtype)


DTYPES = [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64, np.float16, np.float32, np.float64]
for dt in DTYPES:
    mine = contribution(r, dt)
    everyone = [contribution(k, dt) for k in range(n)]
    # Out of place, every op.
    for op, ref in (("sum", np.sum), ("prod", np.prod), ("min", np.min), ("max", np.max)):
        out = np.empty_like(mine)
        got = comm.all_reduce(mine, op=op, out=out)
        want = ref(np.stack(everyone), axis=0).astype(dt)
        expect(got is out, f"all_reduce returns its output ({dt.__name__})")
        expect(np.array_equal(out, want) if dt != np.float16 else np.allclose(out, want, rtol=1e-2),
               f"all_reduce {op} {dt.__name__}")
    # In place, and avg.
    x = mine.copy()
    comm.all_reduce(x, op=kumi.ReduceOp.AVG)
    s = np.sum(np.stack(everyone).astype(np.float64), axis=0)
    want = (s // n if np.issubdtype(dt, np.integer) else s / n)
    expect(np.allclose(x.astype(np.float64), want, rtol=1e-2, atol=1), f"all_reduce avg {dt.__name__}")

# broadcast, all_gather, reduce_scatter, reduce
b = np.full(333, r, dtype=np.float32)
comm.broadcast(b, root=n - 1)
expect(np.all(b == n - 1), "broadcast")
g = comm.all_gather(np.full(5, r, dtype=np.int32))
expect(np.array_equal(g, np.repeat(np.arange(n, dtype=np.int32), 5)), "all_gather")
big = np.arange(4 * n, dtype=np.float64) + r
rs = comm.reduce_scatter(big)
full = sum(np.arange(4 * n, dtype=np.float64) + k for k in range(n))
expect(np.array_equal(rs, full[4 * r:4 * (r + 1)]), "reduce_scatter")
a2a = comm.all_to_all(np.array([100 * r + j for j in range(n) for _ in range(7)], dtype=np.int32))
expect(np.array_equal(a2a, np.array([100 * j + r for j in range(n) for _ in range(7)], dtype=np.int32)), "all_to_all")
try:
    comm.all_to_all(np.ones(n + 1 if n > 1 else 3, dtype=np.float32), out=np.ones(2, dtype=np.float32))
    expect(False, "all_to_all with mismatched sizes accepted")
except kumi.InvalidArgumentError as e:
    expect("all_to_all" in str(e), f"all_to_all error names the call: {e}")
red = np.full(10, r + 1, dtype=np.int64)
comm.reduce(red, root=0)
if r == 0:
    expect(np.all(red == n * (n + 1) // 2), "reduce at root")

# send/recv around a ring (even ranks send first).
if n > 1:
    token = np.array([r], dtype=np.int64)
    got = np.empty(1, dtype=np.int64)
    right, left = (r + 1) % n, (r - 1) % n
    if r % 2 == 0:
        comm.send(token, right)
        comm.recv(got, left)
    else:
        comm.recv(got, left)
        comm.send(token, right)
    expect(got[0] == left, "send/recv ring")

# Async: results in order; the arrays come back from wait().
works = [comm.all_reduce(np.full(64, i, dtype=np.float32), async_op=True) for i in range(5)]
for i, w in enumerate(works):
    res = w.wait(timeout=60)
    expect(np.all(res == i * n), f"async all_reduce {i}")
comm.barrier()

# split by parity
with comm.split(r % 2, r) as half:
    v = np.array([r], dtype=np.int32)
    half.all_reduce(v)
    expect(v[0] == sum(k for k in range(n) if k % 2 == r % 2), "split all_reduce")

# Errors raised in Python, before any traffic: mismatched sizes, unsupported dtype, strided views.
for what, call, cls in (
        ("size mismatch", lambda: comm.all_reduce(np.ones(4, np.float32), out=np.ones(5, np.float32)),
         kumi.InvalidArgumentError),
        ("dtype", lambda: comm.all_reduce(np.ones(4, np.complex64)), kumi.InvalidArgumentError),
        ("strided", lambda: comm.all_reduce(np.ones(8, np.float32)[::2]), kumi.InvalidArgumentError),
        ("bad op", lambda: comm.all_reduce(np.ones(4, np.float32), op="median"), kumi.InvalidArgumentError),
        ("bad root", lambda: comm.broadcast(np.ones(4, np.float32), root=n + 3), kumi.InvalidArgumentError)):
    try:
        call()
        failures.append(f"{what}: no error")
    except cls as e:
        expect(isinstance(e, kumi.Error) and str(e), f"{what}: message")

# __cuda_array_interface__ (CuPy, Numba, torch on a GPU), parsed by the native module. Without a
# GPU, an interface over host memory stands in for a device array: every field is read (the
# errors below name each one) and the call then reaches kumi with a stream, which a machine
# without a usable GPU refuses by name.
class Interface:
    def __init__(self, base, **overrides):
        self.base = base
        self.__cuda_array_interface__ = dict(shape=base.shape, typestr=base.dtype.str, strides=None,
                                             data=(base.ctypes.data, False), version=3, stream=None)
        self.__cuda_array_interface__.update(overrides)


def refused(what, call, needle):
    try:
        call()
        failures.append(f"{what}: no error")
    except kumi.InvalidArgumentError as e:
        expect(needle in str(e), f"{what}: message names the problem: {e}")


f4 = np.ones(4, np.float32)
refused("interface big-endian", lambda: comm.all_reduce(Interface(f4, typestr=">f4")), "typestr")
refused("interface mask", lambda: comm.all_reduce(Interface(f4, mask=(0, False))), "masked")
refused("interface strided", lambda: comm.all_reduce(Interface(f4, strides=(8,))), "not contiguous")
refused("interface read-only output", lambda: comm.all_reduce(f4, out=Interface(f4, data=(f4.ctypes.data, True))),
        "read-only")
refused("interface no data", lambda: comm.all_reduce(Interface(f4, data=None)), "wrong type")
refused("interface sizes", lambda: comm.all_reduce(Interface(np.ones(6, np.float32)), out=Interface(f4)),
        "input has 6 elements, output 4")
refused("interface dtypes", lambda: comm.all_reduce(Interface(np.ones(4, np.int32)), out=Interface(f4)),
        "different dtypes")
refused("bad stream", lambda: comm.all_reduce(f4, stream="fast"), "stream")
refused("not an array", lambda: comm.all_reduce([1.0, 2.0]), "expected an array")
if not os.path.exists("/dev/nvidia0"):
    refused("interface without a GPU", lambda: comm.all_reduce(Interface(f4)), "no GPU can be used")
    refused("host array with a stream, without a GPU", lambda: comm.all_reduce(f4, stream=5), "no GPU can be used")
expect(comm.async_error() is None, "no async error on a healthy communicator")
# The communicator still works after refused calls.
z = np.ones(3, np.float32)
comm.all_reduce(z)
expect(np.all(z == n), "usable after refused calls")

comm.close()
if failures:
    print(f"api_worker FAILED {r}: {failures}", flush=True)
    sys.exit(1)
print(f"api_worker ok {r} {n}", flush=True)
