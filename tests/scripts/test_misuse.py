"""API misuse through tests/mp/misuse: NULL and made-up handles, use after destroy, double destroy,
destroy or a second collective while a thread is inside one, abort twice, abort then destroy,
teardowns racing each other, abort during a split. Each scenario checks its own calls (codes and
messages, printed as RESULT lines); this runs them over both transports and on one rank without a
store, and checks what a scenario cannot see itself: that every rank got through, quickly, without
a crash or a sanitizer report, and that each refusal names the handle's state."""
import re
import unittest

import kumi_testlib as kt

SCENARIOS = ("null-handles", "use-after-destroy", "abort-twice", "destroy-while-busy", "two-threads",
             "teardown-races", "abort-during-split")
# Each scenario needs a few seconds at most (the slowest waits 1.5 s for a late rank); KUMI_TIMEOUT
# is far above that, so a scenario that waits for a deadline shows as too slow, not as passed.
KUMI_TIMEOUT = 20
SCENARIO_BOUND = 12.0


def setUpModule():
    kt.kumirun()
    kt.program("misuse")


def run_scenario(name, np_=2, **env):
    return kt.run([kt.kumirun(), "-np", np_, "--", kt.program("misuse"), name], timeout=60,
                  env=kt.clean_env(env, KUMI_TIMEOUT=KUMI_TIMEOUT))


class Misuse(unittest.TestCase):
    def check_run(self, name, res, ranks=(0, 1)):
        info = res.describe()
        self.assertFalse(res.timed_out, f"{name} hung:{info}")
        for bad in ("Sanitizer", "runtime error", "terminate called", "Segmentation"):
            self.assertNotIn(bad, res.output, info)
        self.assertNotIn("MISMATCH", res.stdout, info)
        for r in ranks:
            self.assertIn(f"[{r}] OK {name}", res.stdout.splitlines(), f"rank {r} did not finish {name}:{info}")
        self.assertEqual(res.returncode, 0, info)
        self.assertLess(res.elapsed, SCENARIO_BOUND, f"{name} took {res.elapsed:.1f} s:{info}")
        results = kt.parse_results(res.stdout)
        self.assertTrue(results, info)
        for result in results:
            if result.code != 0:
                self.assertTrue(result.message, f"an error without a message: {result.line}")
            # A refused handle is one of: NULL, destroyed, never a communicator, in use.
            if result.code == 2:
                self.assertRegex(result.message, r"handle is NULL|handle 0x[0-9a-f]+ (was destroyed|is not a "
                                 r"communicator|is in use|is already running a collective)", result.line)
        return results

    def test_every_scenario_over_shared_memory(self):
        for name in SCENARIOS:
            with self.subTest(scenario=name):
                self.check_run(name, run_scenario(name))

    def test_every_scenario_over_tcp(self):
        for name in SCENARIOS:
            with self.subTest(scenario=name):
                self.check_run(name, run_scenario(name, KUMI_TRANSPORT="tcp"))

    def test_stale_handles_keep_their_address(self):
        # Every call with the same destroyed handle names the same address: the handle is looked
        # up, and the refusal is about that handle, not whatever lives there now.
        results = self.check_run("use-after-destroy", run_scenario("use-after-destroy"))
        for r in (0, 1):
            addresses = {re.search(r"handle (0x[0-9a-f]+)", x.message)[1]
                         for x in results if x.rank == r and x.what.startswith("after-destroy-")}
            self.assertEqual(len(addresses), 1, f"rank {r}: {addresses}")

    def test_one_rank_without_a_store(self):
        # The handle checks do not depend on the network: a one-rank world, no kumirun.
        for name in ("null-handles", "use-after-destroy", "abort-twice", "teardown-races"):
            with self.subTest(scenario=name):
                res = kt.run([kt.program("misuse"), name], timeout=60,
                             env=kt.clean_env(KUMI_RANK=0, KUMI_WORLD_SIZE=1, KUMI_TIMEOUT=KUMI_TIMEOUT))
                info = res.describe()
                self.assertEqual(res.returncode, 0, info)
                self.assertIn(f"OK {name}", res.stdout.splitlines(), info)
                self.assertNotIn("MISMATCH", res.stdout, info)


if __name__ == "__main__":
    unittest.main()
