#!/usr/bin/env python3
"""A virtual cluster for multi-node tests: M nodes as Linux network namespaces on one machine.

Standard library only (Python 3.11). Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN), iproute2's
`ip` and `tc`, and a kernel with veth, bridge and the tbf qdisc. See docs/VCLUSTER.md.

    from vcluster import VirtualCluster
    with VirtualCluster(nodes=2, rate="1gbit") as vc:
        p = vc.run(0, ["hostname"])                      # a Popen inside node 0's namespace
        res = vc.launch(["./test_mp_collectives"], ranks_per_node=2, env={"KUMI_TIMEOUT": "60"})
        assert res.ok, res.describe()

What one cluster named NAME is (nothing is created in the root namespace except files):

    kumi-vc-NAME-hub     namespace holding bridge br0 and the hub ends v0..v{M-1} of the links
    kumi-vc-NAME-n<i>    namespace of node i: lo, and eth0 = 10.X.Y.(i+1)/24, the node end of
                         the veth pair whose other end is v<i> in the hub, on br0
    /etc/netns/kumi-vc-NAME-n<i>/hosts   what `ip netns exec` shows as /etc/hosts: node0..node{M-1}
    /run/kumi-vc/NAME.json               the owner record (pid + start time) used by sweep()

With a rate, a tbf qdisc shapes the egress of eth0 (node -> hub) and of v<i> (hub -> node).

CLI:
    vcluster.py up --nodes 2 --rate 1gbit --name demo    # create and keep (a "detached" cluster)
    vcluster.py list
    vcluster.py down --name demo
    vcluster.py sweep [--all]
    vcluster.py run --nodes 2 --ranks-per-node 2 --rate 1gbit -- PROGRAM ARGS
"""
from __future__ import annotations

import argparse
import atexit
import ctypes
import fcntl
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

PREFIX = "kumi-vc-"
NETNS_ETC = "/etc/netns"
RUN_DIR = "/run/kumi-vc"
NETNS_RUN = "/run/netns"
NODE_IF = "eth0"
BRIDGE = "br0"
MAX_NODES = 253
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

# Environment variables launch() sets per rank; inherited values of these are dropped.
_RANK_VARS = ("KUMI_RANK", "KUMI_WORLD_SIZE", "KUMI_LOCAL_RANK", "KUMI_LOCAL_SIZE", "KUMI_NODE_RANK",
              "KUMI_HOSTID", "KUMI_JOB_ID", "KUMI_STORE", "KUMI_STORE_SERVE")


class VClusterError(RuntimeError):
    """Creating, using or removing a virtual cluster failed."""


# ----------------------------------------------------------------------------------------------
# small helpers


def _tool(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}", f"/usr/bin/{name}")
                                       if os.access(p, os.X_OK)), None)
    if not path:
        raise VClusterError(f"`{name}` (iproute2) is not installed")
    return path


