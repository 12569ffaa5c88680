"""Hardened rendezvous and transports, across processes: jobs with a shared secret (KUMI_SECRET,
KUMI_SECRET_FILE, and the one kumirun makes), a rank or a client with the wrong secret (refused,
clearly, and nobody hangs), kumi-store with a secret, and a stranger that floods the store port
and a rank's transport port with connections, silence and garbage while a job runs collectives:
the job must finish with correct results."""
import os
import random
import re
import resource
import socket
import sys
import tempfile
import threading
import time
import unittest

import kumi_testlib as kt

# kumi-bench checks every element of every result (-c 1) and exits 1 on any wrong one.
BENCH_QUICK = ["allreduce", "-b", "8", "-e", "64K", "-f", "8", "-n", "2", "-w", "1", "-c", "1"]


def setUpModule():
    # The flood holds a few thousand sockets in this process; the ranks inherit the limit too.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    kt.require_option("KUMI_BUILD_BENCHMARKS")
    kt.kumirun()
    kt.program("kumi-bench")
    kt.program("kumi-store")
    kt.program("error_scenarios")
    kt.program("test_mp_collectives")


def bench_ok(test, res):
    test.assertEqual(res.returncode, 0, res.describe())
    test.assertIn("# Out of bounds values : 0 OK", res.stdout, res.describe())


def single_result(test, res, what="init"):
    results = [r for r in kt.parse_results(res.stdout) if r.what == what]
    test.assertEqual(len(results), 1, f"expected one RESULT {what} line:{res.describe()}")
    return results[0]


def describe_all(results):
    return "".join(f"\n=== process {i}:{r.describe()}" for i, r in enumerate(results))


