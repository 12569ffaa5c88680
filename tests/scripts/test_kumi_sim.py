"""kumi-sim end to end: the shipped cluster descriptions load, predictions keep the orders the
link arithmetic demands, and bad descriptions are errors that name the bad line."""
import os
import re
import tempfile
import unittest

import kumi_testlib as kt

CLUSTERS = os.path.join(kt.source_dir(), "benchmarks", "clusters")


def sim(*args, timeout=120):
    return kt.run([kt.program("kumi-sim"), *args], timeout=timeout, env=kt.clean_env())


def rows(output):
    """{(bytes, algorithm): (time_us, busbw)} from kumi-sim's table."""
    out = {}
    for line in output.splitlines():
        m = re.match(r"\s+(\d+)\s+\d+\s+float\s+(\w+)\s+([\d.]+)\s+[\d.]+\s+([\d.]+)$", line)
        if m:
            out[(int(m.group(1)), m.group(2))] = (float(m.group(3)), float(m.group(4)))
    return out


class KumiSim(unittest.TestCase):
    def test_virtual_cluster_description(self):
        cluster = os.path.join(CLUSTERS, "vcluster-2x2-1gbit.conf")
        # A loop of calls, as kumi-bench runs them: tbf's bucket is drained, the links run at their rate.
        res = sim("allreduce", "--cluster", cluster, "-b", "1M", "-e", "16M", "-n", "20", "-w", "5")
        self.assertEqual(res.returncode, 0, res.describe())
        r = rows(res.stdout)
        for size in (1 << 20, 4 << 20, 16 << 20):
            ring, hier = r[(size, "ring")], r[(size, "hierarchical")]
            self.assertLessEqual(ring[1], 0.118 * 1.001, "a flat ring cannot beat its one cross-node link")
            self.assertGreater(hier[1], 1.25 * ring[1], f"hierarchical should cross the network less at {size}")
        # A lone call gets the bucket's 128 KiB at veth speed: faster than the loop, most at 1M.
        lone = sim("allreduce", "--cluster", cluster, "-b", "1M", "-e", "1M", "--algo", "ring")
        self.assertEqual(lone.returncode, 0, lone.describe())
        self.assertLess(rows(lone.stdout)[(1 << 20, "ring")][0], 0.95 * r[(1 << 20, "ring")][0], lone.stdout)
        for bad in (["-n", "0"], ["-w", "x"], ["-n", "1001"]):
            res = sim("allreduce", "--cluster", cluster, *bad)
            self.assertEqual(res.returncode, 2, res.describe())
            self.assertIn("must be a whole number", res.stderr)

    def test_1024_gpus_tree_beats_ring_for_small_buckets(self):
        res = sim("allreduce", "--cluster", os.path.join(CLUSTERS, "v100-128x8-roce.conf"), "-b", "64K", "-e", "64K",
                  "--algo", "ring,tree", timeout=300)
        self.assertEqual(res.returncode, 0, res.describe())
        r = rows(res.stdout)
        self.assertLess(r[(65536, "tree")][0], r[(65536, "ring")][0] / 4, res.stdout)

    def test_1024_gpus_hierarchical_gigabyte_near_the_nic_bound(self):
        # The algorithms issue's target: 4 NICs of 12 GB/s per 8 ranks bound the busbw at 48 GB/s;
        # the hierarchical allreduce of 1 GiB must be predicted at 90% of it or more. (It had
        # fallen to 68%, unnoticed, when its host rings waited for the whole local phase.)
        res = sim("allreduce", "--cluster", os.path.join(CLUSTERS, "v100-128x8-roce.conf"), "-b", "1G", "-e", "1G",
                  "--algo", "hierarchical", timeout=300)
        self.assertEqual(res.returncode, 0, res.describe())
        busbw = rows(res.stdout)[(1 << 30, "hierarchical")][1]
        self.assertGreaterEqual(busbw, 0.9 * 48, res.stdout)
        # busbw counts 2(n-1)/n of the message per rank, the NICs carry 2(N-1)/N per node (N = 128).
        self.assertLessEqual(busbw, 48 * (1023 / 1024) * (128 / 127), "no allreduce beats the NICs")

    def test_every_collective_runs_on_the_nvlink_node(self):
        for coll in ("allreduce", "allgather", "reduce_scatter", "broadcast", "reduce", "alltoall"):
            res = sim(coll, "--cluster", os.path.join(CLUSTERS, "nvlink-8gpu.conf"), "-b", "1M", "-e", "1M")
            self.assertEqual(res.returncode, 0, res.describe())
            self.assertTrue(rows(res.stdout), f"{coll}: no rows:{res.describe()}")

    def test_device_buffers_use_the_device_links_and_pay_for_staging(self):
        hgx = os.path.join(CLUSTERS, "hgx-h100-8gpu.conf")
        out = {}
        for memory in ("host", "device"):
            res = sim("allreduce", "--cluster", hgx, "-b", "256M", "-e", "256M", "--algo", "ring", "--memory", memory)
            self.assertEqual(res.returncode, 0, res.describe())
            self.assertIn(f"{memory} buffers", res.stdout)
            out[memory] = rows(res.stdout)[(256 << 20, "ring")][1]
        # NVLink at the file's 370 GB/s bounds the device ring; host buffers move by shared memory.
        self.assertLess(out["device"], 370 * 1.001, out)
        self.assertGreater(out["device"], 10 * out["host"], out)
        # Between nodes every device message is staged through host memory over PCIe Gen3 (12.6
        # GB/s, about the NIC's 12): slower than the file's host-buffer (GPUDirect-like) figures.
        v100 = os.path.join(CLUSTERS, "v100-128x8-roce.conf")
        busbw = {}
        for memory in ("host", "device"):
            res = sim("allreduce", "--cluster", v100, "--nodes", "2", "-b", "256M", "-e", "256M", "--algo",
                      "hierarchical", "--memory", memory)
            self.assertEqual(res.returncode, 0, res.describe())
            busbw[memory] = rows(res.stdout)[(256 << 20, "hierarchical")][1]
        self.assertLess(busbw["device"], 0.9 * busbw["host"], busbw)
        res = sim("allreduce", "--cluster", hgx, "--memory", "gpu")
        self.assertEqual(res.returncode, 2, res.describe())
        self.assertIn("--memory must be host or device, got 'gpu'", res.stderr)

    def test_bad_descriptions_name_the_line(self):
        for text, expected in (("nodes = 2\nranks_per_node = 2\nnic_gbits = 10\n", ":3: unknown key 'nic_gbits'"),
                               ("nodes = two\n", "nodes must be a positive number, got 'two'")):
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "bad.conf")
                with open(path, "w") as f:
                    f.write(text)
                res = sim("allreduce", "--cluster", path)
                self.assertEqual(res.returncode, 2, res.describe())
                self.assertIn(expected, res.stderr, res.describe())
        res = sim("allreduce")
        self.assertEqual(res.returncode, 2, res.describe())
        self.assertIn("--cluster FILE is required", res.stderr)
        res = sim("allreduce", "--cluster", os.path.join(CLUSTERS, "nvlink-8gpu.conf"), "--algo", "butterfly")
        self.assertEqual(res.returncode, 2, res.describe())
        self.assertIn("unknown algorithm 'butterfly'", res.stderr)


if __name__ == "__main__":
    unittest.main()
