"""Simulated Kubernetes pods on the virtual cluster (vcluster.py), for tests of gang-job start-up.

A pod is a node of a VirtualCluster (its own network namespace and address) whose process also
gets its own hostname (a UTS namespace: the pod name) and IPC namespace (so its host id differs
from every other pod's, as in a real pod), and the environment a given launcher would give it.
Its /etc/hosts is the one the kubelet writes (its own line; with a subdomain, its FQDN), plus a
"DNS" record for every other pod, which appears only after a delay once that pod started, as a
headless Service's records do. A pod can be restarted as a controller would recreate it: same
name, new address, maybe a higher failure count.

    with VirtualCluster(nodes=4, rate=None) as vc:
        job = PodJob(vc, indexed_job("kumi-job", 4, extra_env), program)
        job.start(0, delay=2.0, dns_delay=1.0)   # pod 0 after 2 s; its name resolves 1 s later
        ...
        results = job.wait(timeout=90)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

from vcluster import NETNS_ETC, NODE_IF, VirtualCluster, _ip

NAMESPACE = "default"
ZONE = "svc.cluster.local"


class PodSpec(NamedTuple):
    name: str                      # the pod's name, which is its hostname
    fqdn: Optional[str]            # <name>.<subdomain>.<ns>.svc.cluster.local when it has a subdomain
    dns_names: List[str]           # names that resolve to it once its record appears
    env: Dict[str, str]            # what the launcher sets (incarnation-dependent parts via env_for)


class Launcher(NamedTuple):
    pods: List[PodSpec]
    env_for: Callable[[int, int], Dict[str, str]]  # (pod index, incarnation) -> extra variables


def indexed_job(job: str, pods: int, env: Mapping[str, str], failure_count_env: bool = True) -> Launcher:
    """A Kubernetes Indexed Job with subdomain = a headless Service named like the job."""
    specs = []
    for i in range(pods):
        name = f"{job}-{i}"
        fqdn = f"{name}.{job}.{NAMESPACE}.{ZONE}"
        specs.append(PodSpec(name, fqdn, [fqdn, f"{name}.{job}"],
                             {"JOB_COMPLETION_INDEX": str(i), **env}))

    def env_for(i: int, incarnation: int) -> Dict[str, str]:
        # batch.kubernetes.io/job-index-failure-count through the downward API (deploy/kubernetes/)
        return {"JOB_INDEX_FAILURE_COUNT": str(incarnation)} if failure_count_env else {}
    return Launcher(specs, env_for)


def pytorch_job(job: str, pods: int, env: Mapping[str, str], master_port: int = 23456) -> Launcher:
    """A Kubeflow PyTorchJob: pod <job>-master-0 and workers <job>-worker-<i>; the operator's
    Service <job>-master-0 names the master; RANK is the pod's index (one process per pod)."""
    specs = []
    for i in range(pods):
        name = f"{job}-master-0" if i == 0 else f"{job}-worker-{i - 1}"
        pet = {"PET_MASTER_ADDR": f"{job}-master-0", "PET_MASTER_PORT": str(master_port), "PET_NNODES": str(pods),
               "PET_NODE_RANK": str(i), "PET_NPROC_PER_NODE": "1", "MASTER_ADDR": f"{job}-master-0",
               "MASTER_PORT": str(master_port), "RANK": str(i), "WORLD_SIZE": str(pods)}
        specs.append(PodSpec(name, None, [name], {**pet, **env}))
    return Launcher(specs, lambda i, incarnation: {})


class PodResult(NamedTuple):
    pod: int
    attempt: int                   # 0 for the first process of the pod, 1 after a restart, ...
    incarnation: int
    returncode: Optional[int]      # None: killed (restarted, or past the timeout)
    output: str
    started: float                 # seconds after the job's start
    ended: float


