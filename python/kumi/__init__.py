"""kumi: collective communication for distributed training, from Python.

    import numpy as np, kumi
    comm = kumi.init()                      # from the launcher's variables (torchrun, kumirun, ...)
    x = np.ones(1024, dtype=np.float32)
    comm.all_reduce(x)                      # in place: x is now the sum over ranks
    y = comm.all_gather(x)                  # a new array, world size x len(x)
    work = comm.all_reduce(x, async_op=True)
    work.wait()

Arrays are numpy arrays or anything with DLPack, the buffer protocol or __cuda_array_interface__
(torch tensors, JAX, CuPy, Numba), used without copies; they must be contiguous. CUDA arrays go
on a stream (stream=, else the array's own, else the legacy default stream) and the call
returns once queued, as in NCCL. Errors are kumi.Error subclasses carrying kumi's message.
`import kumi.torch` registers kumi as a torch.distributed backend.
"""
from __future__ import annotations

import atexit
import concurrent.futures
import enum
import threading
import weakref
from typing import Any, Optional

from ._kumi import (AbortedError, Error, InternalError, InvalidArgumentError, InvalidUsageError, RemoteError,
                    SystemError, TimeoutError, get_unique_id, version)
from . import _kumi

__all__ = ["Communicator", "ReduceOp", "Work", "init", "init_with_id", "get_unique_id", "version", "Error",
           "InvalidArgumentError", "InvalidUsageError", "SystemError", "TimeoutError", "RemoteError", "AbortedError",
           "InternalError"]


class ReduceOp(enum.IntEnum):
    SUM = 0
    PROD = 1
    MIN = 2
    MAX = 3
    AVG = 4   # sum / world size (integers: truncated)


def _op(op: Any) -> int:
    if isinstance(op, str):
        try:
            return ReduceOp[op.upper()].value
        except KeyError:
            raise InvalidArgumentError(f"unknown reduction op {op!r}: use sum, prod, min, max or avg") from None
    return int(ReduceOp(op))


def _raw(a: Any) -> Any:
    """What the native module takes: torch tensors without autograd (DLPack refuses those)."""
    detach = getattr(a, "detach", None)
    return detach() if callable(detach) else a


def _on_device(a: Any) -> bool:
    """Whether a is a CUDA array (the native module reads it as device memory)."""
    if a is None:
        return False
    is_cuda = getattr(a, "is_cuda", None)  # torch, without building an interface dict
    if isinstance(is_cuda, bool):
        return is_cuda
    if hasattr(a, "__cuda_array_interface__"):
        return True
    device = getattr(a, "__dlpack_device__", None)
    try:
        return callable(device) and device()[0] == 2  # kDLCUDA
    except Exception:  # noqa: BLE001 - not an array kumi can read; the native module says why
        return False


def _stream(stream: Any) -> Optional[int]:
    """A CUDA stream handle from an int, a torch.cuda.Stream (cuda_stream) or a CuPy stream (ptr)."""
    if stream is None or isinstance(stream, int):
        return stream
    for attr in ("cuda_stream", "ptr"):
        handle = getattr(stream, attr, None)
        if isinstance(handle, int):
            return handle
    raise InvalidArgumentError(f"stream: expected an int handle, a torch.cuda.Stream or a CuPy stream, got "
                               f"{type(stream).__name__}")


def _like(a: Any, count: int) -> Any:
    """A new 1-d array of `count` elements of a's type and framework."""
    new_empty = getattr(a, "new_empty", None)
    if callable(new_empty):           # torch, on a's device
        return new_empty((count,))
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy
        return cupy.empty(count, dtype=a.dtype)
    if _on_device(a):
        raise InvalidArgumentError(f"cannot make an output array like this {type(a).__name__} on its device: "
                                   "pass out=")
    import numpy as np
    return np.empty(count, dtype=a.dtype)


class Work:
    """An operation started with async_op=True: wait() returns its result (or raises its error)."""

    def __init__(self, future: concurrent.futures.Future):
        self._future = future

    def wait(self, timeout: Optional[float] = None) -> Any:
        return self._future.result(timeout)

    def is_completed(self) -> bool:
        return self._future.done()

    def exception(self) -> Optional[BaseException]:
        return self._future.exception() if self._future.done() else None


_live: "weakref.WeakSet[Communicator]" = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    """Closes what is still open while the interpreter still runs: left to interpreter shutdown,
    a communicator would be destroyed in whatever order modules are torn down, after its worker
    thread could no longer take the GIL."""
    for comm in list(_live):
        try:
            comm.close()
        except Exception:  # noqa: BLE001 - exiting anyway; peers may be gone
            pass


