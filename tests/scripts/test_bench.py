"""kumi-bench under kumirun: every collective checks its results, the table has the nccl-tests
shape, --json is valid and consistent, --algo all compares every algorithm with the planner's
choice, --calibrate writes a tuning file the planner can read, and bad flags are refused."""
import json
import os
import re
import shutil
import tempfile
import unittest

import kumi_testlib as kt

NP = 3
QUICK = ["-b", "8", "-e", "1M", "-f", "8", "-n", "2", "-w", "1", "-c", "1"]
QUICK_SIZES = [8, 64, 512, 4096, 32768, 262144]  # 8 * 8^k up to 1M
# (name, extra arguments, bus bandwidth factor for NP ranks)
COLLECTIVES = [
    ("allreduce", [], 2 * (NP - 1) / NP),
    ("reduce_scatter", [], (NP - 1) / NP),
    ("allgather", [], (NP - 1) / NP),
    ("broadcast", ["-r", "1"], 1.0),
    ("reduce", ["-r", "2"], 1.0),
    ("alltoall", [], (NP - 1) / NP),
]
# Collectives without an in-place form: their in-place columns read N/A and JSON has no such rows.
NO_IN_PLACE = ("alltoall",)
COLUMNS = ["size", "count", "type", "redop", "root", "time", "algbw", "busbw", "wrong",
           "ip_time", "ip_algbw", "ip_busbw", "ip_wrong"]
# --algo all adds what was asked for and what the library reports it ran, after root.
COMPARE_COLUMNS = COLUMNS[:5] + ["algo", "ran"] + COLUMNS[5:]
# The planner's algorithms (collectives/planner.cpp, algorithmsFor).
ALGORITHMS = {
    "allreduce": ["ring", "recursive_doubling", "hierarchical", "tree", "rabenseifner"],
    "allgather": ["ring", "hierarchical", "recursive_doubling"],
}
# --calibrate's file: (key prefix, suffixes) as the planner's KUMI_TUNING_FILE parser reads them.
LINK_KEYS = ["latency_us", "gbps", "overhead_us"]
CALIBRATE_QUICK = ["-n", "2", "-w", "1"]


def setUpModule():
    kt.require_option("KUMI_BUILD_BENCHMARKS")
    kt.kumirun()
    kt.program("kumi-bench")


def bench(*args, np_=NP, nodes=1, timeout=120):
    return kt.run([kt.kumirun(), "-np", str(np_), "--nodes", str(nodes), "--", kt.program("kumi-bench"),
                   *map(str, args)], timeout=timeout, env=kt.clean_env(KUMI_TIMEOUT=60))


def table_rows(res):
    """Data rows of rank 0's table, as lists of columns (kumirun prefix removed)."""
    rows = []
    for line in res.stdout.splitlines():
        m = re.match(r"^\[0\] (.*)$", line)
        if not m or m.group(1).lstrip().startswith("#") or not m.group(1).strip():
            continue
        rows.append(m.group(1).split())
    return rows


