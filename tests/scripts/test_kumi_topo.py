"""kumi-topo: JSON and text on the recorded fixtures and on this machine, the KUMI_BIND preview,
and bad arguments (exit status 2 with a message). Registered only when kumi is built with hwloc."""
import json
import os
import sys
import unittest

import kumi_testlib as kt

FIXTURES = os.path.join(kt.source_dir(), "tests", "topology", "fixtures")
TWO_SOCKET = os.path.join(FIXTURES, "two-socket-8gpu-4nic.xml")
SNC = os.path.join(FIXTURES, "snc2-2gpu-1nic.xml")


def setUpModule():
    kt.program("kumi-topo")  # a clear error up front if it is not built


def topo(*args, env=None):
    return kt.run([kt.program("kumi-topo"), *map(str, args)], timeout=60, env=env or kt.clean_env())


def topo_json(*args, env=None):
    r = topo(*args, "--json", env=env)
    if r.returncode != 0:
        raise AssertionError("kumi-topo failed" + r.describe())
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"kumi-topo --json printed invalid JSON ({e})" + r.describe())


class FixtureJson(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = topo_json("--xml", TWO_SOCKET)

    def test_cpus_and_memory(self):
        d = self.doc
        self.assertEqual(d["source"], "xml:" + TWO_SOCKET)
        self.assertEqual(d["hostname"], "fixture-2s-8gpu")
        self.assertEqual((d["pus"], d["cores"]), (96, 48))
        self.assertEqual([p["cpus"] for p in d["packages"]], ["0-23,48-71", "24-47,72-95"])
        self.assertEqual([(n["os_index"], n["cores"], n["cpus"]) for n in d["numa_nodes"]],
                         [(0, 24, "0-23,48-71"), (1, 24, "24-47,72-95")])
        self.assertEqual(d["memory_bytes"], 2 * 512 * 2**30)
        self.assertEqual(sum(n["memory_bytes"] for n in d["numa_nodes"]), d["memory_bytes"])
        self.assertEqual([(c["level"], c["type"], c["count"]) for c in d["caches"]],
                         [(3, "unified", 2), (2, "unified", 48), (1, "data", 48), (1, "instruction", 48)])

    def test_pci_devices(self):
        devs = self.doc["pci_devices"]
        self.assertEqual(len(devs), 14)
        by_class = {}
        for dev in devs:
            by_class.setdefault(dev["class_id"], []).append(dev)
        self.assertEqual(len(by_class["0x0302"]), 8)
        self.assertEqual(len(by_class["0x0200"]), 4)
        self.assertEqual(by_class["0x0300"][0]["vendor_id"], "0x1a03")  # the BMC display
        self.assertEqual(devs[0]["name"], "GH100 [H100 SXM5 80GB]")
        self.assertEqual(devs[0]["vendor"], "NVIDIA Corporation")

    def test_gpus_with_nearest_nic_and_cores(self):
        gpus = self.doc["gpus"]
        self.assertEqual(len(gpus), 8)
        for i, g in enumerate(gpus):
            with self.subTest(gpu=i):
                self.assertEqual(g["index"], i)
                self.assertEqual(g["vendor_id"], "0x10de")
                self.assertEqual(g["nearest_nic"], i // 2)
                self.assertEqual(g["nearest_nic_name"], f"mlx5_{i // 2}")
                self.assertEqual(g["numa_node"], 0 if i < 4 else 1)
                self.assertEqual(g["cpus"], "0-23,48-71" if i < 4 else "24-47,72-95")
                self.assertEqual(g["nic_closeness"][i // 2], "pci_switch")
                self.assertEqual(len(g["nic_closeness"]), 4)
        self.assertEqual(gpus[0]["nic_closeness"], ["pci_switch", "host_bridge", "machine", "machine"])
        self.assertEqual(gpus[7]["nic_closeness"], ["machine", "machine", "numa_node", "pci_switch"])

    def test_nics(self):
        nics = self.doc["nics"]
        self.assertEqual([n["name"] for n in nics], ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"])
        for i, n in enumerate(nics):
            with self.subTest(nic=i):
                self.assertTrue(n["rdma"])
                self.assertEqual(n["vendor_id"], "0x15b3")
                self.assertEqual(n["os_devices"], [{"name": f"mlx5_{i}", "type": "openfabrics"},
                                                   {"name": f"eth{i + 2}", "type": "network"}])
                self.assertEqual(n["numa_node"], 0 if i < 2 else 1)
                # The transpose of the GPUs' view.
                self.assertEqual(n["gpu_closeness"], [g["nic_closeness"][i] for g in self.doc["gpus"]])


class SubNumaJson(unittest.TestCase):
    def test_package_closeness_and_gpu_without_numa_node(self):
        d = topo_json("--xml", SNC)
        self.assertEqual(len(d["numa_nodes"]), 2)
        self.assertEqual([g["numa_node"] for g in d["gpus"]], [0, -1])
        self.assertEqual([g["nic_closeness"] for g in d["gpus"]], [["package"], ["package"]])


class ThisMachine(unittest.TestCase):
    def test_json_describes_this_machine(self):
        d = topo_json()
        self.assertEqual(d["source"], "this machine")
        self.assertGreaterEqual(d["pus"], 1)
        self.assertGreaterEqual(d["cores"], 1)
        self.assertGreaterEqual(len(d["numa_nodes"]), 1)
        self.assertEqual(sum(n["cores"] for n in d["numa_nodes"]), d["cores"])
        # Every CPU this process may run on is one kumi sees (hwloc drops only those outside the
        # cgroup's cpuset, where no affinity can point).
        seen = {c for n in d["numa_nodes"] for c in expand(n["cpus"])}
        self.assertEqual(len(seen), d["pus"])
        self.assertLessEqual(set(os.sched_getaffinity(0)), seen)
        for g in d["gpus"]:
            self.assertEqual(len(g["nic_closeness"]), len(d["nics"]))
        for key in ("hostname", "packages", "caches", "pci_devices", "gpus", "nics", "memory_bytes"):
            self.assertIn(key, d)

    def test_text_summary(self):
        r = topo()
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertTrue(r.stdout.startswith("Machine: "), r.describe())
        for part in ("NUMA node", "PCI devices:", "GPUs:", "NICs:"):
            self.assertIn(part, r.stdout, r.describe())


def expand(cpulist):
    out = []
    for item in filter(None, cpulist.split(",")):
        lo, _, hi = item.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


class BindPreview(unittest.TestCase):
    def test_numa_preview_on_fixture(self):
        r = topo("--xml", TWO_SOCKET, "--bind-preview", 8, "--bind", "numa")
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertIn("local rank 0/8: numa node 0 (slice 1/4) -> cpus 0-5,48-53", r.stdout)
        self.assertIn("local rank 7/8: numa node 1 (slice 4/4) -> cpus 42-47,90-95", r.stdout)

    def test_device_preview_json_uses_kumi_bind(self):
        d = topo_json("--xml", TWO_SOCKET, "--bind-preview", 8, env=kt.clean_env(KUMI_BIND="device"))
        self.assertEqual(d["mode"], "device")
        self.assertEqual([r["gpu"] for r in d["ranks"]], list(range(8)))
        self.assertEqual([r["cpus"] for r in d["ranks"]], ["0-23,48-71"] * 4 + ["24-47,72-95"] * 4)

    def test_device_without_gpus_falls_back_to_numa(self):
        d = topo_json("--synthetic", "pack:2 numa:1 core:4 pu:2", "--bind-preview", 2, "--bind", "device")
        self.assertEqual([(r["mode"], r["numa_node"], r["cpus"]) for r in d["ranks"]],
                         [("numa", 0, "0-7"), ("numa", 1, "8-15")])
        self.assertIn("no GPU", d["ranks"][0]["note"])


class BadArguments(unittest.TestCase):
    def check(self, args, message, env=None):
        r = topo(*args, env=env)
        self.assertEqual(r.returncode, 2, r.describe())
        self.assertIn(message, r.stderr, r.describe())
        self.assertEqual(r.stdout, "", r.describe())

    def test_unknown_option(self):
        self.check(["--frobnicate"], "unknown argument '--frobnicate'")

    def test_missing_value(self):
        self.check(["--xml"], "--xml needs a value")

    def test_exclusive_sources(self):
        self.check(["--xml", TWO_SOCKET, "--synthetic", "pack:1 pu:1"], "exclusive")

    def test_bad_local_size(self):
        self.check(["--bind-preview", "zero", "--bind", "numa"], "not 'zero'")

    def test_bad_mode(self):
        self.check(["--bind-preview", "2", "--bind", "sockets"],
                   "--bind='sockets' is not a binding mode: use off, numa or device")

    def test_bad_kumi_bind(self):
        self.check(["--bind-preview", "2"], "KUMI_BIND='cores' is not a binding mode",
                   env=kt.clean_env(KUMI_BIND="cores"))

    def test_bind_without_preview(self):
        self.check(["--bind", "numa"], "--bind only applies to --bind-preview")

    def test_missing_xml_file(self):
        self.check(["--xml", "/nonexistent.xml"], "cannot open hwloc XML file '/nonexistent.xml'")

    def test_bad_synthetic(self):
        self.check(["--synthetic", "bogus:3"], "'bogus:3' is not an hwloc synthetic topology")

    def test_help(self):
        r = topo("--help")
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertIn("--bind-preview", r.stdout)


class Fixtures(unittest.TestCase):
    def test_committed_fixtures_match_the_generator(self):
        r = kt.run([sys.executable, os.path.join(kt.source_dir(), "tests", "topology", "make_fixture.py"),
                    "--check"], timeout=60)
        self.assertEqual(r.returncode, 0, r.describe())


if __name__ == "__main__":
    unittest.main()
