"""Jobs formed without kumirun, the way a launcher or a Kubernetes manifest forms them: over IPv6
loopback, through a file store on a (here local) shared directory, and with an interface choice
that matches nothing. Only loopback addresses are used."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

BUILD = os.environ.get("KUMI_BUILD_DIR")
if not BUILD:
    raise RuntimeError("KUMI_BUILD_DIR is not set: run these tests through ctest")


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run_ranks(n, env_common, args, timeout=60):
    """Starts n ranks of kumi-bench with KUMI_RANK set; returns [(rc, output)]."""
    procs = []
    for r in range(n):
        env = dict(os.environ, **env_common, KUMI_RANK=str(r), KUMI_WORLD_SIZE=str(n))
        procs.append(subprocess.Popen([os.path.join(BUILD, "kumi-bench")] + args, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    out = []
    deadline = time.time() + timeout
    for p in procs:
        try:
            o, _ = p.communicate(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, o))
    return out


class NetworkTest(unittest.TestCase):
    BENCH = ["allreduce", "-b", "8", "-e", "1M", "-f", "16", "-n", "2", "-w", "1", "-c", "1"]

    def assert_all_ok(self, results):
        for r, (rc, out) in enumerate(results):
            self.assertEqual(rc, 0, f"rank {r} failed:\n{out}")
        self.assertIn("Out of bounds values : 0 OK", results[0][1])

    def test_ipv6_loopback_job(self):
        port = free_port(socket.AF_INET6, "::1")
        res = run_ranks(3, {"KUMI_STORE": f"[::1]:{port}", "KUMI_TIMEOUT": "30", "KUMI_DEBUG": "INFO"}, self.BENCH)
        self.assert_all_ok(res)
        # Peers listened on the IPv6 loopback too: the route toward the store decides.
        self.assertIn("listening on [::1]:", res[1][1])

    def test_file_store_job(self):
        d = tempfile.mkdtemp(prefix="kumi-filestore-")
        try:
            res = run_ranks(3, {"KUMI_STORE": f"file://{d}", "KUMI_SOCKET_IFNAME": "lo", "KUMI_TIMEOUT": "30"},
                            self.BENCH)
            self.assert_all_ok(res)
            self.assertTrue(any(n.startswith("k.") for n in os.listdir(d)), "no keys were written to the file store")
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_interface_that_matches_nothing(self):
        port = free_port()
        env = dict(os.environ, KUMI_RANK="0", KUMI_WORLD_SIZE="2", KUMI_STORE=f"127.0.0.1:{port}",
                   KUMI_SOCKET_IFNAME="=nosuch0", KUMI_TIMEOUT="5")
        p = subprocess.run([os.path.join(BUILD, "kumi-bench")] + self.BENCH, env=env, capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("KUMI_SOCKET_IFNAME='=nosuch0' matches no interface", p.stdout + p.stderr)

    def test_relative_file_store_path_is_refused(self):
        env = dict(os.environ, KUMI_RANK="0", KUMI_WORLD_SIZE="2", KUMI_STORE="file://relative/dir", KUMI_TIMEOUT="5")
        p = subprocess.run([os.path.join(BUILD, "kumi-bench")] + self.BENCH, env=env, capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("absolute path", p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
