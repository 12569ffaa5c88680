"""Fault injection: ranks loop over checked collectives (tests/mp/fault_loop) and the test kills one
at random with SIGKILL (at a random moment of the loop; one trial in eight in its first 20 ms,
while connections are still being made), over shared memory, TCP and RDMA, at 2-5 ranks, under kumirun
and started by hand. Every survivor must fail (no success that needs the dead rank, no crash, no
hang) with an error that names the dead rank, soon after the kill; the launcher must report it.

Trials: KUMI_FAULT_TRIALS in all (default 80, shared between shared memory and TCP, each trial at
the next world size and alternating launchers), and KUMI_FAULT_TRIALS_RDMA over RDMA (default 8,
where an RDMA port exists: the Soft-RoCE VM lane); KUMI_FAULT_SEED makes a run repeatable (the seed is
printed). Each test prints per configuration the trials passed and the median and max time from
the kill to the survivors' errors.
"""
import contextlib
import glob
import os
import random
import re
import signal
import statistics
import subprocess
import threading
import time
import unittest
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import kumi_testlib as kt

KUMI_TIMEOUT = 20           # the ranks' deadline (seconds)
ERROR_BOUND = 10.0          # a survivor must fail this soon after the kill: well inside KUMI_TIMEOUT
KUMIRUN_GRACE = 1.5         # kumirun stops the other ranks this long after the first failure
LOOP_SECONDS = 60           # fault_loop's own limit: far beyond any kill
WORLD_SIZES = (2, 3, 4, 5)
DEFAULT_TRIALS = 80
MAX_DELAY = 0.8             # the kill comes up to this long after the victim entered its loop
EARLY_SHARE = 0.125         # ... or, in this share of trials, within EARLY_DELAY: while the first
EARLY_DELAY = 0.02          # collectives still make their (lazy) TCP connections
# Broadcasts are the one kind a rank may finish after another died: only the root's data is needed.
INDEPENDENT_KINDS = ("broadcast",)


def setUpModule():
    kt.kumirun()
    kt.program("fault_loop")


def total_trials() -> int:
    return max(1, int(os.environ.get("KUMI_FAULT_TRIALS", DEFAULT_TRIALS)))


def base_seed() -> int:
    return int(os.environ.get("KUMI_FAULT_SEED") or random.SystemRandom().randrange(1 << 31))


