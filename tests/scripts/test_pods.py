"""Gang-job start-up as Kubernetes would do it (issue: launch anywhere), on simulated pods
(tests/cluster/pods.py over the virtual cluster): each pod in its own network namespace, with its
own hostname and IPC namespace and the variables its launcher would set, its DNS name present only
a while after it starts, pods started in random order with random delays up to 10 s, and one pod
recreated mid-join with a new address. The job must form, run collectives and get the right
answer, with nothing but kumiCommInitFromEnv in the program (kumi-example-c).

Also that a rank's requests to the store during init do not grow with the job's size, and the
refusals of start-up, each a clear error within the deadline: a duplicate rank, a
process of an earlier restart generation, the ranks of an older generation when a newer one
arrives, a coordinator name that never resolves, contradictory launcher variables."""
import os
import random
import re
import sys
import time
import unittest

from kumi_testlib import clean_env, free_port, program, run, run_many, start, finish

SOURCE = os.environ.get("KUMI_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "cluster"))
import vcluster  # noqa: E402
import pods  # noqa: E402

OK_LINE = re.compile(r"kumi-example-c: (\d+) ranks, allreduce and broadcast OK")


def pod_env(**extra):
    # No KUMI_RANK, KUMI_WORLD_SIZE (but for the Indexed Job, whose API hides it), KUMI_STORE:
    # kumi finds them in what the launcher set.
    return clean_env({"KUMI_TIMEOUT": 60, **extra})


class SimulatedPods(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ok, why = vcluster.can_create_namespaces()
        if not ok:
            raise AssertionError(f"simulated pods need network namespaces: {why} (run as root)")

    def run_job(self, make_launcher, pods_count, seed, incarnation_after_restart):
        rng = random.Random(seed)
        with vcluster.VirtualCluster(nodes=pods_count, rate=None, name=f"p{os.getpid() % 10000}-{seed % 1000}") as vc:
            launcher = make_launcher(vc)
            job = pods.PodJob(vc, launcher, [program("kumi-example-c")])
            delays = [rng.uniform(0, 10) for _ in range(pods_count)]
            dns = [rng.uniform(0.5, 3) for _ in range(pods_count)]
            # The pod to recreate: not the coordinator (its store is the job's), one that starts
            # early enough to have claimed its rank, and with at least one pod still to come.
            victim = min(range(1, pods_count), key=lambda i: delays[i])
            restart_at = max(delays[victim], delays[0] + dns[0]) + 3.0
            # Some other worker starts only after the restart, so that the job is still forming.
            latest = max((i for i in range(1, pods_count) if i != victim), key=lambda i: delays[i])
            delays[latest] = max(delays[latest], restart_at + 1.5)
            for i in range(pods_count):
                job.start(i, delays[i], dns[i])
            time.sleep(max(0.0, restart_at - job.now()))
            self.assertTrue(job.started(victim))
            new_address = vc.address(victim).rsplit(".", 1)[0] + f".{100 + victim}"
            job.restart(victim, new_address, dns_delay=rng.uniform(0.5, 2), incarnation=incarnation_after_restart)
            results = job.wait(timeout=90)
            last_start = max(delays)
        described = "\n".join(f"--- pod {r.pod} attempt {r.attempt} incarnation {r.incarnation}: rc {r.returncode}, started "
                              f"{r.started:.1f} s, ended {r.ended:.1f} s\n{r.output[-3000:]}" for r in results)
        described = f"seed {seed}, delays {[round(d, 1) for d in delays]}, victim {victim} restarted at " \
                    f"{restart_at:.1f} s\n{described}"
        final = {r.pod: r for r in results if r.pod != victim or r.attempt == 1}
        self.assertEqual(sorted(final), list(range(pods_count)), described)
        for r in final.values():
            self.assertEqual(r.returncode, 0, described)
        self.assertEqual([int(m.group(1)) for m in OK_LINE.finditer(final[0].output)], [pods_count], described)
        killed = [r for r in results if r.pod == victim and r.attempt == 0]
        self.assertEqual(len(killed), 1, described)
        self.assertEqual(final[victim].incarnation, incarnation_after_restart, described)
        self.assertIn("replacing pid", final[victim].output, "the recreated pod took its earlier claim\n" + described)
        formed = max(r.ended for r in final.values()) - last_start
        print(f"\n  seed {seed}: {pods_count} pods, last started at {last_start:.1f} s, pod {victim} recreated at "
              f"{restart_at:.1f} s; the job ran {formed:.2f} s after the last pod started", file=sys.stderr)
        return formed

    def test_indexed_job_with_a_recreated_pod(self):
        seed = int(os.environ.get("KUMI_PODS_SEED", random.randrange(1 << 30)))

        def launcher(vc):
            return pods.indexed_job("kumi-job", 4, pod_env(KUMI_WORLD_SIZE=4))
        self.run_job(launcher, 4, seed, incarnation_after_restart=1)

    def test_pytorchjob_with_a_recreated_pod(self):
        seed = int(os.environ.get("KUMI_PODS_SEED", random.randrange(1 << 30))) + 1
        # The recreated pod has no failure count: it is known by its name on a new host id.
        self.run_job(lambda vc: pods.pytorch_job("pt", 4, pod_env()), 4, seed, incarnation_after_restart=0)

    def test_a_pod_that_never_comes_is_named(self):
        # Pods 0-2 of 4 start; pod 3 never does (unschedulable, say): at the deadline every rank
        # names the rank and the pod it waited for.
        with vcluster.VirtualCluster(nodes=4, rate=None, name=f"p{os.getpid() % 10000}-miss") as vc:
            job = pods.PodJob(vc, pods.indexed_job("kumi-job", 4, pod_env(KUMI_WORLD_SIZE=4, KUMI_TIMEOUT=6)),
                              [program("kumi-example-c")])
            for i in range(3):
                job.start(i, 0.3 * i, 0.2)
            results = job.wait(timeout=60)
        out = "\n".join(f"--- pod {r.pod}: rc {r.returncode}, {r.ended - r.started:.1f} s\n{r.output}" for r in results)
        self.assertEqual(sorted(r.pod for r in results), [0, 1, 2], out)
        for r in results:
            self.assertNotEqual(r.returncode, 0, out)
            self.assertIn("1 of 4 ranks never arrived", r.output, out)
            self.assertIn("ranks 3 (kumi-job-3)", r.output, out)
            self.assertLess(r.ended - r.started, 20, out)

    def test_a_coordinator_that_never_resolves(self):
        # In a node namespace there is no DNS server to ask: the name stays unknown, and the
        # rank gives up at its deadline, naming the name.
        with vcluster.VirtualCluster(nodes=1, rate=None, name=f"p{os.getpid() % 10000}-nx") as vc:
            t0 = time.monotonic()
            res = vc.run_wait(0, [program("kumi-example-c")], timeout=30,
                              env=clean_env(KUMI_TIMEOUT=4, KUMI_RANK=1, KUMI_WORLD_SIZE=2,
                                            KUMI_STORE="kumi-job-0.kumi-job.default.svc.cluster.local:29501"))
            elapsed = time.monotonic() - t0
        out = res.stdout + res.stderr
        self.assertNotEqual(res.returncode, 0, out)
        self.assertIn("kumi-job-0.kumi-job.default.svc.cluster.local:29501: name never resolved before the deadline", out)
        self.assertLess(elapsed, 15, out)


class BootstrapTraffic(unittest.TestCase):
    """Each rank's requests to the store during init stay the same however many ranks join:
    addresses are exchanged between the ranks, not read one by one from the store."""
    COUNT = re.compile(r"store requests so far: (\d+) \(\+(\d+) polls")

    def requests(self, np):
        res = run([program("kumirun"), "-np", str(np), "--", program("kumi-example-c")], timeout=120,
                  env=clean_env(KUMI_TRANSPORT="tcp", KUMI_DEBUG="INFO", KUMI_TIMEOUT=60))
        self.assertEqual(res.returncode, 0, res.describe())
        counts = [int(m.group(1)) for m in self.COUNT.finditer(res.output)]
        self.assertEqual(len(counts), np, res.describe())
        return counts

    def test_requests_per_rank_do_not_grow_with_the_job(self):
        small, large = self.requests(2), self.requests(8)
        print(f"\n  store requests per rank during init (polls aside): 2 ranks {sorted(small)}, 8 ranks {sorted(large)}",
              file=sys.stderr)
        # Rank 0 writes the plan, a compare-and-set may take a second try, a rank that arrives while
        # the barrier completes asks once more: a few either way. Reading every rank's place from
        # the store, as init did before, would add 6 here.
        self.assertLessEqual(max(large), max(small) + 3, f"2 ranks: {small}; 8 ranks: {large}")
        self.assertLessEqual(max(large), 16, f"8 ranks: {large}")


class BesideTorch(unittest.TestCase):
    def test_torchrun_variables_and_torchs_own_store_port(self):
        # torchrun's agent runs torch's TCPStore at MASTER_ADDR:MASTER_PORT; something holds that
        # port here. kumi, given only torchrun's variables, serves its store one port above and
        # the job runs.
        import socket
        torch_store = socket.socket()
        torch_store.bind(("127.0.0.1", 0))
        torch_store.listen()
        port = torch_store.getsockname()[1]
        try:
            envs = [clean_env(RANK=r, LOCAL_RANK=r, WORLD_SIZE=2, LOCAL_WORLD_SIZE=2, GROUP_RANK=0, GROUP_WORLD_SIZE=1,
                              MASTER_ADDR="127.0.0.1", MASTER_PORT=port, TORCHELASTIC_RUN_ID="beside",
                              TORCHELASTIC_RESTART_COUNT=0, KUMI_DEBUG="INFO", KUMI_TIMEOUT=30) for r in range(2)]
            res = run_many([[program("kumi-example-c")]] * 2, envs, timeout=60)
        finally:
            torch_store.close()
        out = "\n".join(r.output for r in res)
        for r in res:
            self.assertEqual(r.returncode, 0, out)
        self.assertIn(f"serving the rendezvous store at 127.0.0.1:{port + 1}", out)
        self.assertIn("launch: torchrun", out)
        self.assertIn("2 ranks, allreduce and broadcast OK", out)


class JoinRefusals(unittest.TestCase):
    """On one host, with explicit KUMI_* (the launcher does not matter to these rules)."""

    def ranks(self, assignments, timeout_s=6, store=None, job="refusals", extra=None):
        store = store or f"127.0.0.1:{free_port()}"
        envs = [clean_env(KUMI_RANK=r, KUMI_WORLD_SIZE=n, KUMI_STORE=store, KUMI_JOB_ID=job, KUMI_TIMEOUT=timeout_s,
                          **(extra or {}), **more)
                for r, n, more in assignments]
        return run_many([[program("kumi-example-c")]] * len(envs), envs, timeout=timeout_s + 30)

    def test_duplicate_rank_is_refused_naming_both(self):
        # Ranks 0, 1 and a second 1: the second claimant is told at once; rank 2 never comes.
        res = self.ranks([(0, 3, {}), (1, 3, {}), (1, 3, {})], timeout_s=5)
        out = "\n".join(r.output for r in res)
        refused = [r for r in res if "two processes were given rank 1" in r.output]
        self.assertEqual(len(refused), 1, out)
        self.assertLess(refused[0].elapsed, 3, out)
        self.assertRegex(refused[0].output, r"rank 1 is already held by pid \d+ on \S+ \(incarnation 0\); pid \d+")
        for r in res:
            self.assertNotEqual(r.returncode, 0, out)  # the job cannot form without rank 2
        self.assertTrue(any("ranks never arrived" in r.output and "ranks 2" in r.output for r in res), out)

    def test_generations(self):
        # A store that outlives the ranks (kumi-store), as a standalone Deployment would.
        port = free_port()
        server = start([program("kumi-store"), "--listen", f"127.0.0.1:{port}"], env=clean_env())
        try:
            time.sleep(0.5)
            store = f"127.0.0.1:{port}"
            common = {"KUMI_STORE_SERVE": 0}
            # Generation 0: one rank of two waits; generation 1 arrives: the waiting rank is told.
            old = start([program("kumi-example-c")], env=clean_env(KUMI_RANK=0, KUMI_WORLD_SIZE=2, KUMI_STORE=store,
                                                                   KUMI_JOB_ID="gens", KUMI_TIMEOUT=30,
                                                                   KUMI_GENERATION=0, **common))
            time.sleep(1.5)
            res = self.ranks([(0, 2, {"KUMI_GENERATION": 1}), (1, 2, {"KUMI_GENERATION": 1})], timeout_s=20,
                             store=store, job="gens", extra=common)
            old_res = finish(old, 30)
            out = "\n".join(r.output for r in res) + old_res.output
            for r in res:
                self.assertEqual(r.returncode, 0, out)
            self.assertNotEqual(old_res.returncode, 0, out)
            self.assertIn("job 'gens' restarted as generation 1", old_res.output)
            self.assertLess(old_res.elapsed, 15, "told at once, not at its deadline\n" + out)
            # A straggler of generation 0 now: refused at once.
            late = run([program("kumi-example-c")], timeout=30,
                       env=clean_env(KUMI_RANK=1, KUMI_WORLD_SIZE=2, KUMI_STORE=store, KUMI_JOB_ID="gens",
                                     KUMI_TIMEOUT=20, KUMI_GENERATION=0, **common))
            self.assertNotEqual(late.returncode, 0, late.describe())
            self.assertIn("belongs to restart generation 0 of job 'gens', but the job has restarted as generation 1",
                          late.output)
            self.assertLess(late.elapsed, 5, late.describe())
        finally:
            server.kill()
            server.wait()

    def test_contradictory_launchers(self):
        env = clean_env(RANK=1, WORLD_SIZE=4, LOCAL_RANK=1, TORCHELASTIC_RUN_ID="x", MASTER_ADDR="127.0.0.1",
                        MASTER_PORT=29400, SLURM_PROCID=3, SLURM_NTASKS=4, SLURM_LOCALID=3, SLURM_NODEID=0,
                        SLURM_NNODES=1, KUMI_TIMEOUT=5)
        res = run([program("kumi-example-c")], timeout=30, env=env)
        self.assertNotEqual(res.returncode, 0, res.describe())
        self.assertIn("launchers disagree", res.output)
        self.assertIn("RANK", res.output)
        self.assertIn("SLURM_PROCID", res.output)


if __name__ == "__main__":
    unittest.main()
