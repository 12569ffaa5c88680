"""The virtual cluster (tests/cluster/vcluster.py): nodes as network namespaces joined by a bridge,
shaped with tbf. Checks reachability by hostname and isolation from the host, the rate limit in
both directions, teardown on every exit path and sweep(), and kumi jobs across nodes.

Only loopback addresses of the root namespace and addresses inside namespaces the tests create
are used. Skipped, with the reason printed, only where network namespaces cannot be created
(not root, no iproute2, no veth/bridge/tbf)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import unittest

SOURCE = os.environ.get("KUMI_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("KUMI_BUILD_DIR")
if not BUILD:
    raise RuntimeError("KUMI_BUILD_DIR is not set: run these tests through ctest, or by hand: cd tests/scripts && "
                       "KUMI_BUILD_DIR=/path/to/build KUMI_SOURCE_DIR=/path/to/kumi python3 -m unittest -v test_vcluster")
sys.path.insert(0, os.path.join(SOURCE, "tests", "cluster"))
import vcluster  # noqa: E402

CAN, WHY = vcluster.can_create_namespaces()
if not CAN:
    print(f"test_vcluster: skipped: {WHY}", file=sys.stderr)

# Names of the clusters made here start with this, so that the final check looks only at them.
RUN_TAG = f"t{os.getpid()}"
_counter = 0


def fresh_name(what: str) -> str:
    global _counter
    _counter += 1
    return f"{RUN_TAG}-{what}{_counter}"


def ours() -> list:
    """kumi-vc namespaces, netns dirs and records of this test run that still exist."""
    left = [n for n in vcluster.list_namespaces() if n.startswith(vcluster.PREFIX + RUN_TAG)]
    for d in (vcluster.NETNS_ETC, vcluster.RUN_DIR):
        try:
            left += [os.path.join(d, n) for n in os.listdir(d) if n.startswith((vcluster.PREFIX + RUN_TAG, RUN_TAG))]
        except FileNotFoundError:
            pass
    return left


def gone(pid: int) -> bool:
    """True when pid no longer exists (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


# A TCP echo server and client, and a bulk receiver and sender, run inside the namespaces.
ECHO_SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4); print("ready", flush=True)
    while True:
        c, peer = s.accept()
        data = c.recv(1024)
        c.sendall(b"echo from %s to %s: " % (socket.gethostbyname(sys.argv[1]).encode(), peer[0].encode()) + data)
        c.close()
""")
CONNECT = textwrap.dedent("""
    import json, socket, sys
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
        c.sendall(b"hello"); print(json.dumps({"ok": c.recv(1024).decode()}))
    except OSError as e:
        print(json.dumps({"error": e.__class__.__name__, "errno": e.errno, "text": str(e)}))
""")
BULK_RECV = textwrap.dedent("""
    import json, socket, sys, time
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("ready", flush=True)
    c, _ = s.accept(); n = 0; t0 = t1 = None; buf = bytearray(1 << 20)
    while True:
        k = c.recv_into(buf)
        if not k: break
        if t0 is None: t0 = time.monotonic()
        n += k; t1 = time.monotonic()
    c.sendall(b"k"); c.close()
    print(json.dumps({"bytes": n, "seconds": t1 - t0}), flush=True)
""")
BULK_SEND = textwrap.dedent("""
    import socket, sys
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
    total = int(sys.argv[3]); chunk = b"x" * (1 << 20); sent = 0
    while sent < total:
        k = min(len(chunk), total - sent); c.sendall(chunk[:k]); sent += k
    c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