class Communicator:
    """A group of ranks. Methods are collective: every rank calls them in the same order. One
    operation runs at a time; async ones run in order on the communicator's own thread, with the
    GIL released."""

    def __init__(self, native: "_kumi.Communicator"):
        self._native = native
        self._lock = threading.Lock()
        self._worker: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._pending = 0  # operations queued on the worker and not finished
        self.rank: int = native.rank
        self.size: int = native.size
        _live.add(self)

    # -- life cycle
    def close(self) -> None:
        """Releases the communicator once pending async operations are done (every rank calls it)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        self._native.close()

    def abort(self) -> None:
        """Ends the communicator now, from any thread: a call in progress fails with AbortedError."""
        self._native.abort()
        if self._worker is not None:
            self._worker.shutdown(wait=False)

    def __enter__(self) -> "Communicator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def split(self, color: int, key: int = 0) -> "Communicator":
        return Communicator(self._run(False, self._native.split, color, key))

    # -- operations
    # Below this many bytes an async operation with nothing queued before it runs at once on the
    # calling thread: handing it to the worker thread and back costs more than the operation.
    INLINE_BYTES = 64 << 10

    def _run(self, async_op: bool, fn, *args, nbytes: Optional[int] = None):
        if not async_op or (nbytes is not None and nbytes <= self.INLINE_BYTES):
            with self._lock:
                busy = self._pending > 0
            if busy:  # keep the order: after the queued operations
                fut = self._submit(fn, *args)
                return fut.result() if not async_op else Work(fut)
            if not async_op:
                return fn(*args)
            done: concurrent.futures.Future = concurrent.futures.Future()
            try:
                done.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to whoever waits
                done.set_exception(e)
            return Work(done)
        return Work(self._submit(fn, *args))

    def _submit(self, fn, *args) -> concurrent.futures.Future:
        def counted():
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._pending -= 1
        with self._lock:
            if self._worker is None:
                self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kumi")
            self._pending += 1
            return self._worker.submit(counted)

    def _call(self, async_op: bool, fn, result, *args, stream: Any = None):
        handle = _stream(stream)

        def go():
            fn(*args, stream=handle)
            return result
        if any(_on_device(a) for a in args[:2]):
            # Queued on the stream: returns at once, so it runs on this thread (after any host
            # operation still queued on the worker) and its Work is done when queued.
            return self._run(async_op, go, nbytes=0)
        return self._run(async_op, go, nbytes=_nbytes(result if result is not None else (args[0] if args else None)))

    def async_error(self) -> Optional[Error]:
        """The error that an operation on CUDA arrays met after it had been queued (a peer lost,
        a timeout), or None; later operations raise it. Synchronize the stream first to learn
        about the operations queued before."""
        return self._native.async_error()

    def all_reduce(self, array, op: Any = ReduceOp.SUM, out=None, async_op: bool = False, stream: Any = None):
        """out = reduction over ranks of array (in place when out is None). Returns out."""
        out = array if out is None else out
        return self._call(async_op, self._native.all_reduce, out, _raw(array), _raw(out), _op(op), stream=stream)

    def reduce(self, array, root: int, op: Any = ReduceOp.SUM, out=None, async_op: bool = False, stream: Any = None):
        """On root, out = reduction of array over ranks (in place when out is None)."""
        out = array if out is None else out
        return self._call(async_op, self._native.reduce, out, _raw(array), _raw(out), root, _op(op), stream=stream)

    def broadcast(self, array, root: int, out=None, async_op: bool = False, stream: Any = None):
        """Every rank's out (array when None) becomes root's array."""
        out = array if out is None else out
        return self._call(async_op, self._native.broadcast, out, _raw(array), _raw(out), root, stream=stream)

    def all_gather(self, array, out=None, async_op: bool = False, stream: Any = None):
        """out (a new 1-d array of size x len when None) holds every rank's array, by rank."""
        out = _like(array, len(_flat(array)) * self.size) if out is None else out
        return self._call(async_op, self._native.all_gather, out, _raw(array), _raw(out), stream=stream)

    def reduce_scatter(self, array, op: Any = ReduceOp.SUM, out=None, async_op: bool = False, stream: Any = None):
        """out (a new array of len / size when None) = this rank's block of the reduction."""
        n = len(_flat(array))
        if out is None:
            if n % self.size:
                raise InvalidArgumentError(f"reduce_scatter: {n} elements do not split into {self.size} equal blocks")
            out = _like(array, n // self.size)
        return self._call(async_op, self._native.reduce_scatter, out, _raw(array), _raw(out), _op(op), stream=stream)

    def all_to_all(self, array, out=None, async_op: bool = False, stream: Any = None):
        """Block j of array (len / size elements) goes to rank j; out (a new array like array when
        None) holds, at block j, what rank j sent this rank."""
        n = len(_flat(array))
        if out is None:
            if n % self.size:
                raise InvalidArgumentError(f"all_to_all: {n} elements do not split into {self.size} equal blocks")
            out = _like(array, n)
        return self._call(async_op, self._native.all_to_all, out, _raw(array), _raw(out), stream=stream)

    def barrier(self, async_op: bool = False, stream: Any = None):
        return self._call(async_op, self._native.barrier, None, stream=stream)

    def send(self, array, peer: int, async_op: bool = False, stream: Any = None):
        return self._call(async_op, self._native.send, None, _raw(array), peer, stream=stream)

    def recv(self, array, peer: int, async_op: bool = False, stream: Any = None):
        return self._call(async_op, self._native.recv, array, _raw(array), peer, stream=stream)

    def __repr__(self) -> str:
        return f"kumi.Communicator(rank={self.rank}, size={self.size})"


def _nbytes(a) -> Optional[int]:
    if a is None:
        return 0
    n = getattr(a, "nbytes", None)  # numpy
    if isinstance(n, int):
        return n
    numel, size = getattr(a, "numel", None), getattr(a, "element_size", None)  # torch
    if callable(numel) and callable(size):
        return numel() * size()
    return None


def _flat(a):
    reshape = getattr(a, "reshape", None)
    return reshape(-1) if callable(reshape) else a


def init(rank: Optional[int] = None, world_size: Optional[int] = None, store: Optional[str] = None,
         job_id: Optional[str] = None, timeout: Optional[float] = None) -> Communicator:
    """Joins a job. With no arguments, from the environment: the launcher's variables (torchrun,
    Kubernetes Jobs, Slurm, Open MPI, kumirun) or KUMI_RANK, KUMI_WORLD_SIZE, KUMI_STORE."""
    return Communicator(_kumi.init(rank, world_size, store, job_id, timeout))


def init_with_id(unique_id: bytes, world_size: int, rank: int) -> Communicator:
    """Joins the job named by get_unique_id()'s bytes, passed to every rank by any means."""
    return Communicator(_kumi.init_with_id(unique_id, world_size, rank))
