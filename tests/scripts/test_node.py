"""One node, many ranks, end to end: shared memory leaves nothing in /dev/shm (after a clean run
and after a rank is killed), host ids that lie fall back to TCP with right results, a /dev/shm
that is too small is a clear error on every rank, KUMI_BIND pins ranks, and kumirun --nodes
makes the planner go hierarchical."""
import contextlib
import os
import re
import subprocess
import tempfile
import unittest
import uuid

import kumi_testlib as kt


def bench():
    return kt.program("kumi-bench")


def job_id():
    return f"nodetest{uuid.uuid4().hex[:10]}"


def leftovers(shm_dir, job):
    """Segments of this job still in the directory."""
    return [n for n in os.listdir(shm_dir) if n.startswith(f"kumi-{job}-")]


@contextlib.contextmanager
def small_tmpfs(test, size="256k"):
    """A freshly mounted tmpfs of `size` (a container's small /dev/shm), unmounted afterwards; skips
    the test, saying why, where it cannot be mounted (not root)."""
    if os.geteuid() != 0:
        test.skipTest("needs root to mount a small tmpfs")
    with tempfile.TemporaryDirectory(prefix="kumi-small-") as path:
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                               capture_output=True, text=True)
        if mount.returncode != 0:
            test.skipTest(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", path], capture_output=True)


def under_kumirun(np_, args, env, timeout=120, kumirun_args=()):
    return kt.run([kt.kumirun(), "-np", str(np_), *kumirun_args, "--", *args], timeout=timeout, env=kt.clean_env(env))


class SharedMemoryEndToEnd(unittest.TestCase):
    def setUp(self):
        kt.require_option("KUMI_BUILD_BENCHMARKS")

    def test_clean_run_uses_shared_memory_and_leaves_nothing(self):
        job = job_id()
        res = under_kumirun(3, [bench(), "allreduce", "-b", "8", "-e", "4M", "-f", "8", "-n", "3", "-w", "1"],
                            {"KUMI_JOB_ID": job, "KUMI_DEBUG": "INFO", "KUMI_TIMEOUT": "60"})
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertIn("Out of bounds values : 0 OK", res.stdout, res.describe())
        for r in range(3):
            self.assertRegex(res.output, rf"rank {r}: shared memory with 2 of 2 local peers", res.describe())
        self.assertEqual(leftovers("/dev/shm", job), [], "segments left in /dev/shm")

    def test_killed_rank_is_named_and_leaves_nothing(self):
        job = job_id()
        res = under_kumirun(3, [kt.program("error_scenarios"), "peer-dies", "1"],
                            {"KUMI_JOB_ID": job, "KUMI_TIMEOUT": "30"}, timeout=60)
        self.assertEqual(res.returncode, 9, res.describe())
        self.assertLess(res.elapsed, 10.0, res.describe())
        self.assertEqual(leftovers("/dev/shm", job), [], "a killed rank left segments behind")

    def test_host_ids_that_lie_fall_back_to_tcp_with_right_results(self):
        # Every rank claims the same host, but each sees its own segment directory, as ranks on
        # different machines would: shared memory must be refused pair by pair, not trusted.
        with tempfile.TemporaryDirectory(prefix="kumi-liar-", dir="/dev/shm") as base:
            script = (f'd={base}/r$KUMI_RANK; mkdir -p $d; KUMI_SHM_DIR=$d exec "$@"')
            res = under_kumirun(2, ["sh", "-c", script, "sh", bench(), "allreduce", "-b", "1K", "-e", "1M", "-f", "32",
                                    "-n", "2", "-w", "1"],
                                {"KUMI_HOSTID": "same-host-for-all", "KUMI_DEBUG": "INFO", "KUMI_TIMEOUT": "60"})
            self.assertEqual(res.returncode, 0, res.describe())
            self.assertIn("Out of bounds values : 0 OK", res.stdout, res.describe())
            self.assertIn("no shared memory with rank", res.output, res.describe())
            self.assertIn("Is KUMI_HOSTID right?", res.output, res.describe())
            self.assertRegex(res.output, r"shared memory with 0 of 1 local peers", res.describe())

    def test_shm_dir_too_small_is_a_clear_error_on_every_rank(self):
        with small_tmpfs(self) as small:
            res = under_kumirun(4, [bench(), "allreduce", "-b", "8", "-e", "8", "-n", "1"],
                                {"KUMI_SHM_DIR": small, "KUMI_TIMEOUT": "30"}, timeout=60)
            self.assertNotEqual(res.returncode, 0, res.describe())
            self.assertLess(res.elapsed, 20.0, res.describe())
            for r in range(4):
                line = next((l for l in res.output.splitlines() if l.startswith(f"[{r}] kumi-bench:")), "")
                self.assertIn("too small", line, f"rank {r}:{res.describe()}")
                self.assertIn("KUMI_TRANSPORT=tcp", line, res.describe())
            self.assertEqual(os.listdir(small), [], "segments left in the small directory")

    def test_one_host_without_room_fails_the_whole_job_with_its_story(self):
        # Host B (ranks 2, 3) has too small a /dev/shm; host A's ranks must not start as if all
        # were well: every rank fails, and A's ranks say why (B's message).
        with small_tmpfs(self) as small:
            script = f'if [ "$KUMI_RANK" -ge 2 ]; then export KUMI_SHM_DIR={small}; fi; exec "$@"'
            res = under_kumirun(4, ["sh", "-c", script, "sh", bench(), "allreduce", "-b", "8", "-e", "8", "-n", "1"],
                                {"KUMI_TIMEOUT": "30"}, timeout=60, kumirun_args=("--nodes", "2"))
            self.assertNotEqual(res.returncode, 0, res.describe())
            self.assertLess(res.elapsed, 20.0, res.describe())
            for r in range(4):
                line = next((l for l in res.output.splitlines() if l.startswith(f"[{r}] kumi-bench:")), "")
                self.assertIn("too small", line, f"rank {r}:{res.describe()}")


class NodeAwareness(unittest.TestCase):
    def setUp(self):
        kt.require_option("KUMI_BUILD_BENCHMARKS")

    def test_bind_numa_pins_each_rank_to_its_own_cores(self):
        if not os.path.exists(os.path.join(kt.build_dir(), "kumi-topo")):
            self.skipTest("built without hwloc (no kumi-topo): KUMI_BIND cannot bind")
        res = under_kumirun(2, [bench(), "allreduce", "-b", "8", "-e", "8", "-n", "1"],
                            {"KUMI_BIND": "numa", "KUMI_DEBUG": "INFO", "KUMI_TIMEOUT": "30"})
        self.assertEqual(res.returncode, 0, res.describe())
        cpus = {}
        for r in range(2):
            m = re.search(rf"rank {r}: KUMI_BIND=numa: bound local rank {r}/2: .* -> cpus (\S+)", res.output)
            self.assertIsNotNone(m, f"rank {r} did not report its binding:{res.describe()}")
            cpus[r] = m.group(1)
        if os.cpu_count() and os.cpu_count() >= 2:
            self.assertNotEqual(cpus[0], cpus[1], f"two ranks got the same cores: {cpus}")

    def test_bad_bind_value_is_named(self):
        res = under_kumirun(2, [bench(), "allreduce", "-b", "8", "-e", "8", "-n", "1"],
                            {"KUMI_BIND": "sockets", "KUMI_TIMEOUT": "30"})
        self.assertNotEqual(res.returncode, 0, res.describe())
        self.assertIn("KUMI_BIND='sockets'", res.output, res.describe())

    def test_simulated_nodes_use_hierarchical_allreduce(self):
        res = under_kumirun(4, [bench(), "allreduce", "-b", "4M", "-e", "4M", "-n", "2", "-w", "1"],
                            {"KUMI_DEBUG": "INFO", "KUMI_TIMEOUT": "60"}, kumirun_args=("--nodes", "2"))
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertIn("Out of bounds values : 0 OK", res.stdout, res.describe())
        self.assertRegex(res.output, r"ready on 2 hosts", res.describe())
        self.assertRegex(res.output, r"allreduce count 1048576 on 4 ranks: hierarchical", res.describe())


if __name__ == "__main__":
    unittest.main()
