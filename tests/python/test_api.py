"""The kumi Python API (python/kumi, bindings/python) on numpy arrays in 1-4 processes under
kumirun: every collective, every dtype numpy has, async handles, split, and errors raised in Python.
Runs from the build tree (build/python on PYTHONPATH); tests/scripts/test_pip_install.py checks
the installed package."""
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("KUMI_BUILD_DIR") or os.path.join(HERE, "..", "..", "build")


def run(np_, timeout=180):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMI_")}
    env["PYTHONPATH"] = os.path.join(BUILD, "python") + os.pathsep + env.get("PYTHONPATH", "")
    env["KUMI_TIMEOUT"] = "60"
    return subprocess.run([os.path.join(BUILD, "kumirun"), "-np", str(np_), "--", sys.executable,
                           os.path.join(HERE, "api_worker.py")], env=env, capture_output=True, text=True,
                          timeout=timeout)


class PythonApi(unittest.TestCase):
    def check(self, np_):
        res = run(np_)
        out = res.stdout + res.stderr
        self.assertEqual(res.returncode, 0, out)
        ranks = sorted(int(m.group(1)) for m in re.finditer(rf"api_worker ok (\d+) {np_}\b", res.stdout))
        self.assertEqual(ranks, list(range(np_)), out)

    def test_one_rank(self):
        self.check(1)

    def test_two_ranks(self):
        self.check(2)

    def test_four_ranks(self):
        self.check(4)


if __name__ == "__main__":
    unittest.main()