class Lines:
    """Lines of one stream, appended by a reader thread, waitable from the test."""

    def __init__(self):
        self.lines: List[str] = []
        self.cond = threading.Condition()

    def add(self, line: str):
        with self.cond:
            self.lines.append(line)
            self.cond.notify_all()

    def wait_match(self, regex: "re.Pattern", timeout: float) -> Optional["re.Match"]:
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    m = regex.match(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def text(self) -> str:
        with self.cond:
            return "".join(line + "\n" for line in self.lines)


def _pump(pipe, route):
    """Reads a pipe to its end, passing each line to route(line) (the pipe must never fill up)."""
    for line in pipe:
        route(line.rstrip("\n"))
    pipe.close()


@dataclass
class Job:
    """The ranks of one trial: one kumirun process, or one process per rank."""
    procs: List[subprocess.Popen]
    out: Dict[int, Lines]     # per rank: stdout (kumirun's prefix removed)
    err: Lines                # stderr of everything, kumirun's own lines included
    threads: List[threading.Thread] = field(default_factory=list)

    def wait(self, timeout: float) -> bool:
        """Waits for every process; False if one had to be killed."""
        deadline = time.monotonic() + timeout
        ok = True
        for p in self.procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                ok = False
        if not ok:
            self.kill()
        for t in self.threads:
            t.join(timeout=10)
        return ok

    def kill(self):
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()

    def describe(self) -> str:
        parts = [f"\n--- rank {r} stdout:\n{_without_early_ops(lines.text())}" for r, lines in sorted(self.out.items())]
        codes = ", ".join(str(p.returncode) for p in self.procs)
        return "".join(parts) + f"--- stderr:\n{self.err.text()}--- exit statuses: {codes}\n"


_PREFIXED = re.compile(r"^\[(\d+)\] (.*)$")


def _without_early_ops(text: str, keep: int = 4) -> str:
    """A rank's output without all but its last few OP lines (hundreds of them per trial)."""
    lines = text.splitlines()
    ops = [i for i, line in enumerate(lines) if line.startswith("OP ")]
    drop = set(ops[:-keep]) if len(ops) > keep else set()
    kept = [line for i, line in enumerate(lines) if i not in drop]
    note = [f"({len(drop)} earlier OP lines left out)"] if drop else []
    return "".join(line + "\n" for line in note + kept)


def start_job(np_: int, env: Dict[str, str], seed: int, launcher: str) -> Job:
    args = [kt.program("fault_loop"), str(seed), str(LOOP_SECONDS)]
    out = {r: Lines() for r in range(np_)}
    err = Lines()
    if launcher == "kumirun":
        proc = kt.start([kt.kumirun(), "-np", np_, "--", *args], env=kt.clean_env(env))

        def route_out(line):
            m = _PREFIXED.match(line)
            if m and int(m[1]) in out:
                out[int(m[1])].add(m[2])
            else:
                err.add("(unprefixed stdout) " + line)

        job = Job([proc], out, err)
        pumps = [(proc.stdout, route_out), (proc.stderr, err.add)]
    else:
        store = f"127.0.0.1:{kt.free_port()}"
        procs = [kt.start(args, env=kt.clean_env(env, KUMI_STORE=store, KUMI_RANK=r, KUMI_WORLD_SIZE=np_))
                 for r in range(np_)]
        job = Job(procs, out, err)
        pumps = []
        for r, p in enumerate(procs):
            pumps.append((p.stdout, out[r].add))
            pumps.append((p.stderr, lambda line, r=r: err.add(f"[{r}] {line}")))
    for pipe, route in pumps:
        t = threading.Thread(target=_pump, args=(pipe, route), daemon=True)
        t.start()
        job.threads.append(t)
    return job


@dataclass
class Trial:
    transport: str
    np_: int
    launcher: str
    seed: int
    victim: int = -1
    delay: float = 0.0
    problems: List[str] = field(default_factory=list)
    fault_to_error: List[float] = field(default_factory=list)
    messages: Dict[int, str] = field(default_factory=dict)

    def name(self) -> str:
        return (f"{self.transport} np={self.np_} {self.launcher} seed={self.seed} victim={self.victim} "
                f"delay={self.delay:.3f}s")


_LOOP = re.compile(r"^LOOP (\d+) (\d+)$")
_OP = re.compile(r"^OP (\d+) (\S+) (-?\d+)$")
_ONE = {name: re.compile(rf"^{name} (\S+)$") for name in ("FAILED_AT", "ERRTIME", "EXITING")}


def _value(text: str, name: str) -> Optional[str]:
    found = [m[1] for m in map(_ONE[name].match, text.splitlines()) if m]
    return found[0] if len(found) == 1 else None


def run_trial(trial: Trial) -> Trial:
    rng = random.Random(trial.seed)
    trial.victim = rng.randrange(trial.np_)
    trial.delay = rng.uniform(0.0, EARLY_DELAY if rng.random() < EARLY_SHARE else MAX_DELAY)
    job_id = f"faults-{os.getpid()}-{trial.seed}"
    env = dict(KUMI_TIMEOUT=KUMI_TIMEOUT, KUMI_JOB_ID=job_id)
    if trial.transport in ("tcp", "ib"):
        env["KUMI_TRANSPORT"] = trial.transport
    if trial.transport == "ib":
        # The RDMA port under test, as the caller chose it (the VM lane pins one with KUMI_IB_HCA).
        env.update({k: v for k, v in os.environ.items() if k.startswith("KUMI_IB_")})
    job = start_job(trial.np_, env, trial.seed, trial.launcher)
    try:
        loop = job.out[trial.victim].wait_match(_LOOP, 60)
        if loop is None:
            job.kill()
            trial.problems.append(f"rank {trial.victim} never entered its loop:{job.describe()}")
            return trial
        time.sleep(trial.delay)
        killed_at = time.monotonic()
        os.kill(int(loop[2]), signal.SIGKILL)
        if not job.wait(ERROR_BOUND + KUMIRUN_GRACE + 5):
            trial.problems.append(f"the job hung: still running {ERROR_BOUND + KUMIRUN_GRACE + 5:.0f} s after the kill "
                                  f"(KUMI_TIMEOUT={KUMI_TIMEOUT}), killed")
        check_trial(trial, job, killed_at)
        leftovers = glob.glob(f"/dev/shm/*{job_id}*")
        if leftovers:
            trial.problems.append(f"shared-memory files left behind: {leftovers}")
        if trial.problems:
            trial.problems.append(job.describe())
    finally:
        if any(p.returncode is None for p in job.procs):
            job.kill()
    return trial


def check_trial(trial: Trial, job: Job, killed_at: float):
    victim, p = trial.victim, trial.problems
    everything = job.err.text() + "".join(lines.text() for lines in job.out.values())
    for bad in ("Sanitizer", "runtime error", "internal error", "terminate called"):
        if bad in everything:
            p.append(f"'{bad}' in the output")
    # The launcher reports the kill.
    if trial.launcher == "kumirun":
        if job.procs[0].returncode != 128 + signal.SIGKILL:
            p.append(f"kumirun exited with {job.procs[0].returncode}, not 137 (rank {victim} killed by signal 9)")
        if f"kumirun: rank {victim} was killed by signal 9" not in job.err.text():
            p.append(f"kumirun does not say that rank {victim} was killed by signal 9")
    elif job.procs[victim].returncode != -signal.SIGKILL:
        p.append(f"rank {victim} exited with {job.procs[victim].returncode}, not killed by SIGKILL")
    victim_ops = [int(m[1]) for m in map(_OP.match, job.out[victim].text().splitlines()) if m]
    last_entered = victim_ops[-1] if victim_ops else -1
    # Each survivor fails, naming the dead rank, soon after the kill, and then exits cleanly.
    for r in range(trial.np_):
        if r == victim:
            continue
        text = job.out[r].text()
        if "NO ERROR SEEN" in text:
            p.append(f"rank {r} never saw an error")
        for line in text.splitlines():
            if line.startswith("WRONG"):
                p.append(f"rank {r} got a wrong result: {line}")
        if trial.launcher == "hand" and job.procs[r].returncode != 0:
            p.append(f"rank {r} exited with {job.procs[r].returncode}")
        results = [res for res in kt.parse_results(text) if res.what == "fault"]
        if len(results) != 1:
            p.append(f"rank {r} reported {len(results)} failures, not 1"
                     + (" (kumirun stops ranks that have not failed 1.5 s after the kill)"
                        if trial.launcher == "kumirun" and not results else ""))
            continue
        res = results[0]
        trial.messages[r] = res.message
        if res.code == 0:
            p.append(f"rank {r} reported a failure with code 0")
        if not re.search(rf"\brank {victim}\b", res.message):
            others = sorted({int(x) for x in re.findall(r"\brank (\d+)\b", res.message)} - {r})
            cascade = (f" (it names rank {', '.join(map(str, others))}, a survivor: the failure reached it through "
                       f"a neighbour)" if others else "")
            p.append(f"rank {r} does not name the dead rank {victim}{cascade}: {res.message}")
        errtime, failed_at, exiting = (_value(text, k) for k in ("ERRTIME", "FAILED_AT", "EXITING"))
        if errtime is None or failed_at is None:
            p.append(f"rank {r} did not print one ERRTIME and one FAILED_AT")
            continue
        delta = float(errtime) - killed_at
        if delta < 0:
            p.append(f"rank {r} failed {-delta:.3f} s before the kill")
        else:
            trial.fault_to_error.append(delta)  # in the figures also when too slow
        if delta > ERROR_BOUND:
            p.append(f"rank {r} failed {delta:.3f} s after the kill (bound {ERROR_BOUND} s)")
        if exiting is None:
            p.append(f"rank {r} did not destroy its communicator and exit (no EXITING line)")
        elif float(exiting) - killed_at > ERROR_BOUND:
            p.append(f"rank {r} exited {float(exiting) - killed_at:.3f} s after the kill")
        # No success that needs the dead rank: every op a survivor finished after the last one the
        # dead rank entered must be a broadcast from another root.
        ops = {int(m[1]): (m[2], int(m[3])) for m in map(_OP.match, text.splitlines()) if m}
        for i in range(last_entered + 1, int(failed_at)):
            kind, root = ops.get(i, ("?", -1))
            if kind not in INDEPENDENT_KINDS or root == victim:
                p.append(f"rank {r} finished op {i} ({kind}) with success although rank {victim} died before "
                         f"entering it (it last entered op {last_entered})")
                break


def summarize(trials: List[Trial]) -> str:
    lines = [f"{'transport':9} {'np':>2} {'launcher':8} {'passed':>7} {'median ms':>9} {'max ms':>8}"]
    keys = sorted({(t.transport, t.np_, t.launcher) for t in trials})
    for key in keys + [("all", 0, "")]:
        group = [t for t in trials if key[0] == "all" or (t.transport, t.np_, t.launcher) == key]
        times = [x for t in group for x in t.fault_to_error]
        passed = sum(1 for t in group if not t.problems)
        med = f"{1000 * statistics.median(times):9.1f}" if times else f"{'-':>9}"
        mx = f"{1000 * max(times):8.1f}" if times else f"{'-':>8}"
        label = (f"{key[0]:9} {key[1]:>2} {key[2]:8}" if key[0] != "all" else f"{'all':9} {'':>2} {'':8}")
        lines.append(f"{label} {passed:>3}/{len(group):<3} {med} {mx}")
    return "\n".join(lines)


class FaultInjection(unittest.TestCase):
    def run_transport(self, transport: str, index: int, count: Optional[int] = None):
        seed = base_seed()
        # The transports share the trials; each takes the world sizes in turn and alternates launchers.
        if count is None:
            count = total_trials() // 2 + (total_trials() % 2 if index == 0 else 0)
        trials = []
        t0 = time.monotonic()
        for k in range(count):
            np_ = WORLD_SIZES[k % len(WORLD_SIZES)]
            launcher = "kumirun" if (k // len(WORLD_SIZES)) % 2 == 0 else "hand"
            trials.append(run_trial(Trial(transport, np_, launcher, seed + 1000 * index + k)))
        elapsed = time.monotonic() - t0
        failed = [t for t in trials if t.problems]
        print(f"\n== fault injection over {transport}: {len(trials)} trials in {elapsed:.0f} s, base seed {seed} "
              f"(KUMI_FAULT_SEED={seed} repeats them), fault-to-error times of the survivors:\n{summarize(trials)}",
              flush=True)
        for t in failed:
            print(f"-- FAILED {t.name()}: {t.problems[0]}", flush=True)
        if failed:
            self.fail(f"{len(failed)} of {len(trials)} trials failed:" +
                      "".join(f"\n=== trial {t.name()}:\n" + "\n".join(t.problems) for t in failed))

    def test_kill_one_rank_shared_memory(self):
        self.run_transport("shm", 0)

    def test_kill_one_rank_tcp(self):
        self.run_transport("tcp", 1)

    def test_kill_one_rank_rdma(self):
        """Every rank on RDMA (KUMI_TRANSPORT=ib): a survivor learns of the death from its queue
        pairs (a write or a liveness probe that the dead peer no longer acknowledges). Needs an
        RDMA port: runs in the Soft-RoCE VM lane (scripts/softroce-vm.sh), skips elsewhere."""
        ports = glob.glob("/sys/class/infiniband/*")
        if not ports:
            self.skipTest("no RDMA device (/sys/class/infiniband is empty): runs in the Soft-RoCE VM lane")
        self.run_transport("ib", 2, int(os.environ.get("KUMI_FAULT_TRIALS_RDMA", 8)))


if __name__ == "__main__":
    unittest.main()