class Secrets(unittest.TestCase):
    def test_job_with_a_secret_runs(self):
        res = kt.run([kt.kumirun(), "-np", "3", "--", kt.program("kumi-bench"), *BENCH_QUICK], timeout=120,
                     env=kt.clean_env(KUMI_SECRET="correct horse battery staple", KUMI_TRANSPORT="tcp",
                                      KUMI_TIMEOUT=60))
        bench_ok(self, res)

    def test_job_with_a_secret_file_runs_by_hand(self):
        # Without kumirun, rank 0 serves the store; everyone reads the secret from a file as a
        # mounted Kubernetes Secret gives it (trailing newline included).
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write("from-a-mounted-secret\n")
        try:
            store = f"127.0.0.1:{kt.free_port()}"
            procs = kt.run_many([[kt.program("kumi-bench"), *BENCH_QUICK]] * 3,
                                [kt.clean_env(KUMI_STORE=store, KUMI_RANK=r, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=60,
                                              KUMI_SECRET_FILE=f.name) for r in range(3)], timeout=120)
        finally:
            os.unlink(f.name)
        for r, res in enumerate(procs):
            self.assertEqual(res.returncode, 0, f"rank {r}:{describe_all(procs)}")
        self.assertIn("# Out of bounds values : 0 OK", procs[0].stdout, describe_all(procs))

    def test_kumirun_makes_a_secret_per_job_or_passes_the_users_on(self):
        show = ["sh", "-c", 'echo "SECRET len=${#KUMI_SECRET} file=${KUMI_SECRET_FILE:-none} value=$KUMI_SECRET"']

        def secrets(env):
            res = kt.run([kt.kumirun(), "-np", "2", "--", *show], env=kt.clean_env(env), timeout=30)
            self.assertEqual(res.returncode, 0, res.describe())
            found = re.findall(r"^\[\d\] SECRET len=(\d+) file=(\S+) value=(\S*)$", res.stdout, re.M)
            self.assertEqual(len(found), 2, res.describe())
            return found

        made = secrets({})
        self.assertEqual(made[0], made[1], "the ranks of one job must share its secret")
        self.assertGreaterEqual(int(made[0][0]), 32, f"kumirun's secret is too short: {made}")
        self.assertNotEqual(made[0][2], secrets({})[0][2], "two jobs got the same secret")
        given = secrets({"KUMI_SECRET": "users-own"})
        self.assertEqual({g[2] for g in given}, {"users-own"})
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write("in-a-file\n")
        try:
            by_file = secrets({"KUMI_SECRET_FILE": f.name})
        finally:
            os.unlink(f.name)
        self.assertEqual({(g[0], g[1]) for g in by_file}, {("0", f.name)},
                         "a secret file is passed on as the file, not copied into the environment")

    def test_kumirun_refuses_two_secrets(self):
        with tempfile.NamedTemporaryFile("w") as f:
            f.write("x\n")
            f.flush()
            res = kt.run([kt.kumirun(), "-np", "2", "--", "true"],
                         env=kt.clean_env(KUMI_SECRET="a", KUMI_SECRET_FILE=f.name), timeout=30)
        self.assertEqual(res.returncode, 2, res.describe())
        self.assertIn("both set", res.stderr, res.describe())

    def test_a_rank_with_the_wrong_secret_fails_init_and_nobody_hangs(self):
        for bad, needle in (({"KUMI_SECRET": "wrong"}, "refused authentication"),
                            ({}, "requires authentication")):
            with self.subTest(bad=bad):
                store = f"127.0.0.1:{kt.free_port()}"
                envs = [dict(KUMI_STORE=store, KUMI_RANK=r, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=5, KUMI_SECRET="right")
                        for r in range(3)]
                envs[2].pop("KUMI_SECRET")
                envs[2].update(bad)
                procs = kt.run_many([[kt.program("error_scenarios"), "init-only"]] * 3,
                                    [kt.clean_env(e) for e in envs], timeout=40)
                info = describe_all(procs)
                for r, res in enumerate(procs):
                    self.assertFalse(res.timed_out, f"rank {r} hung:{info}")
                    self.assertNotEqual(res.returncode, 0, f"rank {r} initialised:{info}")
                    self.assertLess(res.elapsed, 15.0, f"rank {r} took too long:{info}")
                # The rank with the wrong secret knows why, at once, and names the store.
                wrong = single_result(self, procs[2])
                self.assertIn(needle, wrong.message, info)
                self.assertIn(store, wrong.message, info)
                self.assertNotIn("right", wrong.message, "the secret leaked into a message")
                self.assertLess(procs[2].elapsed, 4.0, f"the refused rank must fail at once:{info}")
                # The others cannot tell it from a stranger: they report it missing at the deadline.
                for r in (0, 1):
                    self.assertRegex(single_result(self, procs[r]).message, r"never arrived.*\b2\b", info)

    def test_kumi_store_with_a_secret(self):
        port = kt.free_port()
        store = f"127.0.0.1:{port}"
        server = kt.start([kt.program("kumi-store"), "--listen", store], env=kt.clean_env(KUMI_SECRET="s3"))
        try:
            self.assertTrue(kt.wait_for(lambda: self._listening(port), 10), "kumi-store did not start")
            # A client with the wrong secret is refused, clearly and at once.
            res = kt.run([kt.program("error_scenarios"), "init-only"], timeout=30,
                         env=kt.clean_env(KUMI_STORE=store, KUMI_STORE_SERVE=0, KUMI_RANK=1, KUMI_WORLD_SIZE=2,
                                          KUMI_TIMEOUT=20, KUMI_SECRET="s4"))
            result = single_result(self, res)
            self.assertEqual(result.code, 5, f"want kumiRemoteError:{res.describe()}")
            self.assertIn(f"store at {store} refused authentication", result.message, res.describe())
            self.assertLess(res.elapsed, 4.0, res.describe())
            # One without a secret is told that one is needed.
            res = kt.run([kt.program("error_scenarios"), "init-only"], timeout=30,
                         env=kt.clean_env(KUMI_STORE=store, KUMI_STORE_SERVE=0, KUMI_RANK=1, KUMI_WORLD_SIZE=2,
                                          KUMI_TIMEOUT=20))
            self.assertIn("requires authentication", single_result(self, res).message, res.describe())
            # A job with the right secret forms through it.
            procs = kt.run_many([[kt.program("kumi-bench"), *BENCH_QUICK]] * 2,
                                [kt.clean_env(KUMI_STORE=store, KUMI_STORE_SERVE=0, KUMI_RANK=r, KUMI_WORLD_SIZE=2,
                                              KUMI_TIMEOUT=60, KUMI_SECRET="s3") for r in range(2)], timeout=120)
            for r, p in enumerate(procs):
                self.assertEqual(p.returncode, 0, f"rank {r}:{describe_all(procs)}")
        finally:
            server.terminate()
            out = kt.finish(server, 10)
        self.assertIn("refused", out.stderr, f"kumi-store did not log the refusal:{out.describe()}")

    def test_kumi_store_with_an_empty_secret_file_names_it(self):
        with tempfile.NamedTemporaryFile("w") as f:
            res = kt.run([kt.program("kumi-store"), "--listen", f"127.0.0.1:{kt.free_port()}"], timeout=20,
                         env=kt.clean_env(KUMI_SECRET_FILE=f.name))
        self.assertEqual(res.returncode, 1, res.describe())
        self.assertIn(f.name, res.stderr, res.describe())
        self.assertIn("empty", res.stderr, res.describe())

    @staticmethod
    def _listening(port):
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------------------------------------
# A stranger on the ports of a running job.

