#!/usr/bin/env python3
"""Plots kumi-sim's predicted busbw against message size, one line per algorithm.

    benchmarks/plot_sim.py --build-dir build --cluster benchmarks/clusters/v100-128x8-roce.conf \\
        -b 64K -e 1G --algos ring,tree,hierarchical,rabenseifner --out docs/sim-1024-gpus.png

Needs matplotlib (pip install matplotlib); the numbers come from kumi-sim alone.
"""
import argparse
import os
import subprocess
import sys
import textwrap

import sim_table


def parse_size(text):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(text[:-1] if mult != 1 else text) * mult


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--collective", default="allreduce")
    ap.add_argument("-b", default="64K")
    ap.add_argument("-e", default="1G")
    ap.add_argument("-f", default="4")
    ap.add_argument("--algos", default="ring,tree,hierarchical,rabenseifner")
    ap.add_argument("--max-bytes-for", default="tree=256M,rabenseifner=256M",
                    help="stop slow-to-simulate algorithms earlier: ALGO=SIZE,...")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    limits = {k: parse_size(v) for k, v in (i.split("=") for i in args.max_bytes_for.split(",") if i)}
    sim = os.path.join(os.path.abspath(args.build_dir), "kumi-sim")
    series, title = {}, ""
    for algo in args.algos.split(","):
        top = min(parse_size(args.e), limits.get(algo, parse_size(args.e)))
        res = subprocess.run([sim, args.collective, "--cluster", args.cluster, "-b", args.b, "-e", str(top), "-f", args.f,
                              "--algo", algo], capture_output=True, text=True)
        if res.returncode != 0:
            print(f"plot_sim.py: kumi-sim failed: {res.stderr.strip()}", file=sys.stderr)
            return 1
        title = res.stdout.splitlines()[0].lstrip("# ")
        for size, name, _, _, busbw in sim_table.parse(res.stdout):
            series.setdefault(name, []).append((size, busbw))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    for algo, points in series.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=algo)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("predicted busbw (GB/s)")
    ax.set_title("\n".join(textwrap.wrap(title, 110)), fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