def _sh(argv: Sequence[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise VClusterError(f"`{' '.join(argv)}` failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _sh([_tool("ip"), *args], check=check)


def _tc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _sh([_tool("tc"), *args], check=check)


def list_namespaces() -> List[str]:
    """Names of all network namespaces known to `ip netns` (the files in /run/netns)."""
    try:
        return sorted(os.listdir(NETNS_RUN))
    except FileNotFoundError:
        return []


def _proc_start_time(pid: int) -> Optional[int]:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None when PID does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = stat[stat.rfind(")") + 2:].split()
    return int(rest[19])


def _alive(pid: int, start: Optional[int]) -> bool:
    if pid <= 0:
        return False
    st = _proc_start_time(pid)
    return st is not None and (start is None or st == start)


def _netns_pids(ns: str) -> List[int]:
    p = _ip("netns", "pids", ns, check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()] if p.returncode == 0 else []


def _kill_namespace_processes(namespaces: Sequence[str], wait: float = 5.0) -> None:
    """SIGKILLs every process whose network namespace is one of `namespaces` and waits for them."""
    deadline = time.monotonic() + wait
    while True:
        pids = [pid for ns in namespaces for pid in _netns_pids(ns) if pid != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            return  # zombies of some other parent: they hold nothing but a pid
        time.sleep(0.05)


def _remove_namespaces(namespaces: Sequence[str]) -> List[str]:
    """Kills what runs in them, deletes the namespaces (their veths go with them) and their
    /etc/netns dirs. Returns the errors (teardown continues past each one)."""
    errors = []
    _kill_namespace_processes(namespaces)
    existing = set(list_namespaces())
    for ns in namespaces:
        if ns in existing:
            p = _ip("netns", "del", ns, check=False)
            if p.returncode != 0 and ns in list_namespaces():  # gone meanwhile: someone else removed it
                errors.append(f"ip netns del {ns}: {p.stderr.strip()}")
        d = os.path.join(NETNS_ETC, ns)
        try:
            shutil.rmtree(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            if os.path.exists(d):
                errors.append(f"rm -r {d}: {e}")
    return errors


class _Lock:
    """An exclusive lock over sweep/destroy/create among all processes of this machine (flock on
    /run/kumi-vc/.lock), reentrant within a process."""
    _local = threading.RLock()
    _depth = 0
    _fd: Optional[int] = None

    def __enter__(self):
        _Lock._local.acquire()
        if _Lock._depth == 0:
            os.makedirs(RUN_DIR, exist_ok=True)
            _Lock._fd = os.open(os.path.join(RUN_DIR, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(_Lock._fd, fcntl.LOCK_EX)
        _Lock._depth += 1
        return self

    def __exit__(self, *exc):
        _Lock._depth -= 1
        if _Lock._depth == 0 and _Lock._fd is not None:
            os.close(_Lock._fd)  # releases the flock
            _Lock._fd = None
        _Lock._local.release()


def parse_rate(rate: Union[str, int]) -> int:
    """A tc-style rate ("1gbit", "200mbit", "500kbit", "10mbps", or a number of bit/s) in bit/s."""
    if isinstance(rate, int):
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        return rate
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(rate))
    units = {"": 1, "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12,
             "kibit": 2**10, "mibit": 2**20, "gibit": 2**30,
             "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9}
    if not m or m.group(2).lower() not in units:
        raise ValueError(f"cannot parse the rate {rate!r} (examples: 1gbit, 200mbit, 10mbps)")
    bits = int(float(m.group(1)) * units[m.group(2).lower()])
    if bits < 8000:
        raise ValueError(f"rate {rate!r} is too small (at least 8kbit)")
    return bits


def tbf_params(rate_bits: int) -> Dict[str, int]:
    """The tbf parameters used for a rate (see docs/VCLUSTER.md):

    burst: the bucket, 1 ms worth of the rate but at least 128 KiB. The bucket must hold the
        largest packet tbf sees, and veth hands it GSO super-packets of up to 64 KiB (tbf would
        otherwise re-segment each in software, which costs CPU the test machine lacks); 1 ms keeps
        a burst at line speed short next to any transfer worth measuring (125 KB at 1gbit).
    latency: how long a packet may wait in the queue: 10 ms, i.e. a queue of rate x 10 ms + burst
        (1.4 MB at 1gbit), the order of a switch port's buffer. A shorter queue makes TCP lose
        packets and fall well below the rate on a loaded machine; a longer one only adds delay.
    """
    rate_bytes = rate_bits // 8
    return {"rate": rate_bits, "burst": max(rate_bytes // 1000, 128 * 1024), "latency_us": 10_000}


def _set_pdeathsig() -> None:
    """In the child before exec: die with SIGKILL when the parent (thread) that started it dies,
    so that even a SIGKILLed owner leaves no ranks running (sweep() removes the rest)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort only
        pass


def can_create_namespaces() -> Tuple[bool, str]:
    """(True, "") when this process can build a virtual cluster; else (False, why not)."""
    if sys.platform != "linux":
        return False, f"network namespaces need Linux, this is {sys.platform}"
    for t in ("ip", "tc"):
        try:
            _tool(t)
        except VClusterError as e:
            return False, str(e)
    if os.geteuid() != 0:
        return False, "creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    probe = f"{PREFIX}probe-{os.getpid()}-{secrets.token_hex(2)}"
    try:
        p = _ip("netns", "add", probe, check=False)
        if p.returncode != 0:
            return False, f"`ip netns add` failed: {p.stderr.strip()}"
        p = _ip("-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1", check=False)
        if p.returncode != 0:
            return False, f"cannot create a veth pair in a namespace: {p.stderr.strip()}"
        p = _ip("-n", probe, "link", "add", "b0", "type", "bridge", check=False)
        if p.returncode != 0:
            return False, f"cannot create a bridge in a namespace: {p.stderr.strip()}"
        p = _tc("-n", probe, "qdisc", "add", "dev", "p0", "root", "tbf", "rate", "1gbit", "burst", "131072",
                "latency", "10ms", check=False)
        if p.returncode != 0:
            return False, f"the tbf qdisc is not available: {p.stderr.strip()}"
        return True, ""
    except (OSError, subprocess.SubprocessError, VClusterError) as e:
        return False, f"probing network namespaces failed: {e}"
    finally:
        if probe in list_namespaces():
            _ip("netns", "del", probe, check=False)


# ----------------------------------------------------------------------------------------------
# owner records and sweep


def _record_path(name: str) -> str:
    return os.path.join(RUN_DIR, f"{name}.json")


def _read_record(name: str) -> Optional[dict]:
    try:
        with open(_record_path(name)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None


def _write_record(name: str, record: dict) -> None:
    os.makedirs(RUN_DIR, exist_ok=True)
    tmp = _record_path(name) + f".tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, _record_path(name))


def _cluster_of(ns: str) -> Optional[str]:
    """The cluster name of a kumi-vc namespace (kumi-vc-NAME-hub / kumi-vc-NAME-n3), or None."""
    m = re.fullmatch(re.escape(PREFIX) + r"(.+)-(hub|n\d+)", ns)
    return m.group(1) if m else None


def _cluster_resources(name: str) -> List[str]:
    """Every namespace name belonging to cluster `name` that exists as a namespace or a netns dir."""
    names = set(list_namespaces())
    try:
        names.update(os.listdir(NETNS_ETC))
    except FileNotFoundError:
        pass
    rec = _read_record(name) or {}
    names.update(rec.get("namespaces", []))
    return sorted(n for n in names if _cluster_of(n) == name)


def clusters() -> Dict[str, dict]:
    """Every kumi-vc cluster on this machine: name -> {namespaces, owner_pid, alive, detached, ...}."""
    found: Dict[str, dict] = {}
    names = set(list_namespaces())
    try:
        names.update(os.listdir(NETNS_ETC))
    except FileNotFoundError:
        pass
    for ns in names:
        c = _cluster_of(ns)
        if c is not None and not ns.startswith(PREFIX + "probe-"):
            found.setdefault(c, {})
    try:
        for f in os.listdir(RUN_DIR):
            if f.endswith(".json"):
                found.setdefault(f[:-5], {})
    except FileNotFoundError:
        pass
    for c in found:
        rec = _read_record(c) or {}
        found[c] = dict(rec, namespaces=_cluster_resources(c), recorded=bool(rec),
                        alive=_alive(rec.get("owner_pid", 0), rec.get("owner_start")),
                        detached=bool(rec.get("detached")))
    return found


def destroy(name: str) -> List[str]:
    """Removes cluster `name` whoever owns it: its processes, namespaces, netns dirs and record.
    Returns the namespaces that were removed."""
    with _Lock():
        nss = _cluster_resources(name)
        errors = _remove_namespaces(nss)
        try:
            os.unlink(_record_path(name))
        except FileNotFoundError:
            pass
    if errors:
        raise VClusterError("; ".join(errors))
    return nss


def sweep(include_detached: bool = False) -> List[str]:
    """Removes clusters left behind by earlier runs: those whose owner process is gone (or that
    have no owner record at all). Clusters of live owners are kept; so are clusters made by
    `vcluster.py up` (detached) unless include_detached. Also removes stray kumi-vc probe
    namespaces. Returns the names of the clusters removed."""
    removed, errors = [], []
    with _Lock():  # one sweeper at a time: concurrent test runs may all sweep at start
        for ns in list_namespaces():  # probes of can_create_namespaces() killed half-way
            m = re.fullmatch(re.escape(PREFIX) + r"probe-(\d+)-[0-9a-f]+", ns)
            if m and not _alive(int(m.group(1)), None):
                _remove_namespaces([ns])
        for name, info in clusters().items():
            if info["alive"] or (info["detached"] and not include_detached):
                continue
            try:
                destroy(name)
            except VClusterError as e:
                errors.append(f"{name}: {e}")
            removed.append(name)
    if errors:
        raise VClusterError(f"sweep could not remove everything: {'; '.join(errors)}")
    return removed


# ----------------------------------------------------------------------------------------------
# the cluster


class RankResult(NamedTuple):
    returncode: int  # as Popen's: negative = killed by that signal
    stdout: str
    stderr: str


class JobResult(list):
    """launch()'s answer: a list of RankResult, indexed by rank, plus how the job ended."""

    def __init__(self, results: List[RankResult], nodes: List[int], timed_out: bool,
                 first_failed: Optional[int], seconds: float):
        super().__init__(results)
        self.nodes = nodes              # node of each rank
        self.timed_out = timed_out
        self.first_failed = first_failed  # the rank that failed first (in time), or None
        self.seconds = seconds

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(r.returncode == 0 for r in self)

    @property
    def exit_status(self) -> int:
        """A shell exit status for the job: 0, 124 on timeout, else the first failure's status."""
        if self.timed_out:
            return 124
        if self.first_failed is None:
            return 0
        rc = self[self.first_failed].returncode
        return 128 - rc if rc < 0 else rc

    def describe(self, tail: int = 4000) -> str:
        """Every rank's status and output tail, for assertion messages."""
        parts = [f"job {'timed out' if self.timed_out else 'ended'} after {self.seconds:.1f} s"]
        for r, res in enumerate(self):
            parts.append(f"--- rank {r} (node {self.nodes[r]}): returncode {res.returncode}\n"
                         f"stdout: ...{res.stdout[-tail:]}\nstderr: ...{res.stderr[-tail:]}")
        return "\n".join(parts)


def _pick_subnet(name: str) -> Tuple[int, int]:
    """10.X.Y.0/24 from the name's hash, skipping subnets the root namespace uses (read only)."""
    used = set()
    try:
        out = _ip("-4", "-o", "addr", "show", check=False).stdout
        for m in re.finditer(r"inet 10\.(\d+)\.(\d+)\.", out):
            used.add((int(m.group(1)), int(m.group(2))))
    except VClusterError:
        pass
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    for k in range(1000):
        x = 128 + (h >> (k % 48)) % 120 if k < 48 else random.randint(128, 247)
        y = (h >> ((k * 7) % 48)) % 256 if k < 48 else random.randint(0, 255)
        if (x, y) not in used:
            return x, y
    return 250, random.randint(0, 255)


class VirtualCluster:
    """M nodes as network namespaces joined by a bridge; see the module docstring.

    The cluster is built by __enter__ (or create()) and removed by __exit__ (or close()), which
    also runs on SIGTERM/SIGINT and at interpreter exit."""

    def __init__(self, nodes: int = 2, rate: Optional[Union[str, int]] = "1gbit", name: Optional[str] = None):
        if not 1 <= int(nodes) <= MAX_NODES:
            raise ValueError(f"nodes must be in [1, {MAX_NODES}], got {nodes}")
        self.nodes = int(nodes)
        self.rate_bits = parse_rate(rate) if rate else None
        self.name = name or f"{os.getpid()}-{secrets.token_hex(2)}"
        if not _NAME_RE.match(self.name):
            raise ValueError(f"cluster name {self.name!r}: use 1-32 of [a-z0-9-], starting with a letter or digit")
        self.hub_ns = f"{PREFIX}{self.name}-hub"
        self.node_ns = [f"{PREFIX}{self.name}-n{i}" for i in range(self.nodes)]
        self.subnet: Optional[Tuple[int, int]] = None
        self._procs: List[subprocess.Popen] = []
        self._lock = threading.RLock()
        self._created = False
        self._closed = False
        self._detached = False
        self._old_handlers: Dict[int, object] = {}
        self._job_counter = 0
        self._port = random.randint(20000, 29000)

    # -- naming
    def namespace(self, node: int) -> str:
        return self.node_ns[self._check_node(node)]

    def address(self, node: int) -> str:
        self._check_node(node)
        if self.subnet is None:
            raise VClusterError("the cluster is not created yet")
        return f"10.{self.subnet[0]}.{self.subnet[1]}.{node + 1}"

    def hostname(self, node: int) -> str:
        return f"node{self._check_node(node)}"

    def hub_ifname(self, node: int) -> str:
        """The hub end of node's link (in namespace hub_ns)."""
        return f"v{self._check_node(node)}"

    node_ifname = NODE_IF

    def _check_node(self, node: int) -> int:
        if not isinstance(node, int) or not 0 <= node < self.nodes:
            raise IndexError(f"node {node!r} is not in [0, {self.nodes})")
        return node

    def __repr__(self) -> str:
        rate = f"{self.rate_bits} bit/s" if self.rate_bits else "unlimited"
        return f"VirtualCluster(name={self.name!r}, nodes={self.nodes}, rate={rate})"

    # -- life cycle
    def __enter__(self) -> "VirtualCluster":
        self.create()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def create(self, detached: bool = False) -> "VirtualCluster":
        """Builds the cluster. detached=True (used by `vcluster.py up`) keeps it after this process
        ends: no atexit/signal teardown, and sweep() leaves it alone unless include_detached."""
        if self._created:
            raise VClusterError(f"cluster {self.name} was already created")
        ok, why = can_create_namespaces()
        if not ok:
            raise VClusterError(f"cannot build a virtual cluster: {why}")
        with _Lock():
            rec = _read_record(self.name)
            if rec is not None or _cluster_resources(self.name):
                if rec is not None and (rec.get("detached") or _alive(rec.get("owner_pid", 0), rec.get("owner_start"))):
                    raise VClusterError(f"a cluster named {self.name!r} exists (owner pid {rec.get('owner_pid')}); "
                                        f"pick another name or remove it: vcluster.py down --name {self.name}")
                destroy(self.name)  # stale leftovers of a dead owner
            self._created = True
            self._detached = detached
            self.subnet = _pick_subnet(self.name)
            # The record goes first: a namespace without one is known to be stale by sweep().
            _write_record(self.name, {
                "name": self.name, "owner_pid": os.getpid(), "owner_start": _proc_start_time(os.getpid()),
                "detached": detached, "nodes": self.nodes, "rate_bits": self.rate_bits,
                "subnet": f"10.{self.subnet[0]}.{self.subnet[1]}.0/24", "hub": self.hub_ns,
                "namespaces": [self.hub_ns] + self.node_ns,
                "addresses": {self.hostname(i): self.address(i) for i in range(self.nodes)},
                "created": time.time()})
        if not detached:
            atexit.register(self.close)
            self._install_signal_handlers()
        try:
            self._build()
        except BaseException:
            self._detached = False  # a half-built cluster is never kept
            self.close()
            raise
        return self

    def _build(self) -> None:
        hub = self.hub_ns
        _ip("netns", "add", hub)
        _ip("-n", hub, "link", "set", "lo", "up")
        _ip("-n", hub, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", hub, "link", "set", BRIDGE, "up")
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        hosts += [f"{self.address(i)}\t{self.hostname(i)} {self.node_ns[i]}" for i in range(self.nodes)]
        for i, ns in enumerate(self.node_ns):
            d = os.path.join(NETNS_ETC, ns)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write(f"# kumi virtual cluster {self.name}: written by tests/cluster/vcluster.py\n")
                f.write("\n".join(hosts) + "\n")
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "add", NODE_IF, "type", "veth", "peer", "name", self.hub_ifname(i), "netns", hub)
            _ip("-n", hub, "link", "set", self.hub_ifname(i), "master", BRIDGE)
            _ip("-n", hub, "link", "set", self.hub_ifname(i), "up")
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", NODE_IF)
            _ip("-n", ns, "link", "set", NODE_IF, "up")
            if self.rate_bits:
                self.set_rate(i, self.rate_bits)

    def set_rate(self, node: int, rate: Optional[Union[str, int]], side: str = "both") -> None:
        """Sets (or with rate=None removes) the tbf limit of node's link: side "node" shapes what
        the node sends (egress of its eth0), "hub" what it receives (egress of the hub end)."""
        if side not in ("both", "node", "hub"):
            raise ValueError(f"side must be both, node or hub, got {side!r}")
        ends = []
        if side in ("both", "node"):
            ends.append((self.namespace(node), NODE_IF))
        if side in ("both", "hub"):
            ends.append((self.hub_ns, self.hub_ifname(node)))
        for ns, dev in ends:
            if rate is None:
                _tc("-n", ns, "qdisc", "del", "dev", dev, "root", check=False)
                continue
            p = tbf_params(parse_rate(rate))
            _tc("-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{p['rate']}bit",
                "burst", str(p["burst"]), "latency", f"{p['latency_us']}us")

    def set_pair_rate(self, a: int, b: int, rate: Union[str, int]) -> None:
        """Limits only the traffic between nodes a and b, both ways, to rate: each node's egress
        gets an htb qdisc whose default class keeps the node's own rate (the cluster's, or
        unlimited) and whose second class, for packets to the other node, the pair's. Replaces
        the node-side tbf of set_rate on a and b."""
        pair = parse_rate(rate)
        base = self.rate_bits or parse_rate("10gbit")
        for me, other in ((self._check_node(a), self._check_node(b)), (b, a)):
            ns = self.namespace(me)
            _tc("-n", ns, "qdisc", "del", "dev", NODE_IF, "root", check=False)
            _tc("-n", ns, "qdisc", "add", "dev", NODE_IF, "root", "handle", "1:", "htb", "default", "1")
            # The bursts tbf would get at these rates, so that the default class carries what
            # set_rate's tbf does (htb's own default burst is a single packet).
            for cls, bits in (("1:1", base), ("1:2", pair)):
                burst = str(tbf_params(bits)["burst"])
                _tc("-n", ns, "class", "add", "dev", NODE_IF, "parent", "1:", "classid", cls, "htb", "rate", f"{bits}bit",
                    "burst", burst, "cburst", burst)
            _tc("-n", ns, "filter", "add", "dev", NODE_IF, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                "match", "ip", "dst", f"{self.address(other)}/32", "flowid", "1:2")

    def qdiscs(self, node: int) -> Dict[str, str]:
        """`tc qdisc show` of both ends of node's link (for checks and debugging)."""
        return {"node": _tc("-n", self.namespace(node), "qdisc", "show", "dev", NODE_IF).stdout.strip(),
                "hub": _tc("-n", self.hub_ns, "qdisc", "show", "dev", self.hub_ifname(node)).stdout.strip()}

    def detach(self) -> None:
        """Leaves the cluster in place when this process ends (remove it with destroy(name))."""
        with self._lock:
            self._detached = True
            rec = _read_record(self.name)
            if rec is not None:
                rec["detached"] = True
                _write_record(self.name, rec)
            atexit.unregister(self.close)
            self._restore_signal_handlers()

    def close(self) -> None:
        """Removes everything: processes in the namespaces, namespaces (and so the veths and the
        bridge), /etc/netns dirs and the owner record. Idempotent; safe from signal handlers."""
        with self._lock:
            if self._closed or not self._created or self._detached:
                return
            self._closed = True
            atexit.unregister(self.close)
            self._restore_signal_handlers()
            for p in list(self._procs):
                self._stop(p, signal.SIGTERM)
            deadline = time.monotonic() + 1.0
            for p in list(self._procs):
                try:
                    p.wait(timeout=max(0.01, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._stop(p, signal.SIGKILL)
            errors = _remove_namespaces(self.node_ns + [self.hub_ns])
            for p in self._procs:
                try:
                    p.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
                for f in (p.stdin, p.stdout, p.stderr):
                    try:
                        if f:
                            f.close()
                    except OSError:
                        pass
            try:
                os.unlink(_record_path(self.name))
            except FileNotFoundError:
                pass
            if errors:
                raise VClusterError(f"teardown of cluster {self.name} was incomplete: {'; '.join(errors)}")

    @property
    def closed(self) -> bool:
        return self._closed

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; atexit still applies
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                if signal.getsignal(sig) == signal.SIG_IGN:
                    continue  # the process was told to ignore it (e.g. started in the background)
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):
                pass

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        # A handler installed after ours (another cluster) stays; it chains to ours, which then
        # only passes the signal on to the handler it replaced.
        for sig, old in list(self._old_handlers.items()):
            try:
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, old)
                    del self._old_handlers[sig]
            except (ValueError, OSError, TypeError):
                pass

    def _on_signal(self, sig, frame) -> None:
        old = self._old_handlers.get(sig, signal.SIG_DFL)
        try:
            self.close()
        except Exception as e:  # noqa: BLE001 - the signal must still be delivered
            print(f"vcluster: teardown of {self.name} on signal {sig}: {e}", file=sys.stderr)
        if callable(old):
            old(sig, frame)  # e.g. Python's SIGINT handler raises KeyboardInterrupt
        elif old == signal.SIG_IGN:
            return
        else:
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)

    # -- running things
    def run(self, node: int, argv: Sequence[str], env: Optional[Mapping[str, str]] = None,
            **popen_kwargs) -> subprocess.Popen:
        """Starts argv inside node's namespace (`ip netns exec`, which also shows the node's
        /etc/netns hosts file as /etc/hosts) and returns its Popen. env: variables added to (or,
        with value None, removed from) this process's environment. By default the process gets
        its own session (so it and its children can be signalled as a group) and dies with the
        thread that started it. It is killed at teardown at the latest."""
        if not self._created or self._closed:
            raise VClusterError(f"cluster {self.name} is not up")
        full_env = dict(os.environ)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = str(v)
        popen_kwargs.setdefault("start_new_session", True)
        if "preexec_fn" not in popen_kwargs:
            popen_kwargs["preexec_fn"] = _set_pdeathsig
        p = subprocess.Popen([_tool("ip"), "netns", "exec", self.namespace(node), *argv], env=full_env,
                             **popen_kwargs)
        with self._lock:
            self._procs = [q for q in self._procs if q.poll() is None] + [p]
        return p

    def run_wait(self, node: int, argv: Sequence[str], timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
        """run() to completion with captured text output; kills it after timeout seconds."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        p = self.run(node, argv, **kwargs)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._stop(p, signal.SIGKILL)
            out, err = p.communicate()
            raise VClusterError(f"{argv} on node {node} did not finish within {timeout} s:\n{out}\n{err}")
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    @staticmethod
    def _stop(p: subprocess.Popen, sig: int) -> None:
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)  # the process and what it started (its own session by default)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.send_signal(sig)
        except (ProcessLookupError, OSError):
            pass

    def launch(self, argv: Sequence[str], ranks_per_node: Union[int, Sequence[int]] = 1,
               env: Optional[Mapping[str, str]] = None, timeout: float = 120, grace: float = 3.0,
               on_line: Optional[Callable[[int, str, str], None]] = None) -> JobResult:
        """Runs one kumi job over the nodes and waits for it.

        ranks_per_node: ranks on every node, or a list with one count per node (0 allowed).
        Ranks are numbered node-major. Each rank gets KUMI_RANK, KUMI_WORLD_SIZE, KUMI_LOCAL_RANK,
        KUMI_LOCAL_SIZE, KUMI_NODE_RANK, KUMI_HOSTID=<its node's hostname>, KUMI_JOB_ID (unique per
        launch) and KUMI_STORE=<hostname of rank 0's node>:<port>, which rank 0 serves
        (KUMI_STORE_SERVE=1 there, 0 elsewhere), plus `env`.
        If a rank fails, the others get `grace` seconds to report the failure their own way, then
        are terminated; after `timeout` seconds all are killed (result.timed_out).
        on_line(rank, "stdout"|"stderr", line) is called for each output line as it arrives."""
        counts = [int(ranks_per_node)] * self.nodes if isinstance(ranks_per_node, int) else [int(c) for c in ranks_per_node]
        if len(counts) != self.nodes or any(c < 0 for c in counts) or sum(counts) < 1:
            raise ValueError(f"ranks_per_node must be a count or {self.nodes} counts >= 0 with a positive sum, "
                             f"got {ranks_per_node!r}")
        world = sum(counts)
        node_of = [n for n, c in enumerate(counts) for _ in range(c)]
        store_node = node_of[0]
        self._job_counter += 1
        self._port = 20000 + (self._port - 20000 + 1) % 9000  # a fresh port per job: no TIME_WAIT clash
        job_id = f"vc-{self.name}-{self._job_counter}-{secrets.token_hex(3)}"
        store = f"{self.hostname(store_node)}:{self._port}"
        base = {k: None for k in _RANK_VARS}
        base["KUMI_FLIGHT_RECORDER_DIR"] = "none"  # failing test jobs must not litter /tmp; env may override
        base.update(env or {})
        procs: List[subprocess.Popen] = []
        outs: List[Dict[str, List[str]]] = []
        readers: List[threading.Thread] = []
        start = time.monotonic()

        def reader(rank: int, stream_name: str, f) -> None:
            buf = outs[rank][stream_name]
            for line in iter(f.readline, ""):
                buf.append(line)
                if on_line:
                    try:
                        on_line(rank, stream_name, line)
                    except Exception:  # noqa: BLE001 - printing must not break the job
                        pass
            f.close()

        try:
            for rank in range(world):
                node = node_of[rank]
                first = node_of.index(node)
                renv = dict(base)
                renv.update({"KUMI_RANK": str(rank), "KUMI_WORLD_SIZE": str(world),
                             "KUMI_LOCAL_RANK": str(rank - first), "KUMI_LOCAL_SIZE": str(counts[node]),
                             "KUMI_NODE_RANK": str(node), "KUMI_HOSTID": self.hostname(node),
                             "KUMI_JOB_ID": job_id, "KUMI_STORE": store,
                             "KUMI_STORE_SERVE": "1" if rank == 0 else "0"})
                p = self.run(node, argv, env=renv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, errors="replace")
                procs.append(p)
                outs.append({"stdout": [], "stderr": []})
                for sname in ("stdout", "stderr"):
                    t = threading.Thread(target=reader, args=(rank, sname, getattr(p, sname)), daemon=True)
                    t.start()
                    readers.append(t)
        except BaseException:
            for p in procs:
                self._stop(p, signal.SIGKILL)
            raise

        timed_out = False
        first_failed: Optional[int] = None
        failed_at: Optional[float] = None
        term_sent_at: Optional[float] = None
        try:
            while True:
                codes = [p.poll() for p in procs]
                now = time.monotonic()
                for r, c in enumerate(codes):
                    if c not in (None, 0) and first_failed is None:
                        first_failed, failed_at = r, now
                if all(c is not None for c in codes):
                    break
                if now - start > timeout:
                    timed_out = True
                    for p in procs:
                        self._stop(p, signal.SIGKILL)
                    for p in procs:
                        p.wait()
                    break
                if failed_at is not None and term_sent_at is None and now - failed_at >= grace:
                    term_sent_at = now
                    for p in procs:
                        self._stop(p, signal.SIGTERM)
                if term_sent_at is not None and now - term_sent_at >= 2.0:
                    for p in procs:
                        self._stop(p, signal.SIGKILL)
                time.sleep(0.05)
        except BaseException:
            for p in procs:
                self._stop(p, signal.SIGKILL)
            raise
        join_deadline = time.monotonic() + 5  # a grandchild still holding a pipe is killed at teardown
        for t in readers:
            t.join(timeout=max(0.0, join_deadline - time.monotonic()))
        results = [RankResult(p.returncode, "".join(o["stdout"]), "".join(o["stderr"])) for p, o in zip(procs, outs)]
        return JobResult(results, node_of, timed_out, first_failed, time.monotonic() - start)


# ----------------------------------------------------------------------------------------------
# CLI


def _parse_counts(text: str) -> Union[int, List[int]]:
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected a count or a comma-separated list of counts, got {text!r}")
    return int(parts[0]) if len(parts) == 1 else [int(p) for p in parts]


def _print_cluster(vc: VirtualCluster) -> None:
    rate = f"{vc.rate_bits} bit/s each way per node (tbf)" if vc.rate_bits else "unlimited"
    print(f"cluster {vc.name}: {vc.nodes} nodes, subnet 10.{vc.subnet[0]}.{vc.subnet[1]}.0/24, rate {rate}")
    print(f"  hub namespace {vc.hub_ns} (bridge {BRIDGE})")
    for i in range(vc.nodes):
        print(f"  {vc.hostname(i):8} {vc.address(i):16} namespace {vc.namespace(i)}")
    print(f"run a command on a node:  ip netns exec {vc.namespace(0)} COMMAND")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="vcluster.py", description="kumi virtual cluster: nodes as network namespaces")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create a cluster and keep it until `down`")
    up.add_argument("--nodes", type=int, default=2)
    up.add_argument("--rate", default=None, help="tbf rate per link and direction, e.g. 1gbit (default: none)")
    up.add_argument("--name", required=True)
    down = sub.add_parser("down", help="remove a cluster")
    down.add_argument("--name", required=True)
    sw = sub.add_parser("sweep", help="remove clusters whose owner process is gone")
    sw.add_argument("--all", action="store_true", help="also remove clusters made by `up`")
    sub.add_parser("list", help="list the clusters on this machine")
    run = sub.add_parser("run", help="create a cluster, run a kumi job on it, remove it")
    run.add_argument("--nodes", type=int, default=2)
    run.add_argument("--ranks-per-node", type=_parse_counts, default=1, help="a count, or one per node: 2,1")
    run.add_argument("--rate", default=None, help="tbf rate, e.g. 1gbit (default: none)")
    run.add_argument("--name", default=None)
    run.add_argument("--timeout", type=float, default=600)
    run.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM ARGS")
    a = ap.parse_args(argv)

    try:
        if a.cmd == "up":
            vc = VirtualCluster(nodes=a.nodes, rate=a.rate, name=a.name)
            vc.create(detached=True)
            _print_cluster(vc)
            return 0
        if a.cmd == "down":
            nss = destroy(a.name)
            print(f"removed {a.name}: {', '.join(nss) if nss else 'nothing was left'}")
            return 0
        if a.cmd == "sweep":
            removed = sweep(include_detached=a.all)
            print(f"removed: {', '.join(removed)}" if removed else "nothing to remove")
            return 0
        if a.cmd == "list":
            for name, info in sorted(clusters().items()):
                state = "detached" if info["detached"] else ("owner alive" if info["alive"] else "stale")
                print(f"{name}: {state}, owner pid {info.get('owner_pid', '?')}, "
                      f"namespaces {' '.join(info['namespaces']) or '-'}")
            return 0
        # run
        prog = list(a.program)
        if prog and prog[0] == "--":
            prog = prog[1:]
        if not prog:
            ap.error("run needs a program: run [options] -- PROGRAM ARGS")
        lock = threading.Lock()

        def on_line(rank: int, stream: str, line: str) -> None:
            with lock:
                out = sys.stdout if stream == "stdout" else sys.stderr
                out.write(f"[{rank}] {line if line.endswith(chr(10)) else line + chr(10)}")
                out.flush()

        with VirtualCluster(nodes=a.nodes, rate=a.rate, name=a.name) as vc:
            res = vc.launch(prog, a.ranks_per_node, timeout=a.timeout, on_line=on_line)
        for r, rr in enumerate(res):
            if rr.returncode != 0:
                print(f"vcluster: rank {r} (node {res.nodes[r]}) ended with {rr.returncode}", file=sys.stderr)
        if res.timed_out:
            print(f"vcluster: the job timed out after {a.timeout} s", file=sys.stderr)
        return res.exit_status
    except (VClusterError, ValueError) as e:
        print(f"vcluster: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the cluster is already gone: the SIGINT handler removed it
        print("vcluster: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
