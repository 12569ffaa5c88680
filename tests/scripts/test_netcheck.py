"""kumi-netcheck end to end.

On loopback (kumirun --nodes simulates hosts): the outputs. A real Prometheus Pushgateway and
Prometheus server (Debian's packages, started here on 127.0.0.1 ports) receive and scrape the
metrics, and a PromQL query over Prometheus's HTTP API returns one bandwidth series per directed
node pair. Bad input: an unreachable Pushgateway, a corrupt baseline, a budget smaller than a round
each give a clear message while the metrics file and the report are still written.

On the virtual cluster (tests/cluster/vcluster.py, 5 nodes, 1 Gbit/s links): node 3's link slowed
to 100 Mbit/s and the pair node0 <-> node1 to 250 Mbit/s; netcheck must name exactly those two,
exit 1, and draw the report image. A healthy cluster exits 0 with no finding. Skipped, with the
reason printed, only where network namespaces cannot be made."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

SOURCE = os.environ.get("KUMI_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("KUMI_BUILD_DIR")
if not BUILD:
    raise RuntimeError("KUMI_BUILD_DIR is not set: run through ctest, or KUMI_BUILD_DIR=build python3 -m unittest ...")
sys.path.insert(0, os.path.join(SOURCE, "tests", "cluster"))
import vcluster  # noqa: E402

NETCHECK = os.path.join(BUILD, "kumi-netcheck")
KUMIRUN = os.path.join(BUILD, "kumirun")
TOOLS_PYTHON = os.environ.get("KUMI_TOOLS_PYTHON") or os.path.join(SOURCE, ".venv-tools", "bin", "python3")
# Small measurements: the test is about what netcheck concludes, not about the numbers.
QUICK = ["--bytes", "1M", "--messages", "2", "--repeats", "3", "--latency-iters", "20", "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMI_")}
    env.update({"KUMI_TIMEOUT": "60", "KUMI_FLIGHT_RECORDER_DIR": "none"})
    env.update(extra)
    return env


def netcheck_local(np_, nodes, *args, timeout=180):
    # Stable node names (n0, n1, ...) across runs, as KUMI_NODE_NAME gives them in Kubernetes:
    # kumirun's simulated hosts are named after each job, and a baseline matches links by name.
    script = 'KUMI_NODE_NAME=n$KUMI_NODE_RANK exec "$0" "$@"'
    return subprocess.run([KUMIRUN, "-np", str(np_), "--nodes", str(nodes), "--no-prefix", "--", "sh", "-c", script,
                           NETCHECK, *args], env=clean_env(), capture_output=True, text=True, timeout=timeout)


def wait_http(url, timeout=30):
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


class Daemon:
    """A server started for one test on a loopback port, stopped whatever happens."""

    def __init__(self, argv, ready_url):
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_http(ready_url)
        except OSError:
            self.stop()
            raise AssertionError(f"{argv[0]} did not come up: {self.proc.stderr.read()[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


class Outputs(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="kumi-netcheck-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_help_and_bad_option(self):
        r = subprocess.run([NETCHECK, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--pushgateway", r.stdout)
        r = subprocess.run([NETCHECK, "--budget", "soon"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--budget: 'soon' is not a duration", r.stderr)

    def test_prometheus_receives_and_answers(self):
        for tool in ("prometheus", "prometheus-pushgateway"):
            self.assertTrue(shutil.which(tool), f"{tool} is not installed: bash scripts/setup-deps.sh installs it")
        gw_port, prom_port = free_port(), free_port()
        gw = Daemon(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{gw_port}"],
                    f"http://127.0.0.1:{gw_port}/-/ready")
        self.addCleanup(gw.stop)
        with open(self.path("prometheus.yml"), "w") as f:
            f.write(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: pushgateway\n"
                    f"    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{gw_port}']\n")
        prom = Daemon(["prometheus", f"--config.file={self.path('prometheus.yml')}",
                       f"--storage.tsdb.path={self.path('tsdb')}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                      f"http://127.0.0.1:{prom_port}/-/ready")
        self.addCleanup(prom.stop)
        r = netcheck_local(4, 4, *QUICK, "--allreduce-sizes", "64K", "--algos", "ring",
                           "--pushgateway", f"http://127.0.0.1:{gw_port}", "--group", "cluster=test/a",
                           "--metrics-file", self.path("kumi.prom"), "--json", self.path("report.json"))
        self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)  # loopback may look uneven: findings allowed
        with open(self.path("kumi.prom")) as f:
            text = f.read()
        self.assertEqual(text.count("kumi_netcheck_p2p_bandwidth_bytes_per_second{"), 12, text)
        self.assertIn('kumi_netcheck_allreduce_busbw_bytes_per_second{algorithm="ring",size="65536"}', text)
        query = "count(kumi_netcheck_p2p_bandwidth_bytes_per_second{job=\"kumi-netcheck\",cluster=\"test/a\"})"
        url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        end, got = time.monotonic() + 40, None
        while time.monotonic() < end:
            reply = json.loads(wait_http(url))
            result = reply["data"]["result"]
            if result:
                got = float(result[0]["value"][1])
                if got == 12:
                    break
            time.sleep(1)
        self.assertEqual(got, 12, "Prometheus never returned the 12 directed pairs of 4 nodes")
        reply = json.loads(wait_http(f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": "kumi_netcheck_node_healthy"})))
        self.assertEqual(len(reply["data"]["result"]), 4, reply)

    def test_unreachable_pushgateway_still_writes_metrics(self):
        r = netcheck_local(2, 2, *QUICK, "--allreduce-sizes", "none", "--pushgateway",
                           f"http://127.0.0.1:{free_port()}", "--metrics-file", self.path("kumi.prom"))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("--pushgateway: pushgateway 127.0.0.1:", r.stderr)
        self.assertIn("cannot connect", r.stderr)
        with open(self.path("kumi.prom")) as f:
            self.assertIn("kumi_netcheck_p2p_bandwidth_bytes_per_second{", f.read())

    def test_baseline_round_trip_and_corrupt_baseline(self):
        r = netcheck_local(2, 2, *QUICK, "--allreduce-sizes", "none", "--save-baseline", self.path("base.txt"))
        self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)
        with open(self.path("base.txt")) as f:
            lines = [l for l in f if not l.startswith("#")]
        self.assertEqual(len(lines), 2, lines)  # both directions of the one pair
        # The baseline's use, not detection, is under test: findings only for collapses (bandwidth
        # down 95%, latency up 100 ms), which a loaded 2-core machine does not produce.
        r = netcheck_local(2, 2, *QUICK, "--allreduce-sizes", "none", "--baseline", self.path("base.txt"),
                           "--min-drop", "0.95", "--latency-floor-us", "100000", "--json", self.path("r.json"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(self.path("r.json")) as f:
            self.assertEqual({l["expected_from"] for l in json.load(f)["links"]}, {"baseline"})
        with open(self.path("bad.txt"), "w") as f:
            f.write("# kumi-netcheck baseline v1\nnode-a node-b zero tcp 1e9 1e-5\n")
        r = netcheck_local(2, 2, *QUICK, "--allreduce-sizes", "none", "--baseline", self.path("bad.txt"),
                           "--metrics-file", self.path("kumi.prom"))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn(f"{self.path('bad.txt')}:2: rail 'zero' is not a small integer", r.stderr)
        with open(self.path("kumi.prom")) as f:
            self.assertIn("kumi_netcheck_exit_code 2", f.read())

    def test_two_rails_and_the_intra_node_link(self):
        # Two ranks per node: local rank l measures rail l, both rails at once; local ranks 0 and
        # 1 also measure their node's shared-memory link. (Findings are allowed: on 2 cores the
        # ranks of all "nodes" share the CPUs, and loopback numbers swing.)
        r = netcheck_local(4, 2, *QUICK, "--allreduce-sizes", "none", "--json", self.path("r.json"))
        self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)
        with open(self.path("r.json")) as f:
            links = json.load(f)["links"]
        tcp = sorted((l["src_node"], l["dst_node"], l["rail"]) for l in links if l["transport"] == "tcp")
        self.assertEqual(tcp, [("n0", "n1", 0), ("n0", "n1", 1), ("n1", "n0", 0), ("n1", "n0", 1)])
        shm = sorted((l["src_node"], l["dst_node"], l["rail"]) for l in links if l["transport"] == "shm")
        self.assertEqual(shm, [("n0", "n0", 0), ("n0", "n0", 0), ("n1", "n1", 0), ("n1", "n1", 0)])
        self.assertTrue(all(l["bandwidth_bytes_per_second"] > 0 and l["latency_seconds"] > 0 for l in links))
        # Every sample is in the report, and the median is the median of them.
        for l in links:
            self.assertEqual(len(l["bandwidth_samples"]), 3)
            self.assertAlmostEqual(sorted(l["bandwidth_samples"])[1], l["bandwidth_bytes_per_second"], delta=1)

    def test_budget_smaller_than_a_round(self):
        r = netcheck_local(3, 3, *QUICK, "--allreduce-sizes", "64K", "--budget", "0.001s",
                           "--metrics-file", self.path("kumi.prom"))
        self.assertIn(r.returncode, (0, 1), r.stdout + r.stderr)
        self.assertIn("the budget is smaller than one round", r.stdout)
        self.assertIn("budget reached after round 1 of 3", r.stdout)
        with open(self.path("kumi.prom")) as f:
            text = f.read()
        self.assertIn("kumi_netcheck_complete 0", text)
        self.assertEqual(text.count("kumi_netcheck_p2p_bandwidth_bytes_per_second{"), 2, text)  # round 1: one pair


CAN, WHY = vcluster.can_create_namespaces()


@unittest.skipUnless(CAN, f"network namespaces: {WHY}")
class VirtualCluster(unittest.TestCase):
    def run_netcheck(self, vc, json_path, ranks_per_node=1):
        # All "nodes" share this machine's 2 cores: a round trip waits tens of microseconds more
        # whenever its rank is descheduled (seen: 49 us against 13 us, once in 20 runs), which on
        # separate machines would be a finding. The floor keeps those out; the latency rules
        # themselves are unit-tested (Findings.HighLatencyAlone).
        res = vc.launch([NETCHECK, *QUICK, "--latency-floor-us", "200", "--allreduce-sizes", "1M", "--algos", "ring",
                         "--json", json_path],
                        ranks_per_node=ranks_per_node, timeout=300, env={"KUMI_TIMEOUT": "120"})
        self.assertTrue(os.path.exists(json_path), res.describe())
        with open(json_path) as f:
            return res, json.load(f)

    def test_healthy_cluster_has_no_findings(self):
        with tempfile.TemporaryDirectory() as d, vcluster.VirtualCluster(nodes=4, rate="1gbit") as vc:
            res, report = self.run_netcheck(vc, os.path.join(d, "r.json"))
            self.assertEqual(res.exit_status, 0, res.describe())
            self.assertEqual(report["findings"], [])
            self.assertEqual(len(report["links"]), 12, "4 nodes: 6 pairs, both directions")
            self.assertEqual([r["algorithm"] for r in report["allreduce"]], ["auto", "ring"])

    def test_slow_node_and_slow_pair_are_named(self):
        with tempfile.TemporaryDirectory() as d, vcluster.VirtualCluster(nodes=5, rate="1gbit") as vc:
            vc.set_rate(3, "100mbit")
            vc.set_pair_rate(0, 1, "250mbit")
            res, report = self.run_netcheck(vc, os.path.join(d, "r.json"))
            self.assertEqual(res.exit_status, 1, res.describe())
            found = sorted((f["scope"], f.get("node"), f.get("peer")) for f in report["findings"])
            names = [vc.hostname(i) for i in range(5)]
            self.assertEqual(found, sorted([("node", names[3], None), ("pair", names[0], names[1])]),
                             json.dumps(report["findings"], indent=1))
            # The picture of the run: a PNG with the matrix and the sweep.
            png = os.path.join(d, "r.png")
            # Run as a file: the module needs only matplotlib, not the package's native part.
            plot = subprocess.run([TOOLS_PYTHON, os.path.join(SOURCE, "python", "kumi", "netcheck_plot.py"),
                                   os.path.join(d, "r.json"), png], capture_output=True, text=True, timeout=120)
            self.assertEqual(plot.returncode, 0, plot.stderr)
            with open(png, "rb") as f:
                head = f.read(8)
            self.assertEqual(head, b"\x89PNG\r\n\x1a\n")
            self.assertGreater(os.path.getsize(png), 10000)


if __name__ == "__main__":
    unittest.main()
