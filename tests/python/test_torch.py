"""kumi as a torch.distributed backend (python/kumi/torch.py) with the installed torch (CPU):
every collective in 2 and 4 processes under kumirun, and DDP training runs for 200 steps on 2 and 4
processes that must print the same losses as backend "gloo" and end with the same parameters on
every rank, and FSDP2 (fully_shard) on CPU on 2 processes ending with gloo's shards. The test
fails, not skips, when torch is missing."""
import os
import re
import socket
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("KUMI_BUILD_DIR") or os.path.join(HERE, "..", "..", "build")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(np_, script, *args, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMI_")}
    env["PYTHONPATH"] = os.path.join(BUILD, "python") + os.pathsep + env.get("PYTHONPATH", "")
    env["KUMI_TIMEOUT"] = "120"
    env["TORCH_STORE_PORT"] = str(free_port())
    return subprocess.run([os.path.join(BUILD, "kumirun"), "-np", str(np_), "--", sys.executable, "-W", "ignore",
                           os.path.join(HERE, script), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


class TorchBackend(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise AssertionError(f"torch is not installed for {sys.executable}: {e}") from e

    def collectives(self, np_):
        res = run(np_, "torch_worker.py")
        out = res.stdout + res.stderr
        self.assertEqual(res.returncode, 0, out)
        ranks = sorted(int(m.group(1)) for m in re.finditer(rf"torch_worker ok (\d+) {np_}\b", res.stdout))
        self.assertEqual(ranks, list(range(np_)), out)

    def test_collectives_two_ranks(self):
        self.collectives(2)

    def test_collectives_four_ranks(self):
        self.collectives(4)

    def ddp(self, np_):
        runs = {}
        for backend in ("kumi", "gloo"):
            res = run(np_, "ddp_worker.py", backend, "200")
            self.assertEqual(res.returncode, 0, f"backend {backend}:\n" + res.stdout[-3000:] + res.stderr[-3000:])
            losses = {}
            for m in re.finditer(r"LOSS (\d+) (\S+)", res.stdout):
                losses.setdefault(int(m.group(1)), set()).add(float(m.group(2)))
            params = set(re.findall(r"PARAMS \d+ (\w+)", res.stdout))
            self.assertEqual(len(losses), 200, res.stdout[-2000:])
            self.assertTrue(all(len(v) == 1 for v in losses.values()), "every rank prints the same mean loss")
            self.assertEqual(len(params), 1, f"{backend}: ranks ended with different parameters: {params}")
            runs[backend] = ([next(iter(losses[s])) for s in range(200)], params)
        kumi_losses, gloo_losses = runs["kumi"][0], runs["gloo"][0]
        for step, (a, b) in enumerate(zip(kumi_losses, gloo_losses)):
            self.assertAlmostEqual(a, b, delta=1e-4 * max(1.0, abs(b)), msg=f"step {step}: kumi {a}, gloo {b}")
        self.assertLess(kumi_losses[-1], kumi_losses[0], "the model learns")

    def test_under_torchrun(self):
        # torchrun's own variables and store (env://), nothing kumi-specific in the script.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUMI_")}
        env["PYTHONPATH"] = os.path.join(BUILD, "python") + os.pathsep + env.get("PYTHONPATH", "")
        res = subprocess.run([sys.executable, "-W", "ignore", "-m", "torch.distributed.run", "--nproc-per-node", "3",
                              "--master-port", str(free_port()), os.path.join(HERE, "torchrun_worker.py")],
                             env=env, capture_output=True, text=True, timeout=180)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(sorted(re.findall(r"torchrun_worker ok (\d) 3", res.stdout)), ["0", "1", "2"], res.stdout)

    def test_under_torch_multiprocessing(self):
        code = ("import sys, torch.multiprocessing as mp; sys.path.insert(0, sys.argv[1]); import torchrun_worker; "
                "mp.spawn(torchrun_worker.main, args=(2, int(sys.argv[2])), nprocs=2)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUMI_")}
        env["PYTHONPATH"] = os.path.join(BUILD, "python") + os.pathsep + env.get("PYTHONPATH", "")
        res = subprocess.run([sys.executable, "-W", "ignore", "-c", code, HERE, str(free_port())], env=env,
                             capture_output=True, text=True, timeout=180)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(sorted(re.findall(r"torchrun_worker ok (\d) 2", res.stdout)), ["0", "1"], res.stdout)

    def test_fsdp2_two_ranks_matches_gloo(self):
        # fully_shard on CPU: all_gather_into_tensor / reduce_scatter_tensor through kumi. Every
        # rank's shards end bit-identical to gloo's run (two ranks: sums are exact in any order).
        runs = {}
        for backend in ("kumi", "gloo"):
            res = run(2, "fsdp_worker.py", backend, "50")
            self.assertEqual(res.returncode, 0, res.stdout[-3000:] + res.stderr[-3000:])
            losses = re.findall(r"LOSS (\d+) (\S+)", res.stdout)
            self.assertEqual(len(losses), 100, res.stdout[-2000:])
            runs[backend] = (sorted(losses), sorted(re.findall(r"PARAMS (\d+) (\w+)", res.stdout)))
        self.assertEqual(runs["kumi"], runs["gloo"])

    def test_ddp_two_ranks_matches_gloo(self):
        self.ddp(2)

    def test_ddp_four_ranks_matches_gloo(self):
        self.ddp(4)


if __name__ == "__main__":
    unittest.main()
