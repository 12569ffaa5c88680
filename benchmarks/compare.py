#!/usr/bin/env python3
"""Compare kumi's allreduce with Gloo and Open MPI on this machine.

Runs kumi-bench, kumi-bench-gloo and kumi-bench-mpi with the same sizes and
rank count, interleaved round by round, keeps the best bus bandwidth per size
and library, and prints kumi's ratio to each peer.

    benchmarks/compare.py --build-dir build -np 4 -b 64K -e 64M \\
        [--peers gloo,mpi] [--rounds 3] [--json out.json] \\
        [--link tcp|shm] [--require-ratio gloo=2.5,mpi=1.0]

--link tcp (default) pins kumi and Open MPI to TCP over loopback; --link shm
lets kumi use its shared-memory transport and Open MPI its own (the vader
BTL), and measures this machine's memcpy bandwidth in the same run.

Exit status: 0 ok; 1 a run failed, reported wrong elements, or a
--require-ratio bound was not met; 2 usage error or a missing binary.
Standard library only, so it runs wherever the build does.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

KUMI = "kumi"
PEERS = ("gloo", "mpi")

# Open MPI pinned to TCP over loopback: the same transport kumi and Gloo use
# here, and no surprises from whatever fabrics the host happens to have.
MPIRUN_FLAGS = [
    "--allow-run-as-root", "--oversubscribe",
    "--mca", "pml", "ob1",
    "--mca", "btl", "tcp,self",
    "--mca", "btl_tcp_if_include", "lo",
    "--mca", "oob_tcp_if_include", "lo",
]
# Open MPI's shared-memory path with its default settings (vader, with
# cross-memory attach where the kernel allows it).
MPIRUN_FLAGS_SHM = [
    "--allow-run-as-root", "--oversubscribe",
    "--mca", "pml", "ob1",
    "--mca", "btl", "self,vader",
    "--mca", "oob_tcp_if_include", "lo",
]
# Sizes whose time (not bandwidth) is the figure of merit.
LATENCY_MAX_BYTES = 4096
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}

LATENCY_BYTES = 8


class UsageError(Exception):
    """Bad arguments or missing binaries: exit status 2."""


class BenchError(Exception):
    """A benchmark run failed or produced wrong results: exit status 1."""


# ---------------------------------------------------------------- arguments

def parse_size(text):
    """'64K' -> 65536; K/M/G are binary multiples, as in the benchmarks."""
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    digits = text[:-1] if mult != 1 else text
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"bad size {text!r}")
    return int(digits) * mult


def size_arg(text):
    parse_size(text)  # validate, but pass the user's spelling through
    return text


def parse_ratio_spec(text):
    """'gloo=2.5,mpi=1.0' -> {'gloo': 2.5, 'mpi': 1.0}."""
    spec = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep or name not in PEERS:
            raise argparse.ArgumentTypeError(
                f"bad --require-ratio item {item!r} (want PEER=MIN, PEER in "
                f"{', '.join(PEERS)})")
        try:
            spec[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad ratio {value!r}") from None
    return spec


def parse_peers(text):
    peers = [p for p in text.split(",") if p]
    for p in peers:
        if p not in PEERS:
            raise argparse.ArgumentTypeError(
                f"unknown peer {p!r} (known: {', '.join(PEERS)})")
    return list(dict.fromkeys(peers))  # drop duplicates, keep order


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Run kumi-bench next to Gloo and Open MPI and compare "
                    "allreduce bus bandwidth.")
    ap.add_argument("--build-dir", required=True,
                    help="build tree holding kumirun, kumi-bench and the peers")
    ap.add_argument("-np", type=int, required=True, help="number of ranks")
    ap.add_argument("-b", type=size_arg, default="64K", help="min bytes")
    ap.add_argument("-e", type=size_arg, default="64M", help="max bytes")
    ap.add_argument("-f", type=float, default=2, help="size factor")
    ap.add_argument("-n", type=int, default=20, help="timed iterations")
    ap.add_argument("-w", type=int, default=5, help="warmup iterations")
    ap.add_argument("--peers", type=parse_peers, default=list(PEERS),
                    help="comma list of peers (default gloo,mpi)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs per library; the best is kept (default 3)")
    ap.add_argument("--json", help="write the combined table here")
    ap.add_argument("--require-ratio", type=parse_ratio_spec, default={},
                    metavar="PEER=MIN,...",
                    help="exit 1 if kumi/PEER busbw is below MIN at any size")
    ap.add_argument("--mpirun", default="mpirun", help="mpirun to use")
    ap.add_argument("--link", choices=("tcp", "shm"), default="tcp",
                    help="tcp: everyone over loopback TCP; shm: kumi and MPI "
                         "over shared memory (default tcp)")
    ap.add_argument("--timeout", type=float, default=900,
                    help="seconds allowed per benchmark run (default 900)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="echo commands and benchmark output")
    args = ap.parse_args(argv)

    if args.np < 1 or args.rounds < 1 or args.n < 1 or args.w < 0:
        ap.error("-np, --rounds and -n must be >= 1, -w >= 0")
    if args.f <= 1:
        ap.error("-f must be > 1")
    if parse_size(args.b) > parse_size(args.e):
        ap.error("-b must be <= -e")
    missing = sorted(set(args.require_ratio) - set(args.peers))
    if missing:
        ap.error(f"--require-ratio names peers not run: {', '.join(missing)}")
    return args


# ----------------------------------------------------------------- commands

def libraries(args):
    return [KUMI] + args.peers


def binaries(args, lib):
    """Files a library's run needs, as (path, hint if missing)."""
    build = os.path.abspath(args.build_dir)
    kumirun = (os.path.join(build, "kumirun"), "build kumi first")
    if lib == KUMI:
        return [kumirun, (os.path.join(build, "kumi-bench"), "build kumi first")]
    if lib == "gloo":
        return [kumirun, (os.path.join(build, "kumi-bench-gloo"),
                          "needs Gloo (libgloo-dev) and -DKUMI_WITH_GLOO=ON; "
                          "or leave gloo out of --peers")]
    mpirun = shutil.which(args.mpirun) or args.mpirun
    return [(mpirun, "install openmpi-bin or pass --mpirun"),
            (os.path.join(build, "kumi-bench-mpi"),
             "needs MPI (libopenmpi-dev) and -DKUMI_WITH_MPI=ON; "
             "or leave mpi out of --peers")]