""")


def start_ready(vc, node, code, *args):
    """Starts a python server in node's namespace and waits for its "ready" line."""
    p = vc.run(node, [sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
               text=True)
    line = p.stdout.readline().strip()
    if line != "ready":
        p.kill()
        raise AssertionError(f"server on node {node} did not start: {line!r} {p.stderr.read()}")
    return p


def host_ipv4_addresses() -> list:
    """The root namespace's own non-loopback IPv4 addresses (read only)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], stdout=subprocess.PIPE, text=True).stdout
    return [a for a in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out) if not a.startswith("127.")]


@unittest.skipUnless(CAN, f"network namespaces cannot be created here: {WHY}")
class VirtualClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        removed = vcluster.sweep()  # leftovers of an earlier run that crashed
        if removed:
            print(f"test_vcluster: swept stale clusters {removed}", file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        left = ours()
        names = set()
        for path in left:
            base = os.path.basename(path)
            names.add(base[:-len(".json")] if base.endswith(".json") else vcluster._cluster_of(base))
        for name in names - {None}:
            vcluster.destroy(name)
        assert not left, f"the tests left these behind (now removed): {left}"

    def tearDown(self):
        self.assertEqual(ours(), [], "a test left a cluster behind")

    # a) reachability by hostname, isolation from the host --------------------------------------
    def test_nodes_reach_each_other_by_hostname_but_not_the_host(self):
        with open("/etc/hosts") as f:
            hosts_before = f.read()
        # A listener on the root namespace's loopback: the nodes must not reach it.
        with socket.socket() as root_listener:
            root_listener.bind(("127.0.0.1", 0))
            root_listener.listen(1)
            root_port = root_listener.getsockname()[1]
            with vcluster.VirtualCluster(nodes=3, rate=None, name=fresh_name("reach")) as vc:
                self.assertEqual(len({vc.address(i) for i in range(3)}), 3)
                # Hostnames resolve through /etc/netns/<ns>/hosts, in every node.
                for i in range(3):
                    r = vc.run_wait(i, ["getent", "hosts", "node0", "node1", "node2"])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    for j in range(3):
                        self.assertRegex(r.stdout, rf"(?m)^{re.escape(vc.address(j))}\s+node{j}\b")
                # The host's own /etc/hosts is untouched.
                with open("/etc/hosts") as f:
                    self.assertEqual(f.read(), hosts_before)
                # TCP echo between every ordered pair, addressed by hostname.
                servers = [start_ready(vc, i, ECHO_SERVER, vc.hostname(i), 7000) for i in range(3)]
                for a in range(3):
                    for b in range(3):
                        if a == b:
                            continue
                        r = vc.run_wait(a, [sys.executable, "-c", CONNECT, vc.hostname(b), "7000"])
                        reply = json.loads(r.stdout)
                        self.assertEqual(reply.get("ok"), f"echo from {vc.address(b)} to {vc.address(a)}: hello",
                                         f"node{a} -> node{b}: {reply} {r.stderr}")
                # A node's loopback is its own: the root namespace's 127.0.0.1 listener is not there.
                r = vc.run_wait(0, [sys.executable, "-c", CONNECT, "127.0.0.1", str(root_port)])
                self.assertEqual(json.loads(r.stdout).get("error"), "ConnectionRefusedError", r.stdout)
                # The host's own addresses have no route from a node.
                route = vc.run_wait(0, ["ip", "-4", "route", "show"]).stdout
                self.assertNotIn("default", route)
                for addr in host_ipv4_addresses()[:3]:
                    with self.subTest(host_address=addr):
                        r = vc.run_wait(0, [sys.executable, "-c", CONNECT, addr, str(root_port)])
                        reply = json.loads(r.stdout)
                        self.assertIn("error", reply, f"node0 reached the host's address {addr}")
                        self.assertEqual(reply["errno"], 101, reply)  # ENETUNREACH
                for s in servers:
                    s.kill()
                    s.wait()

    # b) the rate limit -----------------------------------------------------------------------
    def transfer_mbit(self, vc, src, dst, port, nbytes=30 << 20):
        recv = start_ready(vc, dst, BULK_RECV, port)
        send = vc.run_wait(src, [sys.executable, "-c", BULK_SEND, vc.hostname(dst), str(port), str(nbytes)],
                           timeout=60)
        self.assertEqual(send.returncode, 0, send.stderr)
        out, err = recv.communicate(timeout=30)
        m = json.loads(out)
        self.assertEqual(m["bytes"], nbytes, err)
        return m["bytes"] * 8 / m["seconds"] / 1e6

    def test_tbf_limits_both_directions(self):
        rate = 200  # Mbit/s
        with vcluster.VirtualCluster(nodes=2, rate=f"{rate}mbit", name=fresh_name("rate")) as vc:
            for i in range(2):
                q = vc.qdiscs(i)
                for end in ("node", "hub"):
                    self.assertRegex(q[end], r"tbf .*rate 200Mbit", f"node {i} {end} end: {q[end]}")
            measured = {}
            measured["node0->node1"] = self.transfer_mbit(vc, 0, 1, 5001)
            measured["node1->node0"] = self.transfer_mbit(vc, 1, 0, 5002)
            # Without node0's own (egress) shaper, node1's hub end still limits what node1 receives.
            vc.set_rate(0, None, side="node")
            measured["node0->node1, hub end only"] = self.transfer_mbit(vc, 0, 1, 5003)
            # And without any shaper the same transfer is much faster: the limit is tbf's doing.
            vc.set_rate(1, None, side="hub")
            unshaped = self.transfer_mbit(vc, 0, 1, 5004)
            print(f"\ntest_vcluster: tbf {rate}mbit measured (TCP payload Mbit/s): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in measured.items()) + f"; unshaped {unshaped:.0f}",
                  file=sys.stderr)
            for what, mbit in measured.items():
                self.assertGreaterEqual(mbit, 0.5 * rate, what)
                self.assertLessEqual(mbit, 1.15 * rate, what)
            self.assertGreater(unshaped, 1.5 * rate)

    # c) teardown and sweep -------------------------------------------------------------------
    def test_teardown_after_exception_in_with_body(self):
        name = fresh_name("exc")
        pids = []
        with self.assertRaisesRegex(RuntimeError, "boom"):
            with vcluster.VirtualCluster(nodes=2, rate="1gbit", name=name) as vc:
                nss = [vc.hub_ns] + [vc.namespace(i) for i in range(2)]
                self.assertTrue(set(nss) <= set(vcluster.list_namespaces()))
                self.assertTrue(os.path.isfile(f"/etc/netns/{vc.namespace(1)}/hosts"))
                pids.append(vc.run(0, ["sleep", "300"]).pid)
                # One that escapes its session (and its Popen): found through `ip netns pids`.
                r = vc.run_wait(1, ["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"])
                pids.append(int(r.stdout.strip()))
                for pid in pids:
                    self.assertFalse(gone(pid))
                raise RuntimeError("boom")
        left = set(nss) & set(vcluster.list_namespaces())
        self.assertEqual(left, set(), "namespaces left")
        for ns in nss:
            self.assertFalse(os.path.exists(f"/etc/netns/{ns}"))
        self.assertFalse(os.path.exists(f"{vcluster.RUN_DIR}/{name}.json"))
        for pid in pids:
            self.assertTrue(wait_gone(pid), f"process {pid} survived the teardown")
        self.assertTrue(vc.closed)

    def _owner_script(self, name):
        return textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {os.path.join(SOURCE, 'tests', 'cluster')!r})
            import vcluster
            vc = vcluster.VirtualCluster(nodes=2, rate="1gbit", name={name!r}).create()
            p = vc.run(0, ["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"],
                       stdout=__import__("subprocess").PIPE, text=True)
            print("up", p.stdout.readline().strip(), flush=True)
            time.sleep(300)
        """)

    def test_sigterm_tears_down(self):
        name = fresh_name("term")
        owner = subprocess.Popen([sys.executable, "-c", self._owner_script(name)], stdout=subprocess.PIPE, text=True)
        line = owner.stdout.readline().split()
        self.assertEqual(line[:1], ["up"], "the owner process did not build its cluster")
        sleeper = int(line[1])
        self.assertIn(f"{vcluster.PREFIX}{name}-n0", vcluster.list_namespaces())
        owner.send_signal(signal.SIGTERM)
        self.assertEqual(owner.wait(timeout=20), -signal.SIGTERM)
        owner.stdout.close()
        self.assertEqual([n for n in vcluster.list_namespaces() if vcluster._cluster_of(n) == name], [])
        self.assertTrue(wait_gone(sleeper))

    def test_sweep_removes_a_cluster_whose_owner_is_gone(self):
        leaked = fresh_name("leak")
        with vcluster.VirtualCluster(nodes=1, rate=None, name=fresh_name("live")) as live:
            owner = subprocess.Popen([sys.executable, "-c", self._owner_script(leaked)], stdout=subprocess.PIPE,
                                     text=True)
            line = owner.stdout.readline().split()
            self.assertEqual(line[:1], ["up"], "the owner process did not build its cluster")
            sleeper = int(line[1])
            # Holding the sweep lock (reentrant in this process) from the kill to our sweep keeps
            # a test run sweeping at the same time from removing the leaked cluster first.
            with vcluster._Lock():
                owner.kill()  # SIGKILL: no chance to clean up
                owner.wait()
                owner.stdout.close()
                leaked_ns = [n for n in vcluster.list_namespaces() if vcluster._cluster_of(n) == leaked]
                self.assertEqual(len(leaked_ns), 3, "the killed owner's cluster should still be there")
                self.assertTrue(os.path.isdir(f"/etc/netns/{vcluster.PREFIX}{leaked}-n1"))
                self.assertFalse(gone(sleeper))
                self.assertFalse(vcluster.clusters()[leaked]["alive"])
                removed = vcluster.sweep()
            self.assertIn(leaked, removed)
            self.assertNotIn(live.name, removed, "sweep removed a cluster whose owner is alive")
            self.assertEqual([n for n in vcluster.list_namespaces() if vcluster._cluster_of(n) == leaked], [])
            self.assertFalse(os.path.exists(f"/etc/netns/{vcluster.PREFIX}{leaked}-n0"))
            self.assertFalse(os.path.exists(f"{vcluster.RUN_DIR}/{leaked}.json"))
            self.assertTrue(wait_gone(sleeper))
            self.assertIn(live.namespace(0), vcluster.list_namespaces())
            self.assertEqual(live.run_wait(0, ["true"]).returncode, 0)

    # d) kumi jobs ----------------------------------------------------------------------------
    def test_launch_sets_the_rank_environment(self):
        with vcluster.VirtualCluster(nodes=2, rate=None, name=fresh_name("env")) as vc:
            res = vc.launch(["sh", "-c", "env | grep ^KUMI_ | sort"], [2, 1], env={"KUMI_EXTRA": "x"}, timeout=30)
            self.assertTrue(res.ok, res.describe())
            envs = [dict(l.split("=", 1) for l in r.stdout.split()) for r in res]
            want = [(0, 0, 0, 2), (1, 0, 1, 2), (2, 1, 0, 1)]  # rank, node, local rank, local size
            for rank, node, local, lsize in want:
                e = envs[rank]
                self.assertEqual(e["KUMI_RANK"], str(rank))
                self.assertEqual(e["KUMI_WORLD_SIZE"], "3")
                self.assertEqual(e["KUMI_LOCAL_RANK"], str(local))
                self.assertEqual(e["KUMI_LOCAL_SIZE"], str(lsize))
                self.assertEqual(e["KUMI_HOSTID"], f"node{node}")
                self.assertEqual(e["KUMI_STORE"], envs[0]["KUMI_STORE"])
                self.assertEqual(e["KUMI_JOB_ID"], envs[0]["KUMI_JOB_ID"])
                self.assertEqual(e["KUMI_STORE_SERVE"], "1" if rank == 0 else "0")
                self.assertEqual(e["KUMI_EXTRA"], "x")
            self.assertRegex(envs[0]["KUMI_STORE"], r"^node0:\d+$")
            again = vc.launch(["sh", "-c", "echo $KUMI_JOB_ID"], 1, timeout=30)
            self.assertNotEqual(again[0].stdout.strip(), envs[0]["KUMI_JOB_ID"], "job ids must be unique")

    def test_launch_stops_the_others_when_a_rank_fails_and_on_timeout(self):
        with vcluster.VirtualCluster(nodes=2, rate=None, name=fresh_name("fail")) as vc:
            t = time.monotonic()
            res = vc.launch(["sh", "-c", 'if [ "$KUMI_RANK" = 2 ]; then exit 3; fi; exec sleep 60'], 2,
                            timeout=30, grace=0.5)
            self.assertLess(time.monotonic() - t, 10)
            self.assertFalse(res.ok)
            self.assertFalse(res.timed_out)
            self.assertEqual(res.first_failed, 2)
            self.assertEqual(res.exit_status, 3)
            self.assertEqual([r.returncode for r in res], [-signal.SIGTERM, -signal.SIGTERM, 3, -signal.SIGTERM])
            t = time.monotonic()
            res = vc.launch(["sleep", "60"], 1, timeout=1)
            self.assertLess(time.monotonic() - t, 8)
            self.assertTrue(res.timed_out)
            self.assertEqual(res.exit_status, 124)

    def test_a_host_cut_off_is_found_by_heartbeats(self):
        # Node 2's link goes down mid-loop: no FIN or RST ever reaches the others, so only the
        # heartbeats (KUMI_HEARTBEAT=1: ~4 s) can tell them, long before KUMI_TIMEOUT=60.
        prog = os.path.join(BUILD, "tests", "reliability_scenarios")
        with vcluster.VirtualCluster(nodes=3, rate=None, name=fresh_name("cut")) as vc:
            cut = {}

            def on_line(rank, stream, line):
                if rank == 2 and line.startswith("LOOPING") and not cut:
                    time.sleep(0.5)
                    subprocess.run(["ip", "-n", vc.namespace(2), "link", "set", vc.node_ifname, "down"], check=True)
                    cut["at"] = time.time()

            res = vc.launch([prog, "loop", "40"], 1, env={"KUMI_TIMEOUT": "60", "KUMI_HEARTBEAT": "1"}, timeout=90,
                            grace=15, on_line=on_line)
            self.assertIn("at", cut, res.describe())
            for rank in (0, 1):
                out = res[rank].stdout
                self.assertNotIn("NO ERROR SEEN", out, res.describe())
                m = re.search(r"^RESULT loop (\d+) [^:]*: (.*)$", out, re.M)
                self.assertIsNotNone(m, f"rank {rank} reported no failure:{res.describe()}")
                self.assertNotEqual(m.group(1), "0", res.describe())
                self.assertRegex(m.group(2), r"\brank 2\b", f"rank {rank} does not name rank 2:{res.describe()}")
                failed_at = float(re.search(r"^FAILED_AT ([\d.]+)", out, re.M).group(1))
                print(f"rank {rank}: failed {failed_at - cut['at']:.1f} s after the cut", file=sys.stderr)
                self.assertLess(failed_at - cut["at"], 15, f"rank {rank}:{res.describe()}")
            self.assertTrue(any("no heartbeat answered" in res[r].stdout for r in (0, 1)), res.describe())

    def run_mp_collectives(self, ranks_per_node):
        prog = os.path.join(BUILD, "tests", "test_mp_collectives")
        self.assertTrue(os.access(prog, os.X_OK), f"{prog} is not built")
        with vcluster.VirtualCluster(nodes=2, rate="1gbit", name=fresh_name("job")) as vc:
            res = vc.launch([prog], ranks_per_node, env={"KUMI_TIMEOUT": "60", "KUMI_DEBUG": "INFO"}, timeout=150)
            self.assertTrue(res.ok, res.describe())
            for rank, r in enumerate(res):
                self.assertRegex(r.stdout, r"\[  PASSED  \] \d+ tests", f"rank {rank}:\n{r.stdout[-3000:]}")
                self.assertNotIn("FAILED", r.stdout)
                # Each rank talked from its own node's address: the job really crossed the bridge.
                log = r.stdout + r.stderr
                self.assertIn(f"using local address {vc.address(res.nodes[rank])} ", log, log[-3000:])
            self.assertIn(f"serving the rendezvous store at {vc.address(0)}:", res[0].stdout + res[0].stderr)

    def test_mp_collectives_2_nodes_x_2_ranks(self):
        self.run_mp_collectives(2)

    def test_mp_collectives_uneven_2_and_1(self):
        self.run_mp_collectives([2, 1])


    # e) node awareness: the planner picks the hierarchical allreduce across nodes ---------------
    def test_planner_picks_hierarchical_across_nodes_and_results_are_right(self):
        # Which algorithm the cost model picks with the cluster's own link model (and that every
        # element is right), not how fast: speed is benchmarks/vcluster_compare.py's to measure.
        bench = os.path.join(BUILD, "kumi-bench")
        if not os.access(bench, os.X_OK):
            self.skipTest(f"{bench} is not built (KUMI_BUILD_BENCHMARKS=OFF)")
        tuning = os.path.join(SOURCE, "benchmarks", "clusters", "vcluster-2x2-1gbit.conf")
        env = {"KUMI_TIMEOUT": "60", "KUMI_DEBUG": "INFO", "KUMI_TUNING_FILE": tuning}
        with vcluster.VirtualCluster(nodes=2, rate="1gbit", name=fresh_name("hier")) as vc:
            for counts in (2, [2, 1], [1, 3]):
                res = vc.launch([bench, "allreduce", "-b", "4M", "-e", "4M", "-n", "2", "-w", "1", "-c", "1"],
                                counts, env=env, timeout=150)
                self.assertTrue(res.ok, res.describe())
                log = res[0].stdout + res[0].stderr
                # Every candidate priced, the cheapest run.
                plan = re.search(r"plan allreduce 4 MiB on \d+ ranks, 2 host\(s\): (.*) -> (\w+)", log)
                self.assertIsNotNone(plan, log[-3000:])
                for algo in ("ring", "recursive_doubling", "hierarchical", "tree", "rabenseifner"):
                    self.assertIn(f"{algo} ", plan.group(1), log[-3000:])
                self.assertRegex(log, rf"allreduce count 1048576 on \d+ ranks: {plan.group(2)}", log[-3000:])
                if counts == 2:  # 2 x 2: the network crossed once per node, predicted 0.68x the ring
                    self.assertEqual(plan.group(2), "hierarchical", log[-3000:])
                self.assertIn("Out of bounds values : 0 OK", log, log[-3000:])
                # Two hosts in the world map; ranks of one node reach each other through shared
                # memory (every local peer), the others by TCP.
                self.assertIn("ready on 2 hosts", log, log[-3000:])
                everyone = "".join(r.stdout + r.stderr for r in res)
                self.assertRegex(everyone, r"shared memory with (\d+) of \1 local peers", everyone[-3000:])
            # Allgather goes hierarchical on even hosts; on uneven ones it is no candidate.
            for counts in (2, [2, 1]):
                res = vc.launch([bench, "allgather", "-b", "4M", "-e", "4M", "-n", "2", "-w", "1"],
                                counts, env=env, timeout=150)
                self.assertTrue(res.ok, res.describe())
                log = res[0].stdout + res[0].stderr
                ran = re.search(r"allgather count \d+ on \d+ ranks: (\w+)", log)
                self.assertIsNotNone(ran, log[-3000:])
                if counts == 2:
                    self.assertEqual(ran.group(1), "hierarchical", log[-3000:])
                else:
                    self.assertNotEqual(ran.group(1), "hierarchical", log[-3000:])
                    self.assertNotIn("hierarchical", re.search(r"plan allgather [^\n]*", log).group(0))
                self.assertIn("Out of bounds values : 0 OK", log, log[-3000:])


if __name__ == "__main__":
    unittest.main()
