"""kumi as a torch.distributed backend:

    import kumi.torch                       # registers backend "kumi"
    torch.distributed.init_process_group("kumi")

A ProcessGroup written in Python over kumi's native module, which is not compiled against torch:
one kumi wheel serves every torch version from 2.4 on. Tensors travel by DLPack without copies.
Rank 0 makes a kumi unique id and passes it through the store torch hands the backend, so
torchrun, init_method URLs and torch.multiprocessing work unchanged. CPU tensors only for now.

Collectives run on the communicator's own thread, in call order, and the returned Work completes
when they do (DDP overlaps them with the backward pass). Limits: see docs/PYTHON.md.
"""
from __future__ import annotations

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


def _cpu(t: torch.Tensor, what: str) -> torch.Tensor:
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"kumi: {what}: dtype {t.dtype} is not supported (integers, float16, bfloat16, float32, "
                         "float64)")
    if t.device.type != "cpu":
        raise ValueError(f"kumi: {what}: tensor on {t.device}; this build of kumi takes CPU tensors only")
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
    would hide a failed collective from every synchronous call.)"""

    def __init__(self, fut: torch.futures.Future):
        super().__init__()
        self._fut = fut

    def wait(self, timeout: Optional[datetime.timedelta] = None) -> bool:
        self._fut.wait()  # raises the operation's error
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
        self._fut.wait()


def _work(kumi_work: Optional[kumi.Work], result: Any) -> KumiWork:
    """A torch Work whose future completes with `result` when kumi's operation does."""
    fut: torch.futures.Future = torch.futures.Future()
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
    return KumiWork(fut)


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
        return [torch.device("cpu")]

    def _get_backend(self, device: Any) -> "KumiProcessGroup":
        return self

    # -- collectives
    def _scaled(self, t: torch.Tensor, factor: Optional[float], in_place: bool) -> torch.Tensor:
        """PREMUL_SUM's input: t times factor, computed on the communicator's thread after the
        operations queued before it (which may still be using t). In place only where the
        result overwrites t anyway."""
        if factor is None:
            return t
        out = t if in_place else torch.empty_like(t)
        self._comm._run(True, lambda: torch.mul(t, factor, out=out))
        return out

    def allreduce(self, tensors: List[torch.Tensor], opts: Any = None):
        op, factor = _reduction(opts, tensors, "allreduce")
        last = None
        for t in tensors:
            t = self._scaled(_cpu(t, "allreduce"), factor, in_place=True)
            last = self._comm.all_reduce(t, op=op, async_op=True)
        return _work(last, tensors)

    def allreduce_coalesced(self, tensors: List[torch.Tensor], opts: Any = None):
        return self.allreduce(tensors, opts)

    def broadcast(self, tensors: List[torch.Tensor], opts: Any):
        root = opts.rootRank
        last = None
        for t in tensors:
            last = self._comm.broadcast(_cpu(t, "broadcast"), root=root, async_op=True)
        return _work(last, tensors)

    def reduce(self, tensors: List[torch.Tensor], opts: Any):
        op, factor = _reduction(opts, tensors, "reduce")
        last = None
        for t in tensors:
            src = self._scaled(_cpu(t, "reduce"), factor, in_place=False)
            last = self._comm.reduce(src, root=opts.rootRank, op=op, out=t, async_op=True)
        return _work(last, tensors)

    def _allgather_base(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None):
        w = self._comm.all_gather(_cpu(input, "all_gather_into_tensor"),
                                  out=_cpu(output, "all_gather_into_tensor output"), async_op=True)
        return _work(w, output)

    all_gather_into_tensor = _allgather_base
    all_gather_single = _allgather_base  # the name torch 2.10+ calls

    def allgather(self, output_lists: List[List[torch.Tensor]], inputs: List[torch.Tensor], opts: Any = None):
        last = None
        for outs, inp in zip(output_lists, inputs):
            inp = _cpu(inp, "allgather")
            flat = inp.new_empty((self.size() * inp.numel(),))
            self._comm.all_gather(inp, out=flat, async_op=True)

            def scatter_back(outs=outs, flat=flat, inp=inp):
                for k, o in enumerate(outs):
                    o.copy_(flat[k * inp.numel():(k + 1) * inp.numel()].view_as(o))
            last = self._comm._run(True, scatter_back)  # after the gather, on the same thread
        return _work(last, output_lists)

    def _reduce_scatter_base(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None):
        op, factor = _reduction(opts, [input], "reduce_scatter_tensor")
        input = self._scaled(_cpu(input, "reduce_scatter_tensor"), factor, in_place=False)
        w = self._comm.reduce_scatter(input,
                                      out=_cpu(output, "reduce_scatter_tensor output"), op=op, async_op=True)
        return _work(w, output)

    reduce_scatter_tensor = _reduce_scatter_base
    reduce_scatter_single = _reduce_scatter_base  # the name torch 2.10+ calls

    def reduce_scatter(self, outputs: List[torch.Tensor], input_lists: List[List[torch.Tensor]], opts: Any = None):
        op, factor = _reduction(opts, [i for ins in input_lists for i in ins], "reduce_scatter")
        last = None
        for out, ins in zip(outputs, input_lists):
            flat = torch.cat([_cpu(i, "reduce_scatter").reshape(-1) for i in ins])
            flat = self._scaled(flat, factor, in_place=True)  # flat is ours
            last = self._comm.reduce_scatter(flat, out=_cpu(out, "reduce_scatter output"), op=op, async_op=True)
        return _work(last, outputs)

    def gather(self, output_lists: List[List[torch.Tensor]], inputs: List[torch.Tensor], opts: Any):
        root = opts.rootRank
        inp = _cpu(inputs[0], "gather")
        flat = inp.new_empty((self.size() * inp.numel(),))
        self._comm.all_gather(inp, out=flat, async_op=True)

        def copy_out():
            if self.rank() == root:
                for k, o in enumerate(output_lists[0]):
                    o.copy_(flat[k * inp.numel():(k + 1) * inp.numel()].view_as(o))
        return _work(self._comm._run(True, copy_out), output_lists)

    def scatter(self, outputs: List[torch.Tensor], input_lists: List[List[torch.Tensor]], opts: Any):
        root = opts.rootRank
        out = _cpu(outputs[0], "scatter")
        flat = out.new_empty((self.size() * out.numel(),))
        if self.rank() == root:
            flat.copy_(torch.cat([i.reshape(-1) for i in input_lists[0]]))
        self._comm.broadcast(flat, root=root, async_op=True)

        def copy_out():
            out.copy_(flat[self.rank() * out.numel():(self.rank() + 1) * out.numel()].view_as(out))
        return _work(self._comm._run(True, copy_out), outputs)

    def alltoall_base(self, output: torch.Tensor, input: torch.Tensor, output_split_sizes: List[int],
                      input_split_sizes: List[int], opts: Any = None):
        """all_to_all_single: even splits straight through kumi; uneven ones padded (below)."""
        input, output = _cpu(input, "all_to_all_single"), _cpu(output, "all_to_all_single output")
        n = self.size()
        if not output_split_sizes and not input_split_sizes:
            if input.numel() != output.numel() or input.numel() % n:
                raise ValueError(f"kumi: all_to_all_single: input ({input.numel()} elements) and output "
                                 f"({output.numel()}) must be equal and split into {n} equal blocks")
            return _work(self._comm.all_to_all(input, out=output, async_op=True), output)
        row = input[0].numel() if input.dim() > 1 and input.shape[0] else 1
        ins = _split(input.reshape(-1), [k * row for k in (input_split_sizes or _even(input.shape[0], n))])
        outs = _split(output.reshape(-1), [k * row for k in (output_split_sizes or _even(output.shape[0], n))])
        return self._alltoall_blocks(outs, ins, output)

    def alltoall(self, output_tensors: List[torch.Tensor], input_tensors: List[torch.Tensor], opts: Any = None):
        """all_to_all with tensor lists: block j of each side is tensor j."""
        n = self.size()
        if len(input_tensors) != n or len(output_tensors) != n:
            raise ValueError(f"kumi: all_to_all: {len(input_tensors)} inputs and {len(output_tensors)} outputs for "
                             f"{n} ranks")
        ins = [_cpu(t, "all_to_all").reshape(-1) for t in input_tensors]
        outs = [_cpu(t, "all_to_all output") for t in output_tensors]
        return self._alltoall_blocks(outs, ins, output_tensors)

    def _alltoall_blocks(self, outs: List[torch.Tensor], ins: List[torch.Tensor], result: Any):
        """kumi's all-to-all moves equal blocks, so uneven ones travel padded to the largest block
        of any rank (agreed on with a small max-allreduce): the MoE case costs a copy each way."""
        dtypes = {t.dtype for t in ins} | {t.dtype for t in outs}
        if len(dtypes) != 1:
            raise ValueError(f"kumi: all_to_all: tensors of different dtypes {sorted(map(str, dtypes))}")
        n = self.size()
        native = self._comm._native

        def run():
            largest = torch.tensor([max([t.numel() for t in ins] + [t.numel() for t in outs])], dtype=torch.int64)
            native.all_reduce(largest, largest, int(kumi.ReduceOp.MAX))
            block = int(largest.item())
            send = ins[0].new_zeros((n * block,))
            for j, t in enumerate(ins):
                send[j * block:j * block + t.numel()].copy_(t)
            recv = torch.empty_like(send)
            native.all_to_all(send, recv)
            for j, t in enumerate(outs):
                t.view(-1).copy_(recv[j * block:j * block + t.numel()])
        return _work(self._comm._run(True, run), result)

    def send(self, tensors: List[torch.Tensor], dst: int, tag: int = 0):
        last = None
        for t in tensors:
            last = self._comm.send(_cpu(t, "send"), dst, async_op=True)
        return _work(last, tensors)

    def recv(self, tensors: List[torch.Tensor], src: int, tag: int = 0):
        last = None
        for t in tensors:
            last = self._comm.recv(_cpu(t, "recv"), src, async_op=True)
        return _work(last, tensors)

    def barrier(self, opts: Any = None):
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


if BACKEND not in dist.Backend.backend_list:
    dist.Backend.register_backend(BACKEND, _create, extended_api=True, devices=["cpu"])
