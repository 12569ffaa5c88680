"""`pip install .` in a fresh virtual environment (scikit-build-core driving kumi's CMake): the
package imports, carries the native module with its type stubs, the console scripts run the
shipped programs, and two ranks started by the installed kumirun allreduce numpy arrays."""
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def sh(args, timeout=900, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


class PipInstall(unittest.TestCase):
    def test_fresh_venv(self):
        with tempfile.TemporaryDirectory(prefix="kumi-pip-") as tmp:
            venv = os.path.join(tmp, "venv")
            res = sh([sys.executable, "-m", "venv", venv])
            self.assertEqual(res.returncode, 0, res.stderr)
            py, bindir = os.path.join(venv, "bin", "python"), os.path.join(venv, "bin")
            env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
            res = sh([py, "-m", "pip", "install", "-q", SOURCE, "numpy"], env=env, cwd=tmp)
            self.assertEqual(res.returncode, 0, res.stdout[-4000:] + res.stderr[-4000:])
            res = sh([py, "-c", "import kumi, os; d = os.path.dirname(kumi.__file__); "
                                "print(kumi.version(), sorted(os.listdir(d)))"], cwd=tmp)
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertIn("_kumi.pyi", res.stdout)
            self.assertIn("py.typed", res.stdout)
            for tool in ("kumirun", "kumi-bench", "kumi-store", "kumi-sim"):
                self.assertTrue(os.access(os.path.join(bindir, tool), os.X_OK), f"console script {tool}")
            res = sh([os.path.join(bindir, "kumi-bench"), "--help"])
            self.assertIn("usage: kumi-bench", res.stdout + res.stderr)
            code = ("import kumi, numpy as np; c = kumi.init(); x = np.full(1000, c.rank + 1, np.float32); "
                    "c.all_reduce(x); assert (x == 3).all(), x; print('pip-ok', c.rank)")
            clean = {k: v for k, v in os.environ.items() if not k.startswith("KUMI_")}
            res = sh([os.path.join(bindir, "kumirun"), "-np", "2", "--", py, "-c", code], timeout=120, env=clean,
                     cwd=tmp)
            self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
            self.assertEqual(res.stdout.count("pip-ok"), 2, res.stdout)


if __name__ == "__main__":
    unittest.main()
