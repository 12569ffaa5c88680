"""kumiCommInitFromMPI (include/kumi/kumi_mpi.h) under a real mpirun (Open MPI, installed by
scripts/setup-deps.sh): the communicator forms over MPI_COMM_WORLD, its ranks are MPI's, and an
allreduce and a split agree with MPI's own; a failure on rank 0 reaches every rank as a message."""
import re
import shutil
import unittest

from kumi_testlib import clean_env, program, run

# Shared memory between the ranks, loopback for Open MPI's own wiring, as root on a small machine.
MPIRUN_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl", "self,vader",
                "--mca", "oob_tcp_if_include", "lo"]


def mpirun(np, env):
    exe = shutil.which("mpirun")
    if exe is None:
        raise AssertionError("mpirun is not installed: run scripts/setup-deps.sh (openmpi-bin)")
    return run([exe] + MPIRUN_FLAGS + ["-np", str(np), program("kumi-example-mpi")], timeout=90,
               env=clean_env(KUMI_TIMEOUT=30, OMPI_MCA_rmaps_base_oversubscribe=1, **env))


class InitFromMpi(unittest.TestCase):
    def test_four_ranks_agree_with_mpi(self):
        res = mpirun(4, {"KUMI_SOCKET_IFNAME": "lo"})
        self.assertEqual(res.returncode, 0, res.describe())
        ranks = sorted(int(m.group(1)) for m in re.finditer(r"kumi-example-mpi: rank (\d+) of 4 ok", res.stdout))
        self.assertEqual(ranks, [0, 1, 2, 3], res.describe())

    def test_one_rank(self):
        res = mpirun(1, {"KUMI_SOCKET_IFNAME": "lo"})
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertIn("rank 0 of 1 ok", res.stdout, res.describe())

    def test_rank0_failure_reaches_every_rank(self):
        # Rank 0 cannot start the store (no such interface): every rank fails at once with its
        # reason, none waits for a store that will never be there.
        res = mpirun(3, {"KUMI_SOCKET_IFNAME": "=nosuchif0"})
        self.assertNotEqual(res.returncode, 0, res.describe())
        self.assertFalse(res.timed_out, res.describe())
        lines = [l for l in res.stderr.splitlines() if "kumiCommInitFromMPI failed" in l]
        self.assertEqual(len(lines), 3, res.describe())
        for line in lines:
            self.assertIn("nosuchif0", line, res.describe())
        others = [l for l in lines if not l.startswith("kumi-example-mpi: rank 0:")]
        self.assertEqual(len(others), 2, res.describe())
        for line in others:
            self.assertIn("the unique id was made by a process that failed", line, res.describe())
        self.assertLess(res.elapsed, 25, "the ranks must not wait for their deadline\n" + res.describe())


if __name__ == "__main__":
    unittest.main()
