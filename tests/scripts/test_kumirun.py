"""kumirun: environment of the ranks, output prefixing, exit status, and stopping the job
(first failure, signals, --timeout, ranks that ignore SIGTERM), with shell one-liners as ranks."""
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import unittest

import kumi_testlib as kt

SH = shutil.which("sh") or "/bin/sh"


def setUpModule():
    kt.kumirun()  # a clear error up front if the build directory or kumirun is missing


def kumirun(*args, timeout=30, env=None):
    return kt.run([kt.kumirun(), *map(str, args)], timeout=timeout, env=env or kt.clean_env())


def sh(script):
    """A rank program: sh -c SCRIPT."""
    return ["--", SH, "-c", script]


def rank_lines(text):
    """{rank: [line without prefix, ...]} for lines of the form "[r] ..."."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\[(\d+)\] (.*)$", line)
        if m:
            out.setdefault(int(m.group(1)), []).append(m.group(2))
    return out


def env_lines(text):
    """{rank: {VAR: value}} from ranks that echo "ENV VAR=value ..." lines."""
    out = {}
    for r, lines in rank_lines(text).items():
        for line in lines:
            if line.startswith("ENV "):
                out[r] = dict(kv.split("=", 1) for kv in line[4:].split())
    return out


ECHO_ENV = ('echo "ENV RANK=$KUMI_RANK WORLD=$KUMI_WORLD_SIZE LRANK=$KUMI_LOCAL_RANK '
            'LSIZE=$KUMI_LOCAL_SIZE STORE=$KUMI_STORE JOB=$KUMI_JOB_ID HOST=${KUMI_HOSTID:-none} '
            'NODE=${KUMI_NODE_RANK:-none}"')


class Environment(unittest.TestCase):
    def test_rank_environment(self):
        res = kumirun("-np", 4, *sh(ECHO_ENV))
        self.assertEqual(res.returncode, 0, res.describe())
        envs = env_lines(res.stdout)
        self.assertEqual(sorted(envs), [0, 1, 2, 3], res.describe())
        stores = {e["STORE"] for e in envs.values()}
        jobs = {e["JOB"] for e in envs.values()}
        self.assertEqual(len(stores), 1, f"ranks disagree on KUMI_STORE: {stores}")
        self.assertRegex(stores.pop(), r"^127\.0\.0\.1:\d+$")
        self.assertEqual(len(jobs), 1, f"ranks disagree on KUMI_JOB_ID: {jobs}")
        self.assertNotEqual(jobs.pop(), "", "KUMI_JOB_ID is empty")
        for r, e in envs.items():
            with self.subTest(rank=r):
                self.assertEqual(e["RANK"], str(r))
                self.assertEqual(e["WORLD"], "4")
                self.assertEqual(e["LRANK"], str(r))
                self.assertEqual(e["LSIZE"], "4")
                self.assertEqual(e["HOST"], "none", "KUMI_HOSTID must be unset without --nodes")

    def test_given_job_id_is_kept(self):
        res = kumirun("-np", 2, *sh(ECHO_ENV), env=kt.clean_env(KUMI_JOB_ID="my-job-42"))
        self.assertEqual(res.returncode, 0, res.describe())
        envs = env_lines(res.stdout)
        self.assertEqual({e["JOB"] for e in envs.values()}, {"my-job-42"}, res.describe())

    def test_each_job_gets_its_own_store(self):
        a = env_lines(kumirun("-np", 1, *sh(ECHO_ENV)).stdout)
        b = env_lines(kumirun("-np", 1, *sh(ECHO_ENV)).stdout)
        self.assertNotEqual(a[0]["JOB"], b[0]["JOB"], "two jobs got the same KUMI_JOB_ID")

    def check_nodes(self, np_, nodes, want_sizes):
        res = kumirun("--nodes", nodes, "-np", np_, *sh(ECHO_ENV))
        self.assertEqual(res.returncode, 0, res.describe())
        envs = env_lines(res.stdout)
        self.assertEqual(sorted(envs), list(range(np_)), res.describe())
        hosts = []  # host ids in order of first appearance
        for r in range(np_):
            if envs[r]["HOST"] not in hosts:
                hosts.append(envs[r]["HOST"])
        self.assertNotIn("none", hosts, f"KUMI_HOSTID unset with --nodes {nodes}:{res.describe()}")
        self.assertEqual(len(hosts), nodes, f"-np {np_} --nodes {nodes} gave host ids {hosts}:{res.describe()}")
        # Block split: ranks of a host are contiguous, local ranks count from 0 within it.
        got_sizes = []
        r = 0
        for h in hosts:
            members = [q for q in range(np_) if envs[q]["HOST"] == h]
            self.assertEqual(members, list(range(r, r + len(members))), f"ranks of host {h} are not contiguous")
            for i, q in enumerate(members):
                self.assertEqual(envs[q]["LRANK"], str(i), f"rank {q}:{res.describe()}")
                self.assertEqual(envs[q]["LSIZE"], str(len(members)), f"rank {q}:{res.describe()}")
            got_sizes.append(len(members))
            r += len(members)
        self.assertEqual(got_sizes, want_sizes, res.describe())

    def test_nodes_2_np_5(self):
        self.check_nodes(5, 2, [3, 2])

    def test_nodes_as_many_as_ranks(self):
        self.check_nodes(3, 3, [1, 1, 1])

    def test_nodes_4_np_5_gives_4_hosts(self):
        # --nodes M promises M simulated hosts; a ceil(np/M) block per host gives only 3 here.
        self.check_nodes(5, 4, [2, 1, 1, 1])


class Output(unittest.TestCase):
    def test_prefix_and_no_interleaving(self):
        # Every rank writes long lines quickly to stdout and stderr, in pieces, so that a
        # launcher that forwarded raw reads would interleave them mid-line.
        lines, width = 300, 3000
        prog = ("import os, sys\n"
                "r = os.environ['KUMI_RANK']\n"
                f"for i in range({lines}):\n"
                f"    text = f'rank {{r}} line {{i}} ' + r * {width} + '\\n'\n"
                "    stream = sys.stdout if i % 2 == 0 else sys.stderr\n"
                "    for k in range(0, len(text), 997):\n"
                "        stream.write(text[k:k + 997]); stream.flush()\n")
        res = kumirun("-np", 4, "--", sys.executable, "-c", prog, timeout=60)
        self.assertEqual(res.returncode, 0, res.describe()[:3000])
        pat = re.compile(r"^\[(\d)\] rank (\d) line (\d+) (\d)+$")
        for name, text, parity in (("stdout", res.stdout, 0), ("stderr", res.stderr, 1)):
            seen = {r: [] for r in range(4)}
            for line in text.splitlines():
                if line.startswith("kumirun:"):
                    continue
                m = pat.match(line)
                self.assertIsNotNone(m, f"garbled {name} line: {line[:200]!r}...")
                r = int(m.group(1))
                self.assertEqual(m.group(2), str(r), f"{name} line of rank {m.group(2)} prefixed [{r}]")
                self.assertEqual(len(line), len(f"[{r}] rank {r} line {m.group(3)} ") + width,
                                 f"{name} line has the wrong length (interleaved?): {line[:200]!r}")
                self.assertEqual(set(line[-width:]), {str(r)}, f"{name} line mixes ranks: {line[:200]!r}")
                seen[r].append(int(m.group(3)))
            for r in range(4):
                self.assertEqual(seen[r], list(range(parity, lines, 2)), f"{name} of rank {r}: lines lost or reordered")

    def test_stderr_stays_stderr_and_last_partial_line(self):
        res = kumirun("-np", 2, *sh('echo "to out"; echo "to err" >&2; printf "no newline"'))
        self.assertEqual(res.returncode, 0, res.describe())
        for r in (0, 1):
            self.assertIn(f"[{r}] to out", res.stdout.splitlines(), res.describe())
            self.assertIn(f"[{r}] to err", res.stderr.splitlines(), res.describe())
            self.assertIn(f"[{r}] no newline", res.stdout.splitlines(), res.describe())
        self.assertNotIn("to err", res.stdout)
        self.assertNotIn("to out", res.stderr)

    def test_no_prefix(self):
        res = kumirun("--no-prefix", "-np", 2, *sh('echo "hello $KUMI_RANK"'))
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertEqual(sorted(res.stdout.splitlines()), ["hello 0", "hello 1"], res.describe())

    def test_program_without_double_dash(self):
        res = kumirun("-np", 2, SH, "-c", 'echo "x$KUMI_RANK"')
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertEqual(sorted(res.stdout.splitlines()), ["[0] x0", "[1] x1"], res.describe())


class ExitStatus(unittest.TestCase):
    def test_success(self):
        res = kumirun("-np", 3, *sh("exit 0"))
        self.assertEqual(res.returncode, 0, res.describe())

    def test_first_failure_is_returned_and_others_stopped(self):
        res = kumirun("-np", 4, *sh('if [ "$KUMI_RANK" = 2 ]; then sleep 0.2; exit 3; fi; exec sleep 60'))
        self.assertEqual(res.returncode, 3, res.describe())
        self.assertLess(res.elapsed, 5.0, res.describe())
        self.assertIn("rank 2", res.stderr, res.describe())

    def test_first_of_several_failures(self):
        # Rank 1 fails first with 5; rank 3 would fail later with 7 but is stopped before.
        res = kumirun("-np", 4, *sh('case "$KUMI_RANK" in 1) sleep 0.2; exit 5;; 3) sleep 2; exit 7;; esac; '
                                    'exec sleep 60'))
        self.assertEqual(res.returncode, 5, res.describe())
        self.assertLess(res.elapsed, 5.0, res.describe())

    def test_killed_by_signal(self):
        for sig in (signal.SIGKILL, signal.SIGSEGV):
            with self.subTest(signal=sig.name):
                res = kumirun("-np", 3, *sh(f'if [ "$KUMI_RANK" = 1 ]; then sleep 0.2; kill -{sig.name[3:]} $$; fi; '
                                            'exec sleep 60'))
                self.assertEqual(res.returncode, 128 + sig, res.describe())
                self.assertLess(res.elapsed, 5.0, res.describe())

    def test_nonexistent_program(self):
        res = kumirun("-np", 2, "--", "/nonexistent/kumi-no-such-program")
        self.assertEqual(res.returncode, 127, res.describe())
        self.assertIn("kumi-no-such-program", res.stderr, res.describe())

    def test_timeout(self):
        res = kumirun("--timeout", 1, "-np", 3, *sh("exec sleep 60"))
        self.assertEqual(res.returncode, 124, res.describe())
        self.assertLess(res.elapsed, 5.0, res.describe())
        self.assertIn("timeout", res.stderr, res.describe())

    def test_rank_children_holding_output_do_not_keep_the_job(self):
        # A background grandchild keeps the rank's stdout open after the rank exits.
        res = kumirun("-np", 2, *sh('sleep 8 & echo "bg $!"'))
        for m in re.finditer(r"^\[\d\] bg (\d+)$", res.stdout, re.M):  # do not leave them behind
            try:
                os.kill(int(m.group(1)), signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertLess(res.elapsed, 6.0, res.describe())


class BadUsage(unittest.TestCase):
    def check_usage(self, args, needle):
        res = kumirun(*args)
        self.assertEqual(res.returncode, 2, res.describe())
        self.assertIn(needle, res.stderr, res.describe())

    def test_missing_np(self):
        self.check_usage(["--", "true"], "usage")

    def test_zero_np(self):
        self.check_usage(["-np", "0", "--", "true"], "usage")

    def test_missing_program(self):
        self.check_usage(["-np", "2"], "usage")
        self.check_usage(["-np", "2", "--"], "usage")

    def test_nodes_above_np(self):
        self.check_usage(["-np", "2", "--nodes", "3", "--", "true"], "--nodes")

    def test_unknown_option(self):
        self.check_usage(["-np", "2", "--frobnicate", "--", "true"], "unknown option --frobnicate")

    def test_option_without_value(self):
        self.check_usage(["-np"], "-np")

    def test_help(self):
        res = kumirun("--help")
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertIn("usage", res.stdout, res.describe())


class Stopping(unittest.TestCase):
    """kumirun under signals: ranks write their pid to a file so that the test can check that
    every one of them is gone afterwards."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kumirun-test-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def pids(self, n):
        out = []
        for r in range(n):
            try:
                with open(os.path.join(self.tmp, f"pid.{r}")) as f:
                    text = f.read().strip()
            except FileNotFoundError:
                return None
            if not text:
                return None
            out.append(int(text))
        return out

    def start_job(self, np_, script, *opts):
        t0 = time.monotonic()
        proc = kt.start([kt.kumirun(), *opts, "-np", str(np_), "--", SH, "-c", script], env=kt.clean_env(PIDDIR=self.tmp))
        self.addCleanup(lambda: proc.poll() is None and kt.finish(proc, 0))
        ok = kt.wait_for(lambda: self.pids(np_) is not None, 10)
        if not ok:
            res = kt.finish(proc, 0, started=t0)
            self.fail(f"ranks did not all start:{res.describe()}")
        return proc, t0, self.pids(np_)

    def assert_gone(self, pids, res):
        alive = [p for p in pids if kt.pid_alive(p)]
        for p in alive:  # do not leave them behind, whatever the verdict
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.assertEqual(alive, [], f"rank processes still alive after kumirun returned:{res.describe()}")

    def test_sigint_stops_all_ranks(self):
        proc, t0, pids = self.start_job(3, 'echo $$ > "$PIDDIR/pid.$KUMI_RANK.tmp" && '
                                           'mv "$PIDDIR/pid.$KUMI_RANK.tmp" "$PIDDIR/pid.$KUMI_RANK"; exec sleep 60')
        t1 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        res = kt.finish(proc, 15, started=t0)
        self.assertLess(time.monotonic() - t1, 5.0, res.describe())
        self.assertEqual(res.returncode, 130, res.describe())
        self.assert_gone(pids, res)

    def test_sigterm_stops_all_ranks(self):
        proc, t0, pids = self.start_job(2, 'echo $$ > "$PIDDIR/pid.$KUMI_RANK.tmp" && '
                                           'mv "$PIDDIR/pid.$KUMI_RANK.tmp" "$PIDDIR/pid.$KUMI_RANK"; exec sleep 60')
        t1 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        res = kt.finish(proc, 15, started=t0)
        self.assertLess(time.monotonic() - t1, 5.0, res.describe())
        self.assertEqual(res.returncode, 143, res.describe())
        self.assert_gone(pids, res)

    def test_rank_ignoring_sigterm_is_killed(self):
        # Rank 0 ignores SIGTERM (so do the sleeps it starts); rank 1 fails once rank 0 is set.
        script = ('if [ "$KUMI_RANK" = 0 ]; then trap "" TERM INT HUP; fi; '
                  'echo $$ > "$PIDDIR/pid.$KUMI_RANK.tmp" && mv "$PIDDIR/pid.$KUMI_RANK.tmp" "$PIDDIR/pid.$KUMI_RANK"; '
                  'if [ "$KUMI_RANK" = 1 ]; then while [ ! -f "$PIDDIR/pid.0" ]; do sleep 0.05; done; exit 4; fi; '
                  'while true; do sleep 0.1; done')
        proc, t0, pids = self.start_job(2, script)
        t1 = time.monotonic()
        res = kt.finish(proc, 20, started=t0)
        self.assertEqual(res.returncode, 4, res.describe())
        self.assertLess(time.monotonic() - t1, 5.0, res.describe())
        self.assert_gone(pids, res)

    def test_sigint_with_rank_ignoring_sigterm(self):
        script = ('trap "" TERM; echo $$ > "$PIDDIR/pid.$KUMI_RANK.tmp" && '
                  'mv "$PIDDIR/pid.$KUMI_RANK.tmp" "$PIDDIR/pid.$KUMI_RANK"; while true; do sleep 0.1; done')
        proc, t0, pids = self.start_job(2, script)
        t1 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        res = kt.finish(proc, 20, started=t0)
        self.assertLess(time.monotonic() - t1, 5.0, res.describe())
        self.assertEqual(res.returncode, 130, res.describe())
        self.assert_gone(pids, res)


if __name__ == "__main__":
    unittest.main()