def check_binaries(args):
    problems = []
    for lib in libraries(args):
        for path, hint in binaries(args, lib):
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                line = f"missing executable {path} ({hint})"
                if line not in problems:
                    problems.append(line)
    if problems:
        raise UsageError("cannot run the comparison:\n  " + "\n  ".join(problems))


def sweep_flags(args):
    return ["-b", args.b, "-e", args.e, "-f", f"{args.f:g}",
            "-n", str(args.n), "-w", str(args.w)]


def command(args, lib, workdir, json_path):
    """argv and extra environment for one run of `lib`."""
    build = os.path.abspath(args.build_dir)
    kumirun = [os.path.join(build, "kumirun"), "-np", str(args.np), "--"]
    flags = sweep_flags(args)
    if lib == KUMI:
        env = {"KUMI_TRANSPORT": "tcp"} if args.link == "tcp" else {}
        return (kumirun + [os.path.join(build, "kumi-bench"), "allreduce"] + flags
                + ["-d", "float32", "-o", "sum", "--json", json_path]), env
    if lib == "gloo":
        # Gloo's FileStore refuses keys left by an earlier run: fresh per run.
        store = os.path.join(workdir, "gloo-store")
        os.makedirs(store)
        return (kumirun + [os.path.join(build, "kumi-bench-gloo")] + flags
                + ["--store-dir", store, "--json", json_path]), {}
    mpi_flags = MPIRUN_FLAGS if args.link == "tcp" else MPIRUN_FLAGS_SHM
    return ([args.mpirun] + mpi_flags + ["-np", str(args.np),
             os.path.join(build, "kumi-bench-mpi")] + flags
            + ["--json", json_path]), MPI_ENV


