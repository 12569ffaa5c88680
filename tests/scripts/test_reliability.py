"""Reliability promises across processes, driven through tests/mp/reliability_scenarios: calls that
disagree are named on every rank with both sides, corrupted links are caught by KUMI_CHECKSUM and
named, and the flight recorder is written on request, on a signal and on failure."""
import glob
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

import kumi_testlib as kt


def setUpModule():
    kt.kumirun()
    kt.program("reliability_scenarios")


def under_kumirun(np_, *args, timeout=60, **env):
    return kt.run([kt.kumirun(), "-np", str(np_), "--", kt.program("reliability_scenarios"), *map(str, args)],
                  timeout=timeout, env=kt.clean_env(env))


def read(path):
    with open(path) as f:
        return f.read()


def results_by_rank(res, what):
    return {r.rank: r for r in kt.parse_results(res.stdout) if r.what == what}


class Mismatch(unittest.TestCase):
    """Rank 0 changes one argument of a call; every rank fails, and the message names both calls."""

    # argument -> (rank 0's call, the others' call), as the error describes them
    CASES = {
        "count": ("allreduce count=1024 float32 sum", "allreduce count=2048 float32 sum"),
        "type": ("allreduce count=1024 int32 sum", "allreduce count=1024 float32 sum"),
        "op": ("allreduce count=1024 float32 max", "allreduce count=1024 float32 sum"),
        "root": ("broadcast count=1024 float32 root=1", "broadcast count=1024 float32 root=0"),
        "kind": ("allgather count=256 float32", "allreduce count=1024 float32 sum"),
    }

    def check(self, what, np_=3, transport="", seconds=10.0):
        env = {"KUMI_TIMEOUT": 30}
        if transport:
            env["KUMI_TRANSPORT"] = transport
        res = under_kumirun(np_, "mismatch", what, **env)
        warm = results_by_rank(res, "warm-up")
        self.assertEqual(sorted(warm), list(range(np_)), res.describe())
        self.assertTrue(all(r.code == 0 for r in warm.values()), res.describe())
        failures = results_by_rank(res, "mismatch")
        self.assertEqual(sorted(failures), list(range(np_)), f"not every rank reported:{res.describe()}")
        odd, usual = self.CASES[what]
        for r, f in failures.items():
            self.assertEqual(f.code, 5, f"rank {r}: want kumiRemoteError:{res.describe()}")
            self.assertIn("called different operations", f.message, res.describe())
            self.assertIn(odd, f.message, f"rank {r} does not name rank 0's call:{res.describe()}")
            self.assertIn(usual, f.message, f"rank {r} does not name the others' call:{res.describe()}")
            self.assertRegex(f.message, r"\brank 0 on ", res.describe())
            self.assertIn(", #2", f.message, f"rank {r}: the call number is missing:{res.describe()}")
        self.assertLess(res.elapsed, seconds, res.describe())
        self.assertEqual(res.returncode, 0, res.describe())

    def test_count(self):
        self.check("count")

    def test_count_over_tcp(self):
        self.check("count", transport="tcp")

    def test_type(self):
        self.check("type")

    def test_op(self):
        self.check("op", np_=4, transport="tcp")

    def test_kind(self):
        self.check("kind")

    def test_root_where_every_rank_waits_to_receive(self):
        # No message flows (each rank waits for its root's data): found by comparing the stamps
        # that waiting ranks publish after a second, long before KUMI_TIMEOUT=30.
        self.check("root", seconds=12.0)

    def test_send_recv_counts(self):
        res = under_kumirun(3, "mismatch", "p2p", KUMI_TIMEOUT=30)
        failures = results_by_rank(res, "mismatch")
        self.assertEqual(sorted(failures), [0, 1, 2], res.describe())
        for r, f in failures.items():
            self.assertNotEqual(f.code, 0, res.describe())
        # Rank 1 saw the message and names both ends; the others learn its story.
        self.assertIn("send/recv count=100 float32 from rank 0", failures[1].message, res.describe())
        self.assertIn("send/recv count=200 float32 from rank 0", failures[1].message, res.describe())
        self.assertLess(res.elapsed, 10.0, res.describe())


class Checksums(unittest.TestCase):
    def run_corrupt(self, transport, checksum, np_=3):
        env = {"KUMI_TIMEOUT": 30, "KUMI_TEST_CORRUPT_EVERY": 7, "KUMI_CHECKSUM": checksum}
        if transport:
            env["KUMI_TRANSPORT"] = transport
        return under_kumirun(np_, "corrupt", **env)

    def check_caught(self, transport, link_word):
        res = self.run_corrupt(transport, 1)
        failures = results_by_rank(res, "corrupt")
        self.assertEqual(sorted(failures), [0, 1, 2], f"not every rank failed:{res.describe()}")
        self.assertNotIn("WRONG", res.stdout, f"corrupted data was delivered:{res.describe()}")
        self.assertNotIn("ALL RIGHT", res.stdout, res.describe())
        pattern = r"data from rank \d+ .*arrived corrupted over " + link_word + r" .*CRC32C sent [0-9a-f]{8}, received [0-9a-f]{8}"
        for r, f in failures.items():
            self.assertEqual(f.code, 5, res.describe())
            self.assertRegex(f.message, pattern, f"rank {r} does not name the corrupted link:{res.describe()}")
            self.assertRegex(f.message, r"rank \d+ on ", res.describe())

    def test_tcp_bit_flips_are_caught(self):
        self.check_caught("tcp", "tcp")

    def test_shared_memory_bit_flips_are_caught(self):
        self.check_caught("", "shared memory")

    def test_without_checksums_the_flips_go_unseen(self):
        # The injection is real: without KUMI_CHECKSUM the same flips corrupt results silently.
        res = self.run_corrupt("tcp", 0)
        self.assertIn("WRONG data", res.stdout, res.describe())
        self.assertEqual(results_by_rank(res, "corrupt"), {}, res.describe())

    def test_clean_links_pass_with_checksums(self):
        for transport in ("", "tcp"):
            env = {"KUMI_TIMEOUT": 30, "KUMI_CHECKSUM": 1}
            if transport:
                env["KUMI_TRANSPORT"] = transport
            res = under_kumirun(3, "corrupt", **env)
            self.assertEqual(res.stdout.count("ALL RIGHT"), 3, res.describe())
            self.assertEqual(res.returncode, 0, res.describe())