class PodJob:
    def __init__(self, vc: VirtualCluster, launcher: Launcher, argv: Sequence[str]):
        if vc.nodes < len(launcher.pods):
            raise ValueError("one virtual-cluster node per pod")
        self.vc, self.launcher, self.argv = vc, launcher, list(argv)
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._records: Dict[int, str] = {}         # pod -> address, once its DNS record exists
        self._address = {i: vc.address(i) for i in range(len(launcher.pods))}
        self._procs: Dict[int, tuple] = {}         # pod -> (Popen, incarnation, start time, output list)
        self._attempts: Dict[int, int] = {}        # pod -> processes started so far
        self._timers: List[threading.Timer] = []
        self._closed = False
        self._results: List[PodResult] = []
        self._threads: List[threading.Thread] = []
        self._unshare = shutil.which("unshare")
        if self._unshare is None:
            raise RuntimeError("unshare (util-linux) is needed to give each pod its own hostname and IPC namespace")
        for i in range(len(launcher.pods)):
            self._write_hosts(i)

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- /etc/hosts of each pod: its own line (the kubelet's), then the DNS records that exist
    def _hosts_text(self, pod: int) -> str:
        spec = self.launcher.pods[pod]
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        own = self._address[pod]
        lines.append(f"{own}\t{spec.fqdn} {spec.name}" if spec.fqdn else f"{own}\t{spec.name}")
        for other, addr in sorted(self._records.items()):
            if other != pod:
                lines.append(f"{addr}\t{' '.join(self.launcher.pods[other].dns_names)}")
        return "\n".join(lines) + "\n"

    def _write_hosts(self, pod: int) -> None:
        # In place: `ip netns exec` bind-mounts this very file over /etc/hosts of running pods.
        path = os.path.join(NETNS_ETC, self.vc.namespace(pod), "hosts")
        with open(path, "r+" if os.path.exists(path) else "w") as f:
            f.seek(0)
            f.write(self._hosts_text(pod))
            f.truncate()

    def _publish(self, pod: int, address: Optional[str]) -> None:
        with self._lock:
            if self._closed:
                return
            if address is None:
                self._records.pop(pod, None)
            else:
                self._records[pod] = address
            for i in range(len(self.launcher.pods)):
                self._write_hosts(i)

    # -- pods
    def start(self, pod: int, delay: float = 0.0, dns_delay: float = 0.0, incarnation: int = 0) -> None:
        """Starts the pod's process after `delay` s; its DNS record appears `dns_delay` s later."""
        t = threading.Thread(target=self._run, args=(pod, delay, dns_delay, incarnation), daemon=True)
        self._threads.append(t)
        t.start()

    def _run(self, pod: int, delay: float, dns_delay: float, incarnation: int) -> None:
        time.sleep(delay)
        spec = self.launcher.pods[pod]
        env = {**spec.env, **self.launcher.env_for(pod, incarnation)}
        script = 'hostname "$1" && shift && exec "$@"'
        argv = [self._unshare, "--uts", "--ipc", "--", "sh", "-c", script, "sh", spec.name] + self.argv
        with self._lock:
            if self._closed:
                return
            self._write_hosts(pod)  # a recreated pod sees its new address at once
            p = self.vc.run(pod, argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            out: List[str] = []
            start = self.now()
            attempt = self._attempts.get(pod, 0)
            self._attempts[pod] = attempt + 1
            self._procs[pod] = (p, incarnation, start, out)
            if dns_delay >= 0:
                timer = threading.Timer(dns_delay, self._publish, args=(pod, self._address[pod]))
                self._timers.append(timer)
                timer.start()
        for line in p.stdout:
            out.append(line)
        p.wait()
        with self._lock:
            self._results.append(PodResult(pod, attempt, incarnation, p.returncode, "".join(out), start, self.now()))

    def started(self, pod: int) -> bool:
        with self._lock:
            return pod in self._procs

    def restart(self, pod: int, new_address: str, dns_delay: float, incarnation: int) -> None:
        """Kills the pod (as a preemption would) and recreates it: same name, new address, the
        given incarnation (failure count); its DNS record moves once the new pod is up."""
        with self._lock:
            p = self._procs[pod][0]
        p.kill()
        p.wait()
        self._publish(pod, None)  # the endpoint leaves the Service with the pod
        ns = self.vc.namespace(pod)
        _ip("-n", ns, "addr", "flush", "dev", NODE_IF)
        _ip("-n", ns, "addr", "add", f"{new_address}/24", "dev", NODE_IF)
        with self._lock:
            self._address[pod] = new_address
        self.start(pod, 0.0, dns_delay, incarnation)

    def wait(self, timeout: float) -> List[PodResult]:
        """Waits for every pod thread; kills what still runs after `timeout` s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and any(t.is_alive() for t in list(self._threads)):
            time.sleep(0.1)
        with self._lock:
            self._closed = True
            procs = [v[0] for v in self._procs.values()]
            for timer in self._timers:
                timer.cancel()
        for p in procs:
            if p.poll() is None:
                p.kill()
        for t in list(self._threads):
            t.join(timeout=5)
        with self._lock:
            return list(self._results)