def run_process(argv, env, timeout):
    """Runs argv in its own process group; returns (rc, combined output)."""
    proc = subprocess.Popen(argv, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace",
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except BaseException as exc:
        # Launchers leave ranks behind if only the launcher dies: kill the
        # whole group (timeout and Ctrl-C alike).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            return None, out
        raise


def failure(what, shown, out, lines=25):
    """A BenchError carrying the command and the end of its output."""
    msg = f"{what}\n  command: {shown}"
    last = out.rstrip().splitlines()[-lines:]
    if last:
        msg += "\n" + "\n".join("    | " + l for l in last)
    return BenchError(msg)


def load_results(path, lib, args):
    """The run's JSON results keyed by bytes, after sanity checks."""
    with open(path) as f:
        doc = json.load(f)
    if doc.get("collective") != "allreduce" or doc.get("nranks") != args.np:
        raise BenchError(
            f"{lib}: {path} is for {doc.get('collective')} on "
            f"{doc.get('nranks')} ranks, expected allreduce on {args.np}")
    # Out-of-place results only: the peers measure out-of-place, so that is the fair pair.
    return {int(r["bytes"]): r for r in doc["results"] if not r.get("inplace")}


def run_one(args, lib, round_no):
    """Runs one library once; returns {bytes: result}. Raises BenchError."""
    with tempfile.TemporaryDirectory(prefix=f"kumi-compare-{lib}-") as workdir:
        json_path = os.path.join(workdir, "result.json")
        argv, env = command(args, lib, workdir, json_path)
        shown = " ".join([f"{k}={v}" for k, v in env.items()] + argv)
        if args.verbose:
            print(f"$ {shown}", flush=True)
        start = time.monotonic()
        rc, out = run_process(argv, env, args.timeout)
        took = time.monotonic() - start
        if args.verbose:
            print(out.rstrip(), flush=True)

        # Wrong elements are the more useful diagnosis, and a benchmark may
        # also exit non-zero because of them, so look at the JSON first.
        results = None
        if os.path.isfile(json_path):
            try:
                results = load_results(json_path, lib, args)
            except (ValueError, KeyError, TypeError) as exc:
                raise failure(f"{lib}: unreadable {json_path}: {exc}", shown, out)
            bad = {b: r["wrong"] for b, r in results.items() if r.get("wrong")}
            if bad:
                sizes = ", ".join(f"{fmt_size(b)}: {w}" for b, w in sorted(bad.items()))
                raise failure(f"{lib} computed WRONG results (wrong elements "
                              f"per size: {sizes})", shown, out)
        if rc is None:
            raise failure(f"{lib} timed out after {args.timeout:g} s", shown, out)
        if rc != 0:
            raise failure(f"{lib} exited with status {rc}", shown, out)
        if results is None:
            raise failure(f"{lib} exited 0 but wrote no {json_path}", shown, out)
        print(f"  round {round_no}: {lib:<5} ok ({took:.1f} s)", flush=True)
        return results


# ------------------------------------------------------------------ results

def fmt_size(n):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def ratio(a, b):
    return a / b if a is not None and b else None


def summarize(args, runs):
    """Best busbw and time per size and library over all rounds.

    runs: {lib: [{bytes: result}, ...one per round]}.
    """
    libs = libraries(args)
    sizes = sorted({b for lib in libs for run in runs[lib] for b in run})
    rows = []
    for size in sizes:
        row = {"bytes": size, "busbw_GBps": {}, "time_us": {},
               "busbw_GBps_rounds": {}, "ratio": {}}
        for lib in libs:
            got = [run[size] for run in runs[lib] if size in run]
            row["busbw_GBps_rounds"][lib] = [r["busbw_GBps"] for r in got]
            # Noise on a shared box only ever slows a run down, so the best
            # round is the closest to what the library can do.
            row["busbw_GBps"][lib] = max((r["busbw_GBps"] for r in got), default=None)
            row["time_us"][lib] = min((r["time_us"] for r in got), default=None)
        for peer in args.peers:
            row["ratio"][peer] = ratio(row["busbw_GBps"][KUMI], row["busbw_GBps"][peer])
        rows.append(row)
    return rows


def check_requirements(args, rows):
    """Human-readable failures of --require-ratio (empty when all hold)."""
    failures = []
    for peer, minimum in args.require_ratio.items():
        for row in rows:
            got = row["ratio"][peer]
            if got is None:
                failures.append(f"kumi/{peer} at {fmt_size(row['bytes'])}: "
                                f"no ratio (missing or zero busbw), need >= {minimum:g}")
            elif got < minimum:
                failures.append(f"kumi/{peer} at {fmt_size(row['bytes'])}: "
                                f"{got:.2f} < {minimum:g}")
    return failures


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(args, rows):
    libs = libraries(args)
    print()
    print(f"# allreduce float32 sum, {args.np} ranks over {args.link}, out-of-place, "
          f"-n {args.n} -w {args.w}, best of {args.rounds} round(s) per library")
    print("# NOTE: shared, noisy machine; rounds are interleaved and the best "
          "is kept, but expect run-to-run variation of tens of percent.")
    header = f"{'size':>8}" + "".join(f"{lib + ' busbw':>13}" for lib in libs)
    header += "".join(f"{'kumi/' + p:>11}" for p in args.peers)
    print(header)
    print(f"{'(B)':>8}" + f"{'(GB/s)':>13}" * len(libs))
    for row in rows:
        line = f"{fmt_size(row['bytes']):>8}"
        line += "".join(f"{fmt(row['busbw_GBps'][lib], '.4g'):>13}" for lib in libs)
        line += "".join(f"{fmt(row['ratio'][p], '.2f'):>11}" for p in args.peers)
        print(line)
    if args.np == 1:
        print("# with 1 rank busbw is 0 by definition; ratios are not defined")

    latency = latency_row(rows)
    if latency:
        times = "  ".join(f"{lib} {fmt(latency['time_us'][lib], '.4g')}" for lib in libs)
        speed = "  ".join(
            f"{p}/kumi {fmt(ratio(latency['time_us'][p], latency['time_us'][KUMI]), '.2f')}x"
            for p in args.peers)
        print(f"# {LATENCY_BYTES}-byte latency (us, best): {times}"
              + (f"   ({speed}; >1 means kumi is faster)" if speed else ""))
    small = [r for r in rows if r["bytes"] <= LATENCY_MAX_BYTES]
    if small and args.peers:
        print(f"# time per call up to {fmt_size(LATENCY_MAX_BYTES)} (us, best; "
              "peer/kumi > 1 means kumi is faster)")
        for r in small:
            cells = "  ".join(f"{lib} {fmt(r['time_us'][lib], '.3g')}" for lib in libs)
            quot = "  ".join(
                f"{p}/kumi {fmt(ratio(r['time_us'][p], r['time_us'][KUMI]), '.2f')}"
                for p in args.peers)
            print(f"#   {fmt_size(r['bytes']):>6}: {cells}   {quot}")


def latency_row(rows):
    return next((r for r in rows if r["bytes"] == LATENCY_BYTES), None)


def write_json(args, rows, failures, path, memcpy_gbps=None):
    latency = latency_row(rows)
    doc = {
        "collective": "allreduce", "dtype": "float32", "op": "sum",
        "inplace": False, "nranks": args.np,
        "min_bytes": parse_size(args.b), "max_bytes": parse_size(args.e),
        "factor": args.f, "iters": args.n, "warmup": args.w,
        "rounds": args.rounds, "libraries": libraries(args),
        "note": "best busbw (min time) over interleaved rounds on a shared, "
                "noisy machine; ratio = kumi busbw / peer busbw",
        "link": args.link,
        "memcpy_GBps": memcpy_gbps,
        "rows": rows,
        "latency_us": ({"bytes": LATENCY_BYTES, **latency["time_us"]}
                       if latency else None),
        "require_ratio": args.require_ratio,
        "ratio_failures": failures,
        "passed": not failures,
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


# --------------------------------------------------------------------- main

def print_tcp_bound(args):
    """With 2 ranks, what plain loopback TCP carries both ways at once at the largest size:
    the ceiling on every library's busbw in the table (kumi-tcp-bound, no library involved)."""
    tool = os.path.join(args.build_dir, "kumi-tcp-bound")
    if args.np != 2 or parse_size(str(args.e)) < (1 << 20) or not os.path.exists(tool):
        return
    try:
        out = subprocess.run([tool, str(parse_size(str(args.e))), "5"], capture_output=True, text=True,
                             timeout=args.timeout).stdout
    except subprocess.TimeoutExpired:
        return
    for line in out.splitlines():
        print(f"# {line}")


def memcpy_bandwidth(args):
    """This machine's memcpy bandwidth in GB/s (64 MiB buffers), or None."""
    tool = os.path.join(args.build_dir, "kumi-micro-bench")
    if not os.path.exists(tool):
        return None
    try:
        out = subprocess.run([tool, "--benchmark_filter=^memcpy/67108864$",
                              "--benchmark_format=json", "--benchmark_repetitions=3"],
                             capture_output=True, text=True, timeout=args.timeout).stdout
        runs = [b["bytes_per_second"] for b in json.loads(out)["benchmarks"]
                if b.get("run_type") == "iteration"]
    except (subprocess.TimeoutExpired, ValueError, KeyError):
        return None
    return max(runs) / 1e9 if runs else None


def print_memcpy_fraction(args, rows, memcpy_gbps):
    if memcpy_gbps is None:
        print("# memcpy bandwidth: not measured (kumi-micro-bench missing)")
        return
    print(f"# memcpy bandwidth (64 MiB, best of 3, same run): {memcpy_gbps:.2f} GB/s")
    for r in rows:
        bw = r["busbw_GBps"].get(KUMI)
        if r["bytes"] >= (1 << 20) and bw:
            print(f"#   {fmt_size(r['bytes']):>6}: kumi busbw is {100 * bw / memcpy_gbps:.0f}% of memcpy")


def main(argv):
    try:
        args = parse_args(argv)
        check_binaries(args)
    except UsageError as exc:
        print(f"compare.py: error: {exc}", file=sys.stderr)
        return 2

    libs = libraries(args)
    runs = {lib: [] for lib in libs}
    print(f"comparing {', '.join(libs)} on {args.np} ranks, sizes {args.b}..{args.e}, "
          f"{args.rounds} round(s)", flush=True)
    try:
        for r in range(args.rounds):
            # Rotate who goes first so slow drifts of the machine's load do
            # not always hit the same library.
            order = libs[r % len(libs):] + libs[:r % len(libs)]
            for lib in order:
                runs[lib].append(run_one(args, lib, r + 1))
    except BenchError as exc:
        print(f"compare.py: FAILED: {exc}", file=sys.stderr)
        return 1

    memcpy_gbps = memcpy_bandwidth(args) if args.link == "shm" else None
    rows = summarize(args, runs)
    print_table(args, rows)
    if args.link == "tcp":
        print_tcp_bound(args)
    else:
        print_memcpy_fraction(args, rows, memcpy_gbps)
    failures = check_requirements(args, rows)
    if args.json:
        write_json(args, rows, failures, args.json, memcpy_gbps)
        print(f"# wrote {args.json}")
    if failures:
        print("compare.py: --require-ratio not met:\n  " + "\n  ".join(failures),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
