"""Shared helpers for the script tests (standard library only).

The tests run from CTest with KUMI_BUILD_DIR and KUMI_SOURCE_DIR set; by hand:

    cd tests/scripts
    KUMI_BUILD_DIR=/path/to/build KUMI_SOURCE_DIR=/path/to/kumi python3 -m unittest -v test_kumirun
"""
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import unittest
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

# Default limit for one subprocess: nothing a test starts may hang the suite.
DEFAULT_TIMEOUT = 60.0


class ConfigError(RuntimeError):
    """The test environment is incomplete (variable unset, program not built)."""


def _dir_from_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(
            f"{name} is not set: it must name the kumi {what}. Run the script tests through "
            f"ctest, or by hand: cd tests/scripts && KUMI_BUILD_DIR=/path/to/build "
            f"KUMI_SOURCE_DIR=/path/to/kumi python3 -m unittest -v <module>")
    if not os.path.isdir(value):
        raise ConfigError(f"{name}={value} is not a directory")
    return os.path.abspath(value)


def build_dir() -> str:
    return _dir_from_env("KUMI_BUILD_DIR", "build directory")


def source_dir() -> str:
    """KUMI_SOURCE_DIR, or the checkout that holds this file when it is unset."""
    if os.environ.get("KUMI_SOURCE_DIR"):
        return _dir_from_env("KUMI_SOURCE_DIR", "source directory")
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def program(name: str) -> str:
    """A program of the build tree: top level (kumirun, kumi-bench, examples) or tests/."""
    bdir = build_dir()
    for candidate in (os.path.join(bdir, name), os.path.join(bdir, "tests", name)):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(f"{name} is not built in {bdir} (looked at the top and in tests/)")


def cache_value(name: str, default: Optional[str] = None, build: Optional[str] = None) -> Optional[str]:
    """A variable of the build directory's CMakeCache.txt (e.g. KUMI_BUILD_EXAMPLES)."""
    try:
        with open(os.path.join(build or build_dir(), "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return line.split("=", 1)[1].strip()
    except FileNotFoundError:
        pass
    return default


def require_option(option: str) -> None:
    """Fails the calling module when the build was configured with `option` OFF: CMake only
    registers such modules when the option is ON, so this guards against running them by hand
    on a build that lacks the programs (no silent skip)."""
    if (cache_value(option, "ON") or "ON").upper() in ("OFF", "0", "FALSE", "NO", "N"):
        raise RuntimeError(f"{option} is OFF in {build_dir()}: reconfigure with -D{option}=ON")


def kumirun() -> str:
    return program("kumirun")


def clean_env(extra: Optional[Mapping[str, str]] = None, **kwargs: str) -> Dict[str, str]:
    """The current environment without KUMI_* variables (so that a developer's settings do not
    leak into a test), plus `extra` and keyword overrides (values converted to str)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMI_")}
    # Failing tests must not litter /tmp with flight-recorder dumps; tests of the recorder set it.
    env["KUMI_FLIGHT_RECORDER_DIR"] = "none"
    for src in (extra or {}), kwargs:
        for k, v in src.items():
            env[k] = str(v)
    return env


@dataclass
class Completed:
    args: List[str]
    returncode: Optional[int]  # None if it timed out and had to be killed
    stdout: str
    stderr: str
    elapsed: float
    timed_out: bool = False

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        """Everything needed to diagnose a failed assertion."""
        return (f"\n--- command: {' '.join(self.args)}\n--- exit status: {self.returncode}"
                f"{' (TIMED OUT, killed)' if self.timed_out else ''}, {self.elapsed:.2f} s\n"
                f"--- stdout:\n{self.stdout}--- stderr:\n{self.stderr}---")


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def start(args: Sequence[str], env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
          stdin=subprocess.DEVNULL) -> subprocess.Popen:
    """Starts a command in its own session (so that it and its children can be killed as a
    group), capturing stdout and stderr as text."""
    return subprocess.Popen(list(map(str, args)), env=dict(env) if env is not None else clean_env(),
                            cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = DEFAULT_TIMEOUT, started: Optional[float] = None) -> Completed:
    """Waits for a process from start(); kills its whole group if it outlives `timeout`."""
    t0 = started if started is not None else time.monotonic()
    timed_out = False
    try:
        out, err = proc.communicate(timeout=max(0.0, timeout - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a grandchild holds the pipes open
            out, err = "", "(output lost: pipes held open after kill)"
    elapsed = time.monotonic() - t0
    # Stragglers of the group (if any) must not outlive the test.
    if proc.returncode is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return Completed([str(a) for a in proc.args], None if timed_out else proc.returncode,
                     out or "", err or "", elapsed, timed_out)


def run(args: Sequence[str], timeout: float = DEFAULT_TIMEOUT, env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None) -> Completed:
    """Runs a command to completion (or kills it after `timeout` seconds) and captures it."""
    t0 = time.monotonic()
    return finish(start(args, env=env, cwd=cwd), timeout, started=t0)


def run_many(commands: Sequence[Sequence[str]], envs: Sequence[Mapping[str, str]],
             timeout: float = DEFAULT_TIMEOUT) -> List[Completed]:
    """Starts several commands at once (e.g. the ranks of a job without kumirun) and waits for
    all of them, each with its own elapsed time measured from the common start."""
    t0 = time.monotonic()
    procs = [start(c, env=e) for c, e in zip(commands, envs)]
    results: List[Optional[Completed]] = [None] * len(procs)
    # Poll so that each process's elapsed time is its own, not that of the slowest before it.
    pending = set(range(len(procs)))
    while pending and time.monotonic() - t0 < timeout:
        for i in list(pending):
            if procs[i].poll() is not None:
                results[i] = finish(procs[i], timeout, started=t0)
                pending.discard(i)
        time.sleep(0.02)
    for i in pending:
        results[i] = finish(procs[i], timeout, started=t0)  # kills it
    return [r for r in results if r is not None]


# "[3] RESULT what 5 remote error (...): message" as printed by tests/mp/error_scenarios,
# with or without kumirun's rank prefix.
_PREFIX = r"^(?:\[(?P<rank>\d+)\] )?"
_RESULT_RE = re.compile(_PREFIX + r"RESULT (?P<what>\S+) (?P<code>-?\d+) (?P<codename>[^:]*):(?: (?P<message>.*))?$")
_ELAPSED_RE = re.compile(_PREFIX + r"ELAPSED (?P<seconds>[0-9.eE+-]+)\s*$")


@dataclass
class Result:
    rank: Optional[int]
    what: str
    code: int
    codename: str
    message: str
    line: str = field(repr=False, default="")


def parse_results(text: str) -> List[Result]:
    out = []
    for line in text.splitlines():
        m = _RESULT_RE.match(line)
        if m:
            out.append(Result(int(m["rank"]) if m["rank"] is not None else None, m["what"], int(m["code"]),
                              m["codename"], m["message"] or "", line))
    return out


def parse_elapsed(text: str) -> List[tuple]:
    """[(rank or None, seconds)] for every ELAPSED line."""
    out = []
    for line in text.splitlines():
        m = _ELAPSED_RE.match(line)
        if m:
            out.append((int(m["rank"]) if m["rank"] is not None else None, float(m["seconds"])))
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the parenthesised command name, which may itself contain spaces.
    state = stat[stat.rfind(")") + 2:][:1]
    return state not in ("Z", "X", "")


def wait_for(predicate, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