class Collectives(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kumi-bench-test-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def check_run(self, res, rows_expected=None, in_place=True):
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertIn("[0] # Out of bounds values : 0 OK", res.stdout.splitlines(), res.describe())
        rows = table_rows(res)
        self.assertTrue(rows, f"no data rows:{res.describe()}")
        if rows_expected is not None:
            self.assertEqual(len(rows), rows_expected, res.describe())
        for row in rows:
            self.assertEqual(len(row), 13, f"row {row} does not have the 13 columns {COLUMNS}:{res.describe()}")
            cols = dict(zip(COLUMNS, row))
            self.assertEqual(cols["wrong"], "0", f"out-of-place errors in {row}:{res.describe()}")
            for c in ("size", "count", "root", "wrong"):
                int(cols[c])
            for c in ("time", "algbw", "busbw"):
                float(cols[c])
            if not in_place:
                for c in ("ip_time", "ip_algbw", "ip_busbw", "ip_wrong"):
                    self.assertEqual(cols[c], "N/A", f"{c} in {row}:{res.describe()}")
                continue
            self.assertEqual(cols["ip_wrong"], "0", f"in-place errors in {row}:{res.describe()}")
            int(cols["ip_wrong"])
            for c in ("ip_time", "ip_algbw", "ip_busbw"):
                float(cols[c])
        return rows

    def check_json(self, path, coll, factor, sizes, res):
        self.assertTrue(os.path.isfile(path), f"--json {path} was not written:{res.describe()}")
        with open(path) as f:
            text = f.read()
        try:
            doc = json.loads(text)
        except ValueError as e:
            self.fail(f"--json output is not valid JSON ({e}):\n{text}")
        self.assertEqual(doc.get("collective"), coll, text)
        self.assertEqual(doc.get("nranks"), NP, text)
        results = doc.get("results")
        self.assertIsInstance(results, list, text)
        got = {(r["bytes"], r["inplace"]) for r in results}
        want = {(b, ip) for b in sizes for ip in ((False,) if coll in NO_IN_PLACE else (False, True))}
        self.assertEqual(got, want, f"results do not cover every size in and out of place:\n{text}")
        for r in results:
            self.assertEqual(r["wrong"], 0, r)
            self.assertGreater(r["time_us"], 0, r)
            alg, bus = r["algbw_GBps"], r["busbw_GBps"]
            # Printed with 4 decimals: allow half a unit of the last digit on each side.
            tol = 0.5e-4 * (1 + factor) + 1e-9
            self.assertAlmostEqual(bus, alg * factor, delta=tol,
                                   msg=f"busbw != algbw * {factor:.4f} for {r}")
            # algbw = bytes / time (GB/s = bytes/us/1e3). time_us is printed with 3 decimals, so the
            # true time lies within half a unit of it; algbw (4 decimals) must match some time in that
            # interval, give or take half a unit of its own last digit.
            t_lo, t_hi = r["time_us"] - 0.0005, r["time_us"] + 0.0005
            alg_lo = r["bytes"] / 1e3 / t_hi - 0.5e-4 - 1e-7
            alg_hi = r["bytes"] / 1e3 / t_lo + 0.5e-4 + 1e-7
            self.assertTrue(alg_lo <= alg <= alg_hi,
                            f"algbw {alg} outside [{alg_lo}, {alg_hi}] implied by bytes/time_us: {r}")
        return doc

    def test_each_collective(self):
        for coll, extra, factor in COLLECTIVES:
            with self.subTest(collective=coll):
                path = os.path.join(self.tmp, f"{coll}.json")
                res = bench(coll, *extra, *QUICK, "--json", path)
                rows = self.check_run(res, rows_expected=len(QUICK_SIZES), in_place=coll not in NO_IN_PLACE)
                for row in rows:
                    cols = dict(zip(COLUMNS, row))
                    self.assertEqual(cols["type"], "float", row)
                    if coll in ("broadcast", "reduce"):
                        self.assertEqual(cols["root"], extra[1], row)
                    else:
                        self.assertEqual(cols["root"], "-1", row)
                    self.assertEqual(cols["redop"], "none" if coll in ("allgather", "broadcast", "alltoall") else "sum", row)
                # allgather/reduce_scatter/alltoall sizes are rounded down to a multiple of NP elements.
                sizes = [int(dict(zip(COLUMNS, r))["size"]) for r in rows]
                if coll in ("allgather", "reduce_scatter", "alltoall"):
                    self.assertEqual(sizes, [(b // 4) // NP * NP * 4 for b in QUICK_SIZES], res.describe())
                else:
                    self.assertEqual(sizes, QUICK_SIZES, res.describe())
                doc = self.check_json(path, coll, factor, sizes, res)
                passes = 1 if coll in NO_IN_PLACE else 2
                self.assertEqual(len(doc["results"]), passes * len(sizes), "one result per size, in and out of place")

    def test_allreduce_all_types_and_ops(self):
        path = os.path.join(self.tmp, "all.json")
        res = bench("allreduce", "-d", "all", "-o", "all", "-b", "1K", "-e", "4K", "-f", "4", "--json", path)
        rows = self.check_run(res, rows_expected=10 * 5 * 2)
        types = {r[2] for r in rows}
        ops = {r[3] for r in rows}
        self.assertEqual(types, {"int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "bfloat16", "float",
                                 "double"}, res.describe())
        self.assertEqual(ops, {"sum", "prod", "min", "max", "avg"}, res.describe())
        doc = self.check_json(path, "allreduce", 2 * (NP - 1) / NP, [1024, 4096], res)
        self.assertEqual(len(doc["results"]), 10 * 5 * 2 * 2, "one JSON result per row, in and out of place")
        self.assertEqual({r["type"] for r in doc["results"]},
                         {"int8", "uint8", "int32", "uint32", "int64", "uint64", "float16", "bfloat16", "float32",
                          "float64"})

    def test_single_rank(self):
        res = bench("allreduce", *QUICK, np_=1)
        rows = self.check_run(res, rows_expected=len(QUICK_SIZES))
        for row in rows:
            self.assertEqual(float(row[7]), 0.0, f"busbw of 1 rank must be 0: {row}")


def summary_rows(res):
    """Rank 0's "# Algorithm summary" rows: {size: (best, best time, auto ran, auto time, ratio)}."""
    rows, inside = {}, False
    for line in res.stdout.splitlines():
        m = re.match(r"^\[0\] # (.*)$", line)
        if not m:
            continue
        text = m.group(1)
        if text.startswith("Algorithm summary"):
            inside = True
            continue
        if inside and re.match(r"^\s*\d", text):
            size, _type, _op, best, best_t, auto_ran, auto_t, ratio = text.split()
            rows[int(size)] = (best, float(best_t), auto_ran, float(auto_t), float(ratio))
    return rows


class Compare(unittest.TestCase):
    """--algo all: one communicator per algorithm (KUMI_ALGO=coll:algo), every row checked."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kumi-bench-test-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def compare_run(self, coll, sizes, *args, nodes=1):
        path = os.path.join(self.tmp, f"{coll}.json")
        res = bench(coll, "-n", "2", "-w", "1", *args, "--algo", "all", "--json", path, nodes=nodes)
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertIn("[0] # Out of bounds values : 0 OK", res.stdout.splitlines(), res.describe())
        rows = [dict(zip(COMPARE_COLUMNS, r)) for r in table_rows(res)]
        for row in rows:
            self.assertEqual(len(row), len(COMPARE_COLUMNS), f"{row}:{res.describe()}")
            self.assertEqual((row["wrong"], row["ip_wrong"]), ("0", "0"), f"wrong elements in {row}:{res.describe()}")
            for c in ("time", "ip_time"):
                self.assertGreater(float(row[c]), 0, row)
        labels = ["auto"] + ALGORITHMS[coll]
        got = sorted((int(r["size"]), r["algo"]) for r in rows)
        self.assertEqual(got, sorted((b, a) for b in sizes for a in labels),
                         f"want one row per size and algorithm (auto included):{res.describe()}")
        for r in rows:
            self.assertIn(r["ran"], ALGORITHMS[coll],
                          f"the library did not report a known algorithm (kumiCommGetAlgorithm) in {r}:"
                          f"{res.describe()}")
        summary = summary_rows(res)
        self.assertEqual(sorted(summary), sorted(sizes), f"want a summary row per size:{res.describe()}")
        for size, (best, best_t, auto_ran, auto_t, ratio) in summary.items():
            self.assertIn(best.split("->")[0], ALGORITHMS[coll], res.describe())
            # Times are printed with 2 decimals, the ratio with 3: allow their rounding.
            lo, hi = (auto_t - 0.005) / (best_t + 0.005), (auto_t + 0.005) / max(best_t - 0.005, 1e-9)
            self.assertTrue(lo - 0.0005 <= ratio <= hi + 0.0005, f"ratio {ratio} for {size}:{res.describe()}")
        m = re.search(r"^\[0\] # Worst auto/best ratio : ([0-9.]+) at (\d+) B", res.stdout, re.M)
        self.assertIsNotNone(m, f"no worst-ratio line:{res.describe()}")
        self.assertAlmostEqual(float(m.group(1)), max(v[4] for v in summary.values()), delta=0.002)
        with open(path) as f:
            doc = json.load(f)
        self.assertEqual(doc["algorithms"], labels)
        self.assertEqual(sorted((r["bytes"], r["algo"], r["inplace"]) for r in doc["results"]),
                         sorted((b, a, ip) for b in sizes for a in labels for ip in (False, True)))
        self.assertTrue(all(r["ran"] in ALGORITHMS[coll] and r["wrong"] == 0 for r in doc["results"]), doc)
        self.assertEqual(sorted(s["bytes"] for s in doc["summary"]), sorted(sizes))
        self.assertGreater(doc["worst_ratio"], 0)
        return rows

    def test_allreduce_all(self):
        rows = self.compare_run("allreduce", [8, 256, 8192], "-b", "8", "-e", "64K", "-f", "32")
        for r in rows:
            if r["algo"] != "auto":  # every allreduce algorithm serves 3 ranks on one host
                self.assertEqual(r["ran"], r["algo"], r)

    def test_allgather_uneven_hosts(self):
        # kumirun --nodes 2 with 3 ranks: hosts of 2 and 1 ranks. The hierarchical allgather needs
        # equal hosts: forced anyway, the library falls back, and the row says to what.
        sizes = [(b // 4) // NP * NP * 4 for b in (64, 2048)]
        rows = self.compare_run("allgather", sizes, "-b", "64", "-e", "2K", "-f", "32", nodes=2)
        for r in rows:
            if r["algo"] == "hierarchical":
                self.assertIn(r["ran"], ["ring", "recursive_doubling"], r)
            elif r["algo"] != "auto":
                self.assertEqual(r["ran"], r["algo"], r)


def parse_tuning(test, path, res):
    """The tuning file as {key: float}; every line a comment or `key = number`."""
    test.assertTrue(os.path.isfile(path), f"--calibrate did not write {path}:{res.describe()}")
    with open(path) as f:
        text = f.read()
    lines = text.splitlines()
    test.assertTrue(lines and lines[0].startswith("# kumi tuning file: written by kumi-bench --calibrate on "), text)
    values = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^([a-z_]+) = (\S+)$", line)
        test.assertIsNotNone(m, f"not `key = value`: {line!r}\n{text}")
        test.assertNotIn(m.group(1), values, f"{m.group(1)} twice:\n{text}")
        values[m.group(1)] = float(m.group(2))
    return values, text


class Calibrate(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kumi-bench-test-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def calibrate(self, np_, nodes, hosts):
        path = os.path.join(self.tmp, "kumi.tuning")
        res = bench("--calibrate", path, *CALIBRATE_QUICK, np_=np_, nodes=nodes, timeout=90)
        self.assertEqual(res.returncode, 0, res.describe())
        values, text = parse_tuning(self, path, res)
        self.assertIn(f"{np_} ranks on {hosts} host", text.splitlines()[0])
        classes = ["intra", "loopback"] + (["nic"] if hosts > 1 else [])
        want = {f"{c}_{k}" for c in classes for k in LINK_KEYS} | {"reduce_gbps", "copy_gbps"}
        self.assertEqual(set(values), want, text)
        for key, v in values.items():
            # The fitted per-message overhead is clamped at 0 (shared memory's is often below
            # what the fit resolves); every latency, bandwidth and rate must be positive.
            if key.endswith("_overhead_us"):
                self.assertGreaterEqual(v, 0, f"{key}:\n{text}")
            else:
                self.assertGreater(v, 0, f"{key}:\n{text}")
        for c in classes:
            self.assertGreaterEqual(values[f"{c}_latency_us"], 0.1, text)
        if hosts == 1:
            self.assertRegex(text, r"(?m)^# nic_.*not measured", text)
        self.assertIn(f"[0] wrote {path}", res.stdout, res.describe())
        return values

    def test_one_host(self):
        self.calibrate(2, 1, 1)

    def test_two_hosts(self):
        self.calibrate(4, 2, 2)

    def test_one_rank(self):
        path = os.path.join(self.tmp, "kumi.tuning")
        res = bench("--calibrate", path, *CALIBRATE_QUICK, np_=1, timeout=30)
        self.assertEqual(res.returncode, 2, res.describe())
        self.assertIn("--calibrate needs at least 2 ranks", res.stderr, res.describe())
        self.assertFalse(os.path.exists(path), "nothing may be written without a measurement")

    def test_unwritable_file(self):
        path = os.path.join(self.tmp, "no-such-dir", "kumi.tuning")
        res = bench("--calibrate", path, *CALIBRATE_QUICK, np_=2, timeout=30)
        self.assertEqual(res.returncode, 2, res.describe())
        self.assertIn(f"cannot write tuning file {path}", res.stderr, res.describe())
        self.assertLess(res.elapsed, 10, "the file is checked before measuring")


class BadFlags(unittest.TestCase):
    def check_refused(self, args, needle):
        # Directly (argument errors come before any rendezvous) and under kumirun.
        direct = kt.run([kt.program("kumi-bench"), *args], timeout=20)
        self.assertEqual(direct.returncode, 2, direct.describe())
        self.assertIn(needle, direct.stderr, direct.describe())
        res = bench(*args, timeout=30)
        self.assertEqual(res.returncode, 2, res.describe())
        self.assertIn(needle, res.stderr, res.describe())
        self.assertLess(res.elapsed, 10, res.describe())

    def test_unknown_type(self):
        self.check_refused(["allreduce", "-d", "float7"], "unknown data type 'float7'")

    def test_unknown_collective(self):
        self.check_refused(["alltoallz"], "unknown collective 'alltoallz'")

    def test_unknown_op(self):
        self.check_refused(["allreduce", "-o", "median"], "unknown op 'median'")

    def test_unknown_option(self):
        self.check_refused(["allreduce", "--frobnicate"], "unknown option --frobnicate")

    def test_bad_sizes(self):
        self.check_refused(["allreduce", "-b", "4K", "-e", "1K"], "-e must be >= -b")
        self.check_refused(["allreduce", "-b", "12Q"], "bad size '12Q'")
        self.check_refused(["allreduce", "-f", "1"], "-f must be > 1")

    def test_unknown_algorithm_in_list(self):
        self.check_refused(["allreduce", "--algo", "ring,butterfly"], "'butterfly' is not an algorithm of allreduce")
        self.check_refused(["allgather", "--algo", "ring,tree"], "'tree' is not an algorithm of allgather")

    def test_calibrate_conflicts(self):
        self.check_refused(["--calibrate", "x.tuning", "--algo", "all"], "--calibrate and --algo all do not go together")
        self.check_refused(["--calibrate", "x.tuning", "--transport", "tcp"], "drop --transport")

    def test_compare_needs_nccl_and_device_memory(self):
        self.check_refused(["allreduce", "--compare", "gloo"], "the peer kumi-bench can run beside kumi is nccl")
        self.check_refused(["allreduce", "--compare", "nccl"], "add --memory device")

    def test_root_outside(self):
        res = bench("broadcast", "-r", str(NP), "-b", "8", "-e", "8", timeout=30)
        self.assertEqual(res.returncode, 2, res.describe())
        self.assertIn(f"root {NP} is not a rank", res.stderr, res.describe())


if __name__ == "__main__":
    unittest.main()
