"""kumi as a torch.distributed backend:

    import kumi.torch                       # registers backend "kumi"
    torch.distributed.init_process_group("kumi")

A ProcessGroup written in Python over kumi's native module, which is not compiled against torch:
one kumi wheel serves every torch version from 2.4 on. Tensors travel by DLPack without copies.
Rank 0 makes a kumi unique id and passes it through the store torch hands the backend, so
torchrun, init_method URLs and torch.multiprocessing work unchanged.

CPU tensors: collectives run on the communicator's own thread, in call order, and the returned
Work completes when they do (DDP overlaps them with the backward pass). CUDA tensors: as with
NCCL, a collective is queued on the caller's current stream and returns at once; the Work's
wait() makes the then-current stream wait for it, without blocking the host. Limits: see
docs/PYTHON.md.
"""
from __future__ import annotations

import contextlib
import datetime
from typing import Any, List, Optional

import torch
import torch.distributed as dist

import kumi


BACKEND = "kumi"

_OPS = {
    dist.ReduceOp.SUM: kumi.ReduceOp.SUM,
    dist.ReduceOp.PRODUCT: kumi.ReduceOp.PROD,
    dist.ReduceOp.MIN: kumi.ReduceOp.MIN,
    dist.ReduceOp.MAX: kumi.ReduceOp.MAX,
    dist.ReduceOp.AVG: kumi.ReduceOp.AVG,
}


def _op(op: Any) -> kumi.ReduceOp:
    for theirs, ours in _OPS.items():
        if op == theirs:
            return ours
    raise ValueError(f"kumi: reduce op {op} is not supported (sum, product, min, max, avg, premul_sum)")


def _premul_factor(opts: Any) -> Optional[float]:
    """PREMUL_SUM's factor (FSDP2 uses it for a custom gradient divide factor), else None."""
    op = getattr(opts, "reduceOp", None)
    if op is None or op != dist.ReduceOp.PREMUL_SUM:
        return None
    factor = getattr(op, "factor", None)
    if factor is None:
        raise ValueError("kumi: this torch does not expose PREMUL_SUM's factor to Python backends")
    return float(factor.item() if isinstance(factor, torch.Tensor) else factor)


def _reduction(opts: Any, tensors: List[torch.Tensor], what: str):
    """(kumi op, premul factor or None) for a reducing call's options."""
    if opts is None:
        return kumi.ReduceOp.SUM, None
    factor = _premul_factor(opts)
    if factor is None:
        return _op(opts.reduceOp), None
    for t in tensors:
        if not t.is_floating_point():
            raise ValueError(f"kumi: {what}: PREMUL_SUM needs a floating-point tensor, not {t.dtype}")
    return kumi.ReduceOp.SUM, factor


def _tensor(t: torch.Tensor, what: str) -> torch.Tensor:
    """t, checked: a contiguous CPU or CUDA tensor of a type kumi reduces."""
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"kumi: {what}: dtype {t.dtype} is not supported (integers, float16, bfloat16, float32, "
                         "float64)")
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"kumi: {what}: tensor on {t.device}; kumi takes CPU and CUDA tensors")
    if not t.is_contiguous():
        raise ValueError(f"kumi: {what}: tensor is not contiguous (call .contiguous())")
    return t