class Recovery(unittest.TestCase):
    def test_abort_then_a_new_communicator(self):
        for transport in ("", "tcp"):
            env = {"KUMI_TIMEOUT": 30}
            if transport:
                env["KUMI_TRANSPORT"] = transport
            res = under_kumirun(3, "recover", **env)
            self.assertEqual(res.returncode, 0, res.describe())
            during = results_by_rank(res, "during")
            self.assertEqual(sorted(during), [0, 2], res.describe())
            for r, f in during.items():
                self.assertEqual(f.code, 5, res.describe())
                self.assertRegex(f.message, r"rank 1 on \S+ aborted the communicator", f"rank {r} does not name rank 1:{res.describe()}")
            self.assertEqual(results_by_rank(res, "abort")[1].code, 0, res.describe())
            after = results_by_rank(res, "after")
            self.assertEqual(sorted(after), [0, 1, 2], res.describe())
            self.assertTrue(all(f.code == 0 for f in after.values()), res.describe())
            self.assertNotIn("WRONG", res.stdout, res.describe())
            self.assertLess(res.elapsed, 15, res.describe())


class FlightRecorder(unittest.TestCase):
    def test_dumps_on_request_signal_and_failure(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "requested")
            env = kt.clean_env({"KUMI_TIMEOUT": 4, "KUMI_FLIGHT_RECORDER_DIR": tmp,
                                "KUMI_FLIGHT_RECORDER_SIGNAL": "USR2"})
            # Output to a file: the test reads it while the job runs, and loses nothing after.
            out_path = os.path.join(tmp, "stdout")
            with open(out_path, "w") as out:
                proc = subprocess.Popen([kt.kumirun(), "-np", "3", "--", kt.program("reliability_scenarios"), "flight",
                                         path], env=env, stdout=out, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
            t0 = time.monotonic()
            # Signal rank 0 while it waits in the allreduce rank 1 never joins.
            waiting = lambda: re.search(r"^\[0\] WAITING pid (\d+)", read(out_path), re.M)  # noqa: E731
            self.assertTrue(kt.wait_for(waiting, 30), read(out_path))
            pid = int(waiting().group(1))
            time.sleep(1.0)
            os.kill(pid, signal.SIGUSR2)
            signalled = os.path.join(tmp, "*-r0-p%d.txt" % pid)
            self.assertTrue(kt.wait_for(lambda: any("because: signal" in read(f) for f in glob.glob(signalled)), 5),
                            f"no dump after SIGUSR2: {os.listdir(tmp)}")
            with open(glob.glob(signalled)[0]) as f:
                dump = f.read()
            self.assertRegex(dump, r"RUNNING \S+ \d+\+ \S+ 256 \S+ \| allreduce count=64 float32 sum, #7", dump)
            res = kt.finish(proc, 60, started=t0)
            res.stdout = read(out_path)
            # On request: every rank's file lists its calls, oldest first, all done.
            for r in range(3):
                with open(f"{path}.{r}") as f:
                    text = f.read()
                self.assertIn(f"rank {r} of 3", text)
                self.assertIn("because: requested", text)
                calls = [l for l in text.splitlines() if not l.startswith("#")]
                self.assertEqual(len(calls), 6, text)
                self.assertTrue(all(" done " in l for l in calls), text)
                self.assertIn("| allreduce count=10 float32 sum, #1", calls[0], text)
                self.assertIn("| broadcast count=7 float32 root=0, #6", calls[5], text)
            requested = results_by_rank(res, "dump")
            self.assertTrue(all(r.code == 0 for r in requested.values()) and len(requested) == 3, res.describe())
            for r in results_by_rank(res, "dump-null-comm").values():
                self.assertEqual(r.code, 2, res.describe())
            for r in results_by_rank(res, "dump-bad-path").values():
                self.assertEqual(r.code, 3, res.describe())
                self.assertIn("/nonexistent-dir/x/y", r.message, res.describe())
            # On failure: the ranks that timed out wrote their recorder with the failed call.
            stalled = results_by_rank(res, "stalled")
            self.assertEqual(sorted(stalled), [0, 2], res.describe())
            for r in (0, 2):
                files = [f for f in glob.glob(os.path.join(tmp, f"*-r{r}-p*.txt"))
                         if "FAILED" in read(f)]
                self.assertTrue(files, f"rank {r} wrote no flight recorder on failure:{res.describe()} {os.listdir(tmp)}")
            self.assertIn("flight recorder written to", res.stderr + res.stdout, res.describe())


if __name__ == "__main__":
    unittest.main()
