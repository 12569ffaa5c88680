"""The rendezvous store at scale: 4096 ranks join through one kumi-store process at once
(handshake, compare-set, set, add, wait, get of both ring neighbours, a second barrier), with and
without a shared secret, driven by kumi-store-load (benchmarks/store_load.cpp), which checks every
value it reads. Every rank must complete the join, none may be dropped and reconnect, the store's
peak memory must stay small, and the whole join must take seconds, not minutes.

Measured on the 2-core development machine (docs/PERFORMANCE.md, "Store at scale"): 0.8 to 1.5 s
with or without a secret, depending on the machine's other load; the store's peak RSS is 5 MiB
idle and 9 MiB (11 MiB with a secret, libcrypto's share) after the join, about 1 KiB per rank."""
import json
import os
import tempfile
import unittest

import kumi_testlib as kt

RANKS = 4096
# Requests per join: compare-set x2, set, add, wait, get x2, add, wait; plus the two sets of the
# ranks whose add reached N (tcp/all, ready/all).
REQUESTS = 9 * RANKS + 2
# 64 MiB: six times what was measured (11 MiB). Per-connection state is a few hundred bytes plus
# buffers that never outgrow one request, so a store that kept, say, a 64 KiB buffer per rank
# (256 MiB) or leaked per request fails here, while allocator differences between machines pass.
PEAK_RSS_BOUND_KB = 64 * 1024
# Growth from idle to after the join, per rank: measured about 1 KiB; 16 KiB leaves room for
# allocator rounding but not for a per-connection buffer of the size of a socket read (64 KiB).
GROWTH_PER_RANK_BOUND_KB = 16
# Generous: a 2-core machine shared with a build takes under 2 s.
JOIN_BOUND_S = 120.0


def setUpModule():
    kt.require_option("KUMI_BUILD_BENCHMARKS")
    kt.program("kumi-store-load")  # both raise ConfigError (a failure, not a skip) when missing
    kt.program("kumi-store")


def sanitized() -> bool:
    """Sanitizer builds measure the sanitizer's shadow memory and quarantine, not the store's."""
    return bool((kt.cache_value("KUMI_SANITIZE", "") or "").strip())


class StoreAtScale(unittest.TestCase):
    def join(self, secret=None, extra=()):
        env = kt.clean_env(KUMI_SECRET=secret) if secret else kt.clean_env()
        with tempfile.TemporaryDirectory() as tmp:
            report = os.path.join(tmp, "load.json")
            res = kt.run([kt.program("kumi-store-load"), "-n", RANKS, "--timeout", JOIN_BOUND_S, "--json", report,
                          *extra], timeout=JOIN_BOUND_S + 30, env=env)
            self.assertEqual(res.returncode, 0, f"not every rank completed the join:{res.describe()}")
            self.assertTrue(os.path.exists(report), f"no JSON report:{res.describe()}")
            with open(report) as f:
                r = json.load(f)
        info = res.describe()
        self.assertEqual(r["clients"], RANKS, info)
        self.assertEqual(r["secret"], bool(secret), info)
        self.assertEqual(r["joined"], RANKS, info)
        self.assertEqual(r["failed"], 0, info)
        # A rank whose handshake the store broke off would have had to connect again; with a
        # store that keeps up, none does.
        self.assertEqual(r["reconnects"], 0, info)
        self.assertEqual(r["requests"], REQUESTS, info)
        self.assertLess(r["join_s"], JOIN_BOUND_S, info)
        self.assertGreater(r["store_pid"], 0, info)
        self.assertGreater(r["store_hwm_kb_before"], 0, f"the store's memory was not read:{info}")
        if not sanitized():
            self.assertLess(r["store_hwm_kb_after"], PEAK_RSS_BOUND_KB, info)
            growth = r["store_hwm_kb_after"] - r["store_hwm_kb_before"]
            self.assertLess(growth / RANKS, GROWTH_PER_RANK_BOUND_KB, info)
        return r

    def test_4096_ranks_join(self):
        self.join()

    def test_4096_ranks_join_with_a_secret(self):
        self.join(secret="correct horse battery staple")

    def test_4096_ranks_connecting_before_any_answers_its_greeting(self):
        # Every connection is opened before the first greeting is answered: the store must read
        # hellos that arrive late instead of pushing them out as a stranger's flood.
        self.join(extra=("--burst", "0"))


if __name__ == "__main__":
    unittest.main()