def _even(rows: int, parts: int) -> List[int]:
    if rows % parts:
        raise ValueError(f"kumi: all_to_all_single: {rows} rows do not split into {parts} equal blocks")
    return [rows // parts] * parts


def _split(flat: torch.Tensor, sizes: List[int]) -> List[torch.Tensor]:
    if sum(sizes) != flat.numel():
        raise ValueError(f"kumi: all_to_all_single: split sizes add up to {sum(sizes)} elements, the tensor has "
                         f"{flat.numel()}")
    return list(torch.split(flat, sizes))


class KumiWork(dist._Work):
    """A torch Work over kumi's: wait() raises the operation's error. (A Work made from a future
    by torch's _create_work_from_future returns from wait() even when the future failed, which
    would hide a failed collective from every synchronous call.) On CUDA tensors the future is
    complete once the operation is queued, with CUDA events: waiting makes the current stream
    wait, and a failure kumi found since (a peer lost) is raised."""

    def __init__(self, fut: torch.futures.Future, comm: Optional[kumi.Communicator] = None):
        super().__init__()
        self._fut = fut
        self._comm = comm  # set for operations on CUDA tensors

    def wait(self, timeout: Optional[datetime.timedelta] = None) -> bool:
        self._fut.wait()  # raises the operation's error; on CUDA, the current stream waits
        if self._comm is not None:
            err = self._comm.async_error()
            if err is not None:
                raise err
        return True

    def is_completed(self) -> bool:
        return self._fut.done()

    def is_success(self) -> bool:
        if not self._fut.done():
            return False
        try:
            self._fut.value()
            return True
        except Exception:  # noqa: BLE001 - any failure of the operation
            return False

    def exception(self):
        try:
            self._fut.value()
            return None
        except Exception as e:  # noqa: BLE001
            return e

    def get_future(self) -> torch.futures.Future:
        return self._fut

    def synchronize(self) -> None:
        self.wait()


class _Placement:
    """Where a call's tensors live: device None for CPU, else their GPU (current while kumi is
    called, so that the communicator binds to it) and that GPU's current stream."""

    def __init__(self, tensors: List[torch.Tensor], what: str):
        devices = {t.device for t in tensors}
        self.device: Optional[torch.device] = None
        self.stream: Optional[Any] = None
        if any(d.type == "cuda" for d in devices):
            if len(devices) > 1:
                raise ValueError(f"kumi: {what}: tensors on {', '.join(sorted(map(str, devices)))}; one call takes "
                                 "tensors of one device")
            self.device = next(iter(devices))
            self.stream = torch.cuda.current_stream(self.device)

    def current(self):
        return torch.cuda.device(self.device) if self.device is not None else contextlib.nullcontext()


def _work(kumi_work: Optional[kumi.Work], result: Any, place: Optional[_Placement] = None,
          comm: Optional[kumi.Communicator] = None) -> KumiWork:
    """A torch Work whose future completes with `result` when kumi's operation does (on CUDA:
    when it is queued; the future's events carry the stream order)."""
    cuda = place is not None and place.device is not None
    fut: torch.futures.Future = torch.futures.Future(devices=[place.device]) if cuda else torch.futures.Future()
    if kumi_work is None:
        fut.set_result(result)
    else:
        def done(f):
            err = f.exception()
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(result)
        kumi_work._future.add_done_callback(done)
    return KumiWork(fut, comm if cuda else None)


class KumiProcessGroup(dist.ProcessGroup):
    def __init__(self, comm: kumi.Communicator, rank: int, size: int):
        super().__init__(rank, size)
        self._comm = comm
        self._group_name = ""
        self._group_desc = ""

    # -- identity (torch asks for these in various versions)
    def getBackendName(self) -> str:
        return BACKEND

    def name(self) -> str:
        return BACKEND

    @property
    def group_name(self) -> str:
        return self._group_name

    def _set_group_name(self, name: str) -> None:
        self._group_name = name

    def getGroupName(self) -> str:
        return self._group_name

    def setGroupName(self, name: str) -> None:
        self._group_name = name

    @property
    def group_desc(self) -> str:
        return self._group_desc

    def _set_group_desc(self, desc: str) -> None:
        self._group_desc = desc

    def getGroupDesc(self) -> str:
        return self._group_desc

    def setGroupDesc(self, desc: str) -> None:
        self._group_desc = desc

    @property
    def _device_types(self) -> List[torch.device]:
        return [torch.device(d) for d in _DEVICES]

    def _get_backend(self, device: Any) -> "KumiProcessGroup":
        return self

    # -- helpers
    def _then(self, fn, place: _Placement):
        """fn after the operations queued before it. CPU: on the communicator's thread (a kumi
        Work). CUDA: now, on the caller's stream, where the operations before it were queued
        (torch's kernels are asynchronous too); None."""
        if place.device is None:
            return self._comm._run(True, fn)

        def on_stream():
            with place.current(), torch.cuda.stream(place.stream):
                fn()
        self._comm._run(False, on_stream)
        return None

    def _scaled(self, t: torch.Tensor, factor: Optional[float], in_place: bool, place: _Placement) -> torch.Tensor:
        """PREMUL_SUM's input: t times factor, computed after the operations queued before it
        (which may still be using t). In place only where the result overwrites t anyway."""
        if factor is None:
            return t
        out = t if in_place else torch.empty_like(t)
        self._then(lambda: torch.mul(t, factor, out=out), place)
        return out

    # -- collectives
    def allreduce(self, tensors: List[torch.Tensor], opts: Any = None):
        op, factor = _reduction(opts, tensors, "allreduce")
        place = _Placement(tensors, "allreduce")
        last = None
        with place.current():
            for t in tensors:
                t = self._scaled(_tensor(t, "allreduce"), factor, True, place)
                last = self._comm.all_reduce(t, op=op, async_op=True, stream=place.stream)
        return _work(last, tensors, place, self._comm)

    def allreduce_coalesced(self, tensors: List[torch.Tensor], opts: Any = None):
        return self.allreduce(tensors, opts)

    def broadcast(self, tensors: List[torch.Tensor], opts: Any):
        root = opts.rootRank
        place = _Placement(tensors, "broadcast")
        last = None
        with place.current():
            for t in tensors:
                last = self._comm.broadcast(_tensor(t, "broadcast"), root=root, async_op=True, stream=place.stream)
        return _work(last, tensors, place, self._comm)

    def reduce(self, tensors: List[torch.Tensor], opts: Any):
        op, factor = _reduction(opts, tensors, "reduce")
        place = _Placement(tensors, "reduce")
        last = None
        with place.current():
            for t in tensors:
                src = self._scaled(_tensor(t, "reduce"), factor, False, place)
                last = self._comm.reduce(src, root=opts.rootRank, op=op, out=t, async_op=True, stream=place.stream)
        return _work(last, tensors, place, self._comm)

    def _allgather_base(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None):
        place = _Placement([input, output], "all_gather_into_tensor")
        with place.current():
            w = self._comm.all_gather(_tensor(input, "all_gather_into_tensor"),
                                      out=_tensor(output, "all_gather_into_tensor output"), async_op=True,
                                      stream=place.stream)
        return _work(w, output, place, self._comm)

    all_gather_into_tensor = _allgather_base
    all_gather_single = _allgather_base  # the name torch 2.10+ calls

    def allgather(self, output_lists: List[List[torch.Tensor]], inputs: List[torch.Tensor], opts: Any = None):
        place = _Placement(list(inputs) + [o for outs in output_lists for o in outs], "allgather")
        last = None
        with place.current():
            for outs, inp in zip(output_lists, inputs):
                inp = _tensor(inp, "allgather")
                flat = inp.new_empty((self.size() * inp.numel(),))
                self._comm.all_gather(inp, out=flat, async_op=True, stream=place.stream)

                def scatter_back(outs=outs, flat=flat, inp=inp):
                    for k, o in enumerate(outs):
                        o.copy_(flat[k * inp.numel():(k + 1) * inp.numel()].view_as(o))
                last = self._then(scatter_back, place)  # after the gather
        return _work(last, output_lists, place, self._comm)

    def _reduce_scatter_base(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None):
        op, factor = _reduction(opts, [input], "reduce_scatter_tensor")
        place = _Placement([input, output], "reduce_scatter_tensor")
        with place.current():
            input = self._scaled(_tensor(input, "reduce_scatter_tensor"), factor, False, place)
            w = self._comm.reduce_scatter(input, out=_tensor(output, "reduce_scatter_tensor output"), op=op,
                                          async_op=True, stream=place.stream)
        return _work(w, output, place, self._comm)

    reduce_scatter_tensor = _reduce_scatter_base
    reduce_scatter_single = _reduce_scatter_base  # the name torch 2.10+ calls

    def reduce_scatter(self, outputs: List[torch.Tensor], input_lists: List[List[torch.Tensor]], opts: Any = None):
        op, factor = _reduction(opts, [i for ins in input_lists for i in ins], "reduce_scatter")
        place = _Placement(list(outputs) + [i for ins in input_lists for i in ins], "reduce_scatter")
        last = None
        with place.current():
            for out, ins in zip(outputs, input_lists):
                flat = torch.cat([_tensor(i, "reduce_scatter").reshape(-1) for i in ins])
                flat = self._scaled(flat, factor, True, place)  # flat is ours
                last = self._comm.reduce_scatter(flat, out=_tensor(out, "reduce_scatter output"), op=op,
                                                 async_op=True, stream=place.stream)
        return _work(last, outputs, place, self._comm)

    def gather(self, output_lists: List[List[torch.Tensor]], inputs: List[torch.Tensor], opts: Any):
        root = opts.rootRank
        place = _Placement(list(inputs) + [o for outs in output_lists for o in outs], "gather")
        with place.current():
            inp = _tensor(inputs[0], "gather")
            flat = inp.new_empty((self.size() * inp.numel(),))
            self._comm.all_gather(inp, out=flat, async_op=True, stream=place.stream)

            def copy_out():
                if self.rank() == root:
                    for k, o in enumerate(output_lists[0]):
                        o.copy_(flat[k * inp.numel():(k + 1) * inp.numel()].view_as(o))
            return _work(self._then(copy_out, place), output_lists, place, self._comm)

    def scatter(self, outputs: List[torch.Tensor], input_lists: List[List[torch.Tensor]], opts: Any):
        root = opts.rootRank
        place = _Placement(list(outputs) + [i for ins in input_lists for i in ins], "scatter")
        with place.current():
            out = _tensor(outputs[0], "scatter")
            flat = out.new_empty((self.size() * out.numel(),))
            if self.rank() == root:
                self._then(lambda: flat.copy_(torch.cat([i.reshape(-1) for i in input_lists[0]])), place)
            self._comm.broadcast(flat, root=root, async_op=True, stream=place.stream)

            def copy_out():
                out.copy_(flat[self.rank() * out.numel():(self.rank() + 1) * out.numel()].view_as(out))
            return _work(self._then(copy_out, place), outputs, place, self._comm)

    def alltoall_base(self, output: torch.Tensor, input: torch.Tensor, output_split_sizes: List[int],
                      input_split_sizes: List[int], opts: Any = None):
        """all_to_all_single: even splits straight through kumi; uneven ones padded (below)."""
        input, output = _tensor(input, "all_to_all_single"), _tensor(output, "all_to_all_single output")
        place = _Placement([input, output], "all_to_all_single")
        n = self.size()
        if not output_split_sizes and not input_split_sizes:
            if input.numel() != output.numel() or input.numel() % n:
                raise ValueError(f"kumi: all_to_all_single: input ({input.numel()} elements) and output "
                                 f"({output.numel()}) must be equal and split into {n} equal blocks")
            with place.current():
                w = self._comm.all_to_all(input, out=output, async_op=True, stream=place.stream)
            return _work(w, output, place, self._comm)
        row = input[0].numel() if input.dim() > 1 and input.shape[0] else 1
        ins = _split(input.reshape(-1), [k * row for k in (input_split_sizes or _even(input.shape[0], n))])
        outs = _split(output.reshape(-1), [k * row for k in (output_split_sizes or _even(output.shape[0], n))])
        return self._alltoall_blocks(outs, ins, output, place)

    def alltoall(self, output_tensors: List[torch.Tensor], input_tensors: List[torch.Tensor], opts: Any = None):
        """all_to_all with tensor lists: block j of each side is tensor j."""
        n = self.size()
        if len(input_tensors) != n or len(output_tensors) != n:
            raise ValueError(f"kumi: all_to_all: {len(input_tensors)} inputs and {len(output_tensors)} outputs for "
                             f"{n} ranks")
        ins = [_tensor(t, "all_to_all").reshape(-1) for t in input_tensors]
        outs = [_tensor(t, "all_to_all output") for t in output_tensors]
        return self._alltoall_blocks(outs, ins, output_tensors, _Placement(ins + outs, "all_to_all"))

    def _alltoall_blocks(self, outs: List[torch.Tensor], ins: List[torch.Tensor], result: Any, place: _Placement):
        """kumi's all-to-all moves equal blocks, so uneven ones travel padded to the largest block
        of any rank (agreed on with a small max-allreduce on the host: block sizes are host
        numbers): the MoE case costs a copy each way."""
        dtypes = {t.dtype for t in ins} | {t.dtype for t in outs}
        if len(dtypes) != 1:
            raise ValueError(f"kumi: all_to_all: tensors of different dtypes {sorted(map(str, dtypes))}")
        n = self.size()
        native = self._comm._native
        handle = place.stream.cuda_stream if place.stream is not None else None

        def run():
            largest = torch.tensor([max([t.numel() for t in ins] + [t.numel() for t in outs])], dtype=torch.int64)
            native.all_reduce(largest, largest, int(kumi.ReduceOp.MAX))
            block = int(largest.item())
            send = ins[0].new_zeros((n * block,))
            for j, t in enumerate(ins):
                send[j * block:j * block + t.numel()].copy_(t)
            recv = torch.empty_like(send)
            native.all_to_all(send, recv, stream=handle)
            for j, t in enumerate(outs):
                t.view(-1).copy_(recv[j * block:j * block + t.numel()])
        return _work(self._then(run, place), result, place, self._comm)

    def send(self, tensors: List[torch.Tensor], dst: int, tag: int = 0):
        place = _Placement(tensors, "send")
        last = None
        with place.current():
            for t in tensors:
                last = self._comm.send(_tensor(t, "send"), dst, async_op=True, stream=place.stream)
        return _work(last, tensors, place, self._comm)

    def recv(self, tensors: List[torch.Tensor], src: int, tag: int = 0):
        place = _Placement(tensors, "recv")
        last = None
        with place.current():
            for t in tensors:
                last = self._comm.recv(_tensor(t, "recv"), src, async_op=True, stream=place.stream)
        return _work(last, tensors, place, self._comm)

    def barrier(self, opts: Any = None):
        # A host barrier: it returns when every rank has reached it, after this rank's queued
        # operations (kumi's host calls wait for its device calls before them).
        return _work(self._comm.barrier(async_op=True), None)

    def abort(self) -> None:
        self._comm.abort()

    def shutdown(self) -> None:
        self._comm.close()


def _create(*args: Any):
    """The backend's creator: (store, rank, size, timeout), or with extended_api the options."""
    if len(args) == 4:
        store, rank, size, timeout = args
    else:
        opts = args[0]
        store, rank, size, timeout = opts.store, opts.group_rank, opts.group_size, opts.timeout
    key = "kumi/unique_id"
    if rank == 0:
        uid = kumi.get_unique_id()
        store.set(key, uid)
    else:
        uid = store.get(key)
    comm = kumi.init_with_id(bytes(uid), size, rank)
    return KumiProcessGroup(comm, rank, size)


# CUDA tensors need a kumi built with CUDA on a machine with a GPU; elsewhere kumi refuses them
# by name at the call.
_DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]

if BACKEND not in dist.Backend.backend_list:
    dist.Backend.register_backend(BACKEND, _create, extended_api=True, devices=_DEVICES)
