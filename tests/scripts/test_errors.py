"""Bad input and failures across processes, driven through tests/mp/error_scenarios: every rank
must fail (none may report success or hang), quickly, with a message that names the problem."""
import re
import socket
import unittest

import kumi_testlib as kt


def setUpModule():
    kt.kumirun()
    kt.program("error_scenarios")


def scenarios():
    return kt.program("error_scenarios")


def under_kumirun(np_, *args, timeout=60, **env):
    return kt.run([kt.kumirun(), "-np", str(np_), "--", scenarios(), *map(str, args)], timeout=timeout,
                  env=kt.clean_env(env))


def ranks_by_hand(envs, *args, timeout=60):
    """Starts one error_scenarios process per environment (no kumirun) and waits for all."""
    return kt.run_many([[scenarios(), *map(str, args)]] * len(envs), [kt.clean_env(e) for e in envs], timeout=timeout)


def describe_all(results):
    return "".join(f"\n=== process {i}:{r.describe()}" for i, r in enumerate(results))


def names_the_failure(message):
    """The message names the dead rank 1, or says that a connection was lost or closed."""
    return bool(re.search(r"\brank 1\b", message)) or "connection" in message or "closed" in message


def results_by_rank(res, what):
    """{rank: Result} for the RESULT lines named `what` in kumirun output."""
    return {r.rank: r for r in kt.parse_results(res.stdout) if r.what == what}


class UnderKumirun(unittest.TestCase):
    def test_local_argument_errors(self):
        res = under_kumirun(3, "local-args", KUMI_TIMEOUT=20)
        self.assertEqual(res.returncode, 0, res.describe())
        for r in range(3):
            self.assertIn(f"[{r}] OK local-args", res.stdout.splitlines(), res.describe())
        self.assertNotIn("MISMATCH", res.stdout, res.describe())
        # Every refused call names the problem; the one that follows succeeds.
        for r, result in results_by_rank(res, "after-errors").items():
            self.assertEqual(result.code, 0, result.line)

    def test_count_mismatch(self):
        res = under_kumirun(3, "count-mismatch", KUMI_TIMEOUT=20)
        failures = results_by_rank(res, "mismatch")
        self.assertEqual(sorted(failures), [0, 1, 2], f"not every rank reported:{res.describe()}")
        for r, result in failures.items():
            self.assertNotEqual(result.code, 0, f"rank {r} reported success for mismatched counts:{res.describe()}")
        elapsed = dict(kt.parse_elapsed(res.stdout))
        self.assertEqual(sorted(elapsed), [0, 1, 2], res.describe())
        for r, s in elapsed.items():
            self.assertLess(s, 10.0, f"rank {r} took {s} s to notice (KUMI_TIMEOUT=20):{res.describe()}")
        for r, f in failures.items():
            self.assertIn("called different operations", f.message, res.describe())
            self.assertIn("allreduce count=1024 float32 sum, #1", f.message, f"rank {r} does not name rank 0's call:{res.describe()}")
            self.assertIn("allreduce count=2048 float32 sum, #1", f.message, f"rank {r} does not name the others' call:{res.describe()}")
        # A failed communicator keeps failing.
        again = results_by_rank(res, "again")
        self.assertEqual(sorted(again), [0, 1, 2], res.describe())
        for r, result in again.items():
            self.assertNotEqual(result.code, 0, f"rank {r}: a failed communicator succeeded again:{res.describe()}")
        self.assertEqual(res.returncode, 0, res.describe())  # the program saw the failures it wanted

    def test_stuck_peer_is_named_at_the_deadline(self):
        # Rank 1 is alive but never joins the allreduce: ranks 0 and 2 fail at KUMI_TIMEOUT=2,
        # not later and not never. The first to time out names rank 1 and closes its connections,
        # so the other may instead report that connection closing, a moment before its own
        # deadline; at least one must name rank 1 among those awaited (a schedule in which a rank
        # hears from several peers, such as the one-host direct exchange, awaits rank 0 too: its
        # data depends on rank 1's).
        res = under_kumirun(3, "stuck-peer", KUMI_TIMEOUT=2, timeout=60)
        failures = results_by_rank(res, "stuck")
        self.assertEqual(sorted(failures), [0, 2], res.describe())
        awaits_rank_1 = r"waiting for data from (rank \d+ on [^,;]+, )*rank 1\b"
        named = [r for r, f in failures.items()
                 if f.code == 4 and "timed out" in f.message and re.search(awaits_rank_1, f.message)]
        self.assertTrue(named, f"no rank timed out naming rank 1:{res.describe()}")
        for r, f in failures.items():
            # A rank that did not time out itself tells the story of the one that did.
            self.assertTrue(f.code == 4 or (f.code == 5 and ("closed" in f.message or "timed out" in f.message)),
                            f"rank {r}: neither a timeout nor a lost connection:{res.describe()}")
        for r, s in kt.parse_elapsed(res.stdout):
            self.assertGreaterEqual(s, 1.9, res.describe())
            self.assertLess(s, 5.0, f"rank {r} took {s} s with KUMI_TIMEOUT=2:{res.describe()}")

    def test_peer_dies(self):
        # kumirun stops the survivors as soon as rank 1 dies, so they may not get to report;
        # what they do report must be right. test_peer_dies_by_hand checks that they report.
        res = under_kumirun(3, "peer-dies", 1, KUMI_TIMEOUT=30)
        self.assertNotEqual(res.returncode, 0, res.describe())
        self.assertEqual(res.returncode, 9, f"kumirun should return the exit status of rank 1:{res.describe()}")
        self.assertLess(res.elapsed, 10.0, res.describe())
        self.assertNotIn("NO ERROR SEEN", res.stdout, res.describe())
        for r, result in results_by_rank(res, "peer-dies").items():
            self.assertIn(r, (0, 2), res.describe())
            self.assertNotEqual(result.code, 0, res.describe())
            self.assertTrue(names_the_failure(result.message),
                            f"rank {r} does not name rank 1 or the lost connection:{res.describe()}")
        for r, s in kt.parse_elapsed(res.stdout):
            self.assertLess(s, 10.0, res.describe())

    def test_abort_from_another_thread(self):
        res = under_kumirun(2, "abort", KUMI_TIMEOUT=30, timeout=30)
        aborted = results_by_rank(res, "aborted")
        self.assertIn(0, aborted, res.describe())
        self.assertEqual(aborted[0].code, 6, f"want kumiAborted:{res.describe()}")
        elapsed = dict(kt.parse_elapsed(res.stdout))
        self.assertIn(0, elapsed, res.describe())
        self.assertLess(elapsed[0], 2.0, res.describe())
        self.assertEqual(res.returncode, 0, res.describe())