def children_of(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def listening_ports(pid):
    return [port for _, port in listening_sockets(pid)]


def listening_sockets(pid):
    """(address as /proc/net/tcp writes it, port) of every TCP socket a process listens on: its
    socket inodes matched against /proc/net/tcp{,6}."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]", target)
            if m:
                inodes.add(m.group(1))
    except OSError:
        return []
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                        addr, port = cols[1].rsplit(":", 1)
                        ports.append((addr, int(port, 16)))
        except OSError:
            pass
    return ports


class Flooder:
    """A stranger on 127.0.0.1: holds many silent connections, opens and closes connections,
    sends garbage and half handshakes, on every port given, until stopped."""

    def __init__(self, ports, held_per_port=150):
        self.ports = ports
        self.held_per_port = held_per_port
        self.stop = threading.Event()
        self.counts = {"held": 0, "garbage": 0, "opened_closed": 0, "refused": 0}
        self.threads = [threading.Thread(target=self._hold, daemon=True),
                        threading.Thread(target=self._churn, daemon=True)]
        self.held = []

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        for s in self.held:
            s.close()

    def _connect(self, port):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
            return s
        except OSError:
            self.counts["refused"] += 1
            s.close()
            return None

    def _hold(self):
        # Opened and never a byte sent: half-open handshakes. Keeps opening as old ones are dropped.
        while not self.stop.is_set():
            for port in self.ports:
                for _ in range(self.held_per_port // 5):
                    s = self._connect(port)
                    if s:
                        self.held.append(s)
                        self.counts["held"] += 1
            if len(self.held) > 4 * self.held_per_port * len(self.ports):
                for s in self.held[:self.held_per_port]:
                    s.close()
                del self.held[:self.held_per_port]
            self.stop.wait(0.2)

    def _churn(self):
        rng = random.Random(7)
        while not self.stop.is_set():
            port = rng.choice(self.ports)
            s = self._connect(port)
            if not s:
                continue
            try:
                kind = rng.randrange(4)
                if kind == 0:
                    s.sendall(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))))
                    self.counts["garbage"] += 1
                elif kind == 1:
                    # Looks like the start of a kumi handshake, then stops.
                    s.sendall(b"KUMI" + bytes(rng.randrange(256) for _ in range(20)))
                    self.counts["garbage"] += 1
                elif kind == 2:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    self.counts["garbage"] += 1
                else:
                    self.counts["opened_closed"] += 1
            except OSError:
                pass
            finally:
                s.close()


class Strangers(unittest.TestCase):
    # The multi-process collective tests (every collective, type and op, split, send/recv), each
    # result checked element by element, repeated so that the flood overlaps tens of seconds.
    REPEATS = 8

    def job_command(self):
        return [kt.program("test_mp_collectives"), f"--gtest_repeat={self.REPEATS}"]

    def assert_passed(self, res, info):
        self.assertEqual(res.returncode, 0, info)
        self.assertNotIn("[  FAILED  ]", res.stdout, info)
        passed = len(re.findall(r"^(?:\[\d+\] )?\[  PASSED  \]", res.stdout, re.M))
        return passed

    def flood_a_running_job(self, job, rank_pids):
        """Floods the store port and each rank's transport port while job runs; returns the job's
        result and what the flooder did."""
        ports = []
        deadline = time.monotonic() + 30
        # Wait until the job formed: each rank listens for peers (its transport) by then.
        while time.monotonic() < deadline and job.poll() is None:
            pids = rank_pids()
            if pids and all(listening_ports(p) for p in pids):
                ports = sorted({port for p in pids for port in listening_ports(p)})
                # Servers bind to the job's address (loopback here), never to every interface.
                bound = {a for p in pids for a, _ in listening_sockets(p)}
                self.assertEqual(bound, {"0100007F"}, f"ranks listen on {bound}, not only on 127.0.0.1 (0100007F)")
                break
            time.sleep(0.05)
        self.assertTrue(ports, "the job's ranks never listened (or it ended before the flood)")
        t0 = time.monotonic()
        with Flooder(ports + [self.store_port]) as flood:
            started_while_running = job.poll() is None
            res = kt.finish(job, timeout=240)
        print(f"\n  flood for {time.monotonic() - t0:.1f} s on ports {ports} and store {self.store_port}: {flood.counts}",
              file=sys.stderr)
        return res, flood.counts, started_while_running, ports

    def test_flood_during_a_kumirun_job(self):
        job = kt.start([kt.kumirun(), "-np", "3", "--", *self.job_command()],
                       env=kt.clean_env(KUMI_TRANSPORT="tcp", KUMI_TIMEOUT=120))
        kumirun_pid = job.pid
        # kumirun hosts the store; its only listening socket is the store's.
        self.assertTrue(kt.wait_for(lambda: listening_ports(kumirun_pid), 10), "kumirun's store never listened")
        self.store_port = listening_ports(kumirun_pid)[0]
        self.assertEqual({a for a, _ in listening_sockets(kumirun_pid)}, {"0100007F"}, "kumirun's store listens widely")
        res, counts, overlapped, ports = self.flood_a_running_job(job, lambda: children_of(kumirun_pid))
        info = f"{res.describe()}\nflooder: {counts} on ports {ports} + store {self.store_port}"
        self.assertEqual(self.assert_passed(res, info), 3 * self.REPEATS, f"every rank passes every round:{info}")
        self.assertTrue(overlapped, f"the job ended before the flood began:{info}")
        self.assertGreater(counts["held"], 300, info)
        self.assertGreater(counts["garbage"], 50, info)

    def test_flood_during_a_job_without_a_secret(self):
        # No kumirun, no secret: rank 0 hosts the store. Garbage and silence are still dropped.
        self.store_port = kt.free_port()
        store = f"127.0.0.1:{self.store_port}"
        procs = [kt.start(self.job_command(),
                          env=kt.clean_env(KUMI_STORE=store, KUMI_RANK=r, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=120,
                                           KUMI_TRANSPORT="tcp"))
                 for r in range(3)]
        try:
            res, counts, overlapped, ports = self.flood_a_running_job(procs[0], lambda: [p.pid for p in procs])
            others = [kt.finish(p, timeout=120) for p in procs[1:]]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        info = f"{res.describe()}{describe_all(others)}\nflooder: {counts} on ports {ports}"
        for r, o in enumerate([res] + others):
            self.assertEqual(self.assert_passed(o, info), self.REPEATS, f"rank {r} did not pass every round:{info}")
        self.assertTrue(overlapped, f"the job ended before the flood began:{info}")
        self.assertGreater(counts["held"], 300, info)


if __name__ == "__main__":
    unittest.main()
