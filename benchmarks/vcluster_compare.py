#!/usr/bin/env python3
"""Hierarchical versus flat-ring allreduce (or allgather) on a virtual cluster.

Builds M "nodes" as network namespaces with rate-limited links
(tests/cluster/vcluster.py), runs kumi-bench across them with the planner's
own choice and with each forced algorithm, interleaved round by round, and
prints each one's best bus bandwidth, the ratio to the flat ring, and which
algorithm the planner chose by itself.

    benchmarks/vcluster_compare.py --build-dir build --nodes 2 \\
        --ranks-per-node 2 --rate 1gbit -b 16M -e 16M [--rounds 3] [--json out.json]

Needs root (namespaces, tc). Exit status: 0 ok; 1 a run failed or computed
wrong results; 2 usage error or namespaces cannot be made here.
Standard library only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))
import vcluster  # noqa: E402

import sim_table  # noqa: E402  (beside this script)

# (label, KUMI_ALGO); "auto" leaves the choice to the planner.


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--collective", choices=("allreduce", "allgather", "broadcast", "reduce"), default="allreduce")
    ap.add_argument("--algos", default="ring,hierarchical",
                    help="algorithms to force in turn, besides the planner's choice; the first is the reference")
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--ranks-per-node", default="2", help="N, or a comma list per node (uneven)")
    ap.add_argument("--rate", default="1gbit", help="tbf rate of each node link (both ways)")
    ap.add_argument("-b", default="16M")
    ap.add_argument("-e", default="16M")
    ap.add_argument("-f", default="2", help="size factor")
    ap.add_argument("-n", type=int, default=5, help="timed iterations")
    ap.add_argument("-w", type=int, default=2, help="warmup iterations")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json")
    ap.add_argument("--predict", metavar="CLUSTER_FILE",
                    help="also run kumi-sim on this cluster description and print predicted vs measured times")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.ranks_per_node.split(",")]
    args.ranks = counts[0] if len(counts) == 1 else counts
    args.algos = [a for a in args.algos.split(",") if a]
    return args


def run_variant(vc, args, label, algo, workdir):
    out = os.path.join(workdir, f"{label}.json")
    env = {"KUMI_DEBUG": "INFO", "KUMI_TIMEOUT": "120"}
    if algo:
        env["KUMI_ALGO"] = f"{args.collective}:{algo}"
    argv = [os.path.join(os.path.abspath(args.build_dir), "kumi-bench"), args.collective,
            "-b", args.b, "-e", args.e, "-f", args.f, "-n", str(args.n), "-w", str(args.w),
            "-d", "float32", "-o", "sum", "--json", out]
    job = vc.launch(argv, ranks_per_node=args.ranks, env=env, timeout=args.timeout)
    if not job.ok:
        raise RuntimeError(f"{label}: job failed\n{job.describe()}")
    with open(out) as f:
        doc = json.load(f)
    rows = {int(r["bytes"]): r for r in doc["results"] if not r.get("inplace")}
    wrong = {b: r["wrong"] for b, r in rows.items() if r.get("wrong")}
    if wrong:
        raise RuntimeError(f"{label}: WRONG results {wrong}")
    # The planner logs counts in elements (allgather: per rank); kumi-bench rows are total bytes.
    choice = re.compile(rf"{args.collective} count (\d+) on (\d+) ranks: (\w+)")
    chosen = {}
    for m in choice.finditer(job[0].stderr + job[0].stdout):
        scale = int(m.group(2)) if args.collective == "allgather" else 1
        chosen[int(m.group(1)) * 4 * scale] = m.group(3)
    return rows, chosen


def main(argv):
    args = parse_args(argv)
    ok, why = vcluster.can_create_namespaces()
    if not ok:
        print(f"vcluster_compare.py: cannot build a virtual cluster here: {why}", file=sys.stderr)
        return 2
    variants = [("auto", None)] + [(a, a) for a in args.algos]
    best = {label: {} for label, _ in variants}  # busbw, and for small sizes time
    best_time = {label: {} for label, _ in variants}
    auto_choice = {}
    with vcluster.VirtualCluster(nodes=args.nodes, rate=args.rate) as vc, \
            tempfile.TemporaryDirectory(prefix="kumi-vc-bench-") as workdir:
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for label, algo in order:
                try:
                    rows, chosen = run_variant(vc, args, label, algo, workdir)
                except RuntimeError as exc:
                    print(f"vcluster_compare.py: FAILED: {exc}", file=sys.stderr)
                    return 1
                if label == "auto":
                    auto_choice.update(chosen)
                for size, row in rows.items():
                    best[label][size] = max(best[label].get(size, 0.0), row["busbw_GBps"])
                    best_time[label][size] = min(best_time[label].get(size, float("inf")), row["time_us"])
                print(f"  round {r + 1}: {label} ok", flush=True)
    ref = args.algos[0]
    sizes = sorted(best[ref])
    print(f"\n# {args.collective} float32, {args.nodes} nodes x {args.ranks_per_node} ranks, "
          f"links {args.rate} each way (tbf), best of {args.rounds} interleaved rounds")
    print(f"# time in us (busbw GB/s); x{ref}: that variant's time relative to {ref}'s (< 1 is faster)")
    labels = [label for label, _ in variants]
    print(f"{'size':>10}" + "".join(f"{l:>24}" for l in labels) + "  planner chose")
    rows = []
    for s in sizes:
        cells, entry = "", {"bytes": s, "time_us": {}, "busbw_GBps": {}, "time_over_" + ref: {},
                            "auto_choice": auto_choice.get(s)}
        for l in labels:
            t, bw = best_time[l].get(s), best[l].get(s)
            rel = t / best_time[ref][s] if t and best_time[ref].get(s) else None
            entry["time_us"][l], entry["busbw_GBps"][l], entry["time_over_" + ref][l] = t, bw, rel
            cells += f" {t:>10.1f} ({bw:6.3f}) x{rel:4.2f}" if t is not None else f"{'-':>24}"
        rows.append(entry)
        print(f"{s:>10}{cells}  {auto_choice.get(s, '?')}")
    predictions = predict(args, sizes) if args.predict else {}
    if predictions:
        print(f"\n# kumi-sim on {args.predict}: predicted / measured time (us) and the error")
        print(f"{'size':>10}" + "".join(f"{a:>30}" for a in args.algos))
        for s in sizes:
            cells = ""
            for a in args.algos:
                p, m = predictions.get((s, a)), best_time[a].get(s)
                cells += (f"{p:>11.0f} / {m:>9.0f} {100 * (p - m) / m:+6.0f}%" if p and m else f"{'-':>30}")
            print(f"{s:>10}{cells}")
        for entry in rows:
            entry["predicted_time_us"] = {a: predictions.get((entry["bytes"], a)) for a in args.algos}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"collective": args.collective, "nodes": args.nodes, "ranks_per_node": args.ranks_per_node,
                       "rate": args.rate, "rounds": args.rounds, "algorithms": args.algos, "rows": rows}, f, indent=1)
    return 0


def predict(args, sizes):
    """{(bytes, algorithm): predicted us} from kumi-sim for the measured sizes."""
    sim = os.path.join(os.path.abspath(args.build_dir), "kumi-sim")
    out = {}
    for s in sizes:
        argv = [sim, args.collective, "--cluster", args.predict, "-b", str(s), "-e", str(s),
                "--nodes", str(args.nodes), "--algo", ",".join(args.algos),
                # kumi-bench's calls run back to back: predict its loop, not a lone call
                "-n", str(args.n), "-w", str(args.w)]
        if isinstance(args.ranks, int):
            argv += ["--ranks-per-node", str(args.ranks)]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout)
        if res.returncode != 0:
            print(f"vcluster_compare.py: kumi-sim failed: {res.stderr.strip()}", file=sys.stderr)
            return {}
        for size, name, time_us, _, _ in sim_table.parse(res.stdout):
            out[(size, name)] = time_us
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