class ByHand(unittest.TestCase):
    """Ranks started without kumirun, with KUMI_STORE on a port of the test's choice."""

    def store(self):
        return f"127.0.0.1:{kt.free_port()}"

    def single_result(self, res, what="init"):
        results = [r for r in kt.parse_results(res.stdout) if r.what == what]
        self.assertEqual(len(results), 1, f"expected one RESULT {what} line:{res.describe()}")
        return results[0]

    def test_peer_dies_by_hand(self):
        # On one host the ranks talk through shared memory, where a dead peer shows only by its
        # pid: survivors must still name it, as they do over TCP (closed connections).
        for transport in ("auto", "tcp"):
            with self.subTest(transport=transport):
                self.peer_dies_by_hand(transport)

    def peer_dies_by_hand(self, transport):
        store = self.store()
        procs = ranks_by_hand([dict(KUMI_STORE=store, KUMI_RANK=r, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=30,
                                    KUMI_TRANSPORT=transport)
                               for r in range(3)], "peer-dies", 1, timeout=40)
        info = describe_all(procs)
        self.assertEqual(procs[1].returncode, 9, info)
        messages = []
        for r in (0, 2):
            res = procs[r]
            self.assertEqual(res.returncode, 0, f"rank {r} did not see the failure:{info}")
            result = self.single_result(res, "peer-dies")
            self.assertNotEqual(result.code, 0, info)
            self.assertTrue(names_the_failure(result.message),
                            f"rank {r} names neither rank 1 nor the lost connection:{info}")
            (_, s), = kt.parse_elapsed(res.stdout)
            self.assertLess(s, 10.0, info)
            messages.append(result.message)
        # A survivor may see the other survivor's connections close first (and blame it), but
        # the first to fail saw rank 1 go.
        self.assertTrue(any(re.search(r"\brank 1\b", m) for m in messages), f"no survivor names rank 1:{info}")

    def test_world_size_disagreement(self):
        # Rank 0 believes in 2 ranks, rank 1 in 3: neither may start a communicator.
        store = self.store()
        procs = ranks_by_hand([dict(KUMI_STORE=store, KUMI_RANK=0, KUMI_WORLD_SIZE=2, KUMI_TIMEOUT=10),
                               dict(KUMI_STORE=store, KUMI_RANK=1, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=10)],
                              "init-only", timeout=30)
        info = describe_all(procs)
        for r, res in enumerate(procs):
            self.assertNotEqual(res.returncode, 0, f"rank {r} initialised despite the world size disagreement:{info}")
            self.assertNotEqual(self.single_result(res).code, 0, info)
            self.assertLess(res.elapsed, 12.0, info)
        self.assertTrue(any("world size" in self.single_result(res).message for res in procs),
                        f"no message mentions the world size:{info}")

    def test_world_size_disagreement_reversed(self):
        store = self.store()
        procs = ranks_by_hand([dict(KUMI_STORE=store, KUMI_RANK=0, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=10),
                               dict(KUMI_STORE=store, KUMI_RANK=1, KUMI_WORLD_SIZE=2, KUMI_TIMEOUT=10)],
                              "init-only", timeout=30)
        info = describe_all(procs)
        for r, res in enumerate(procs):
            self.assertNotEqual(res.returncode, 0, f"rank {r} initialised despite the world size disagreement:{info}")
            self.assertLess(res.elapsed, 12.0, info)
        self.assertTrue(any("world size" in self.single_result(res).message for res in procs), info)

    def test_malformed_planner_inputs_fail_every_rank_at_init(self):
        # One rank's tuning file has a bad token: init fails on every rank, at once, naming it.
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".tuning", delete=False) as f:
            f.write("nic_gbps = 12\nnic_latency_us = fast\n")
        for bad, needle in ((dict(KUMI_TUNING_FILE=f.name), "nic_latency_us must be a positive number, got 'fast'"),
                            (dict(KUMI_ALGO="allreduce:ring;allgather:butterfly"), "unknown algorithm 'butterfly'")):
            store = self.store()
            procs = ranks_by_hand([dict(KUMI_STORE=store, KUMI_RANK=0, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=30),
                                   dict(KUMI_STORE=store, KUMI_RANK=1, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=30, **bad),
                                   dict(KUMI_STORE=store, KUMI_RANK=2, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=30)],
                                  "init-only", timeout=60)
            info = describe_all(procs)
            for r, res in enumerate(procs):
                self.assertNotEqual(res.returncode, 0, f"rank {r} initialised despite {bad}:{info}")
                self.assertLess(res.elapsed, 10.0, f"must fail at once, not at the deadline:{info}")
                self.assertIn(needle, self.single_result(res).message, info)

    def test_kumi_algo_excluding_every_servable_algorithm_fails_at_init(self):
        # Hosts of 2 and 1 ranks: the hierarchical allgather cannot serve; excluding the others
        # leaves nothing, and init says so on every rank.
        store = self.store()
        common = dict(KUMI_STORE=store, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=30, KUMI_ALGO="allgather:^ring,rd")
        procs = ranks_by_hand([dict(common, KUMI_RANK=0, KUMI_HOSTID="a"), dict(common, KUMI_RANK=1, KUMI_HOSTID="a"),
                               dict(common, KUMI_RANK=2, KUMI_HOSTID="b")], "init-only", timeout=60)
        info = describe_all(procs)
        for r, res in enumerate(procs):
            self.assertNotEqual(res.returncode, 0, f"rank {r} initialised:{info}")
            self.assertLess(res.elapsed, 10.0, info)
            msg = self.single_result(res).message
            self.assertIn("leaves allgather no algorithm that can serve this communicator", msg, info)
            self.assertIn("hierarchical allgather needs every host to hold as many ranks", msg, info)

    def test_rank_outside_the_world(self):
        res = kt.run([scenarios(), "init-only"], timeout=20,
                     env=kt.clean_env(KUMI_STORE=self.store(), KUMI_RANK=5, KUMI_WORLD_SIZE=2, KUMI_TIMEOUT=10))
        self.assertNotEqual(res.returncode, 0, res.describe())
        result = self.single_result(res)
        self.assertEqual(result.code, 1, f"want kumiInvalidArgument:{res.describe()}")
        self.assertTrue("KUMI_RANK" in result.message or "outside" in result.message, res.describe())
        self.assertLess(res.elapsed, 2.0, f"must fail at once, not at the deadline:{res.describe()}")

    def test_unreachable_store(self):
        store = self.store()  # nobody listens there, and this rank does not serve it
        res = kt.run([scenarios(), "init-only"], timeout=20,
                     env=kt.clean_env(KUMI_STORE=store, KUMI_STORE_SERVE=0, KUMI_RANK=1, KUMI_WORLD_SIZE=2,
                                      KUMI_TIMEOUT=2))
        self.assertNotEqual(res.returncode, 0, res.describe())
        result = self.single_result(res)
        self.assertEqual(result.code, 4, f"want kumiTimeout:{res.describe()}")
        self.assertIn(store, result.message, res.describe())
        self.assertLess(res.elapsed, 5.0, res.describe())

    def test_store_port_already_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            store = f"127.0.0.1:{held.getsockname()[1]}"
            res = kt.run([scenarios(), "init-only"], timeout=20,
                         env=kt.clean_env(KUMI_STORE=store, KUMI_RANK=0, KUMI_WORLD_SIZE=2, KUMI_TIMEOUT=3))
        self.assertNotEqual(res.returncode, 0, res.describe())
        result = self.single_result(res)
        self.assertNotEqual(result.code, 0, res.describe())
        self.assertIn("already in use", result.message, res.describe())
        self.assertLess(res.elapsed, 5.0, res.describe())

    def test_missing_rank(self):
        # World size 3, but rank 2 never starts: both ranks must say that rank 2 is missing.
        store = self.store()
        procs = ranks_by_hand([dict(KUMI_STORE=store, KUMI_RANK=r, KUMI_WORLD_SIZE=3, KUMI_TIMEOUT=3) for r in (0, 1)],
                              "init-only", timeout=20)
        info = describe_all(procs)
        for r, res in enumerate(procs):
            self.assertNotEqual(res.returncode, 0, info)
            result = self.single_result(res)
            self.assertNotEqual(result.code, 0, info)
            self.assertRegex(result.message, r"never arrived.*ranks? 2\b",
                             f"rank {r} does not name rank 2 as never arrived:{info}")
            self.assertLess(res.elapsed, 6.0, info)


if __name__ == "__main__":
    unittest.main()
