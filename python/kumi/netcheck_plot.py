"""The picture of a kumi-netcheck run, from its JSON report (--json):

    kumi-netcheck-plot report.json netcheck.png

Left: the pairwise bandwidth matrix (source rows, destination columns; the best rail of each
pair), slow or failed links outlined in red. Right: allreduce busbw against message size, one
line per algorithm. Needs matplotlib (pip install matplotlib); the report itself does not.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Dict, List


def load(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"kumi-netcheck-plot: cannot read {path}: {e}") from None
    if report.get("tool") != "kumi-netcheck" or "links" not in report or "nodes" not in report:
        raise SystemExit(f"kumi-netcheck-plot: {path} is not a kumi-netcheck report (written by --json)")
    return report


def matrix(report: Dict[str, Any], transport: str):
    """Bandwidth in GB/s per (src, dst) for one transport, the best rail of each pair, NaN where
    unmeasured; and the set of (src, dst) with a slow, laggy or failed link."""
    nodes: List[str] = report["nodes"]
    index = {n: i for i, n in enumerate(nodes)}
    m = [[math.nan] * len(nodes) for _ in nodes]
    bad = set()
    for link in report["links"]:
        if link["transport"] != transport:
            continue
        s, d = index[link["src_node"]], index[link["dst_node"]]
        gbps = (link.get("bandwidth_bytes_per_second") or 0) / 1e9
        if math.isnan(m[s][d]) or gbps > m[s][d]:
            m[s][d] = gbps
        if link.get("slow") or link.get("laggy") or link.get("error"):
            bad.add((s, d))
    return m, bad


def plot(report: Dict[str, Any], out: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        raise SystemExit("kumi-netcheck-plot: matplotlib is not installed (pip install matplotlib)") from None
    nodes = report["nodes"]
    inter = [l for l in report["links"] if l["src_node"] != l["dst_node"]]
    transport = inter[0]["transport"] if inter else "tcp"
    m, bad = matrix(report, transport)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    image = left.imshow(m, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=left, label="GB/s")
    left.set_xticks(range(len(nodes)), nodes, rotation=60, ha="right", fontsize=7)
    left.set_yticks(range(len(nodes)), nodes, fontsize=7)
    left.set_xlabel("destination")
    left.set_ylabel("source")
    left.set_title(f"point-to-point bandwidth ({transport}); red: slow")
    for s, d in bad:
        left.add_patch(Rectangle((d - 0.5, s - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    for i, row in enumerate(m):
        for j, v in enumerate(row):
            if not math.isnan(v) and len(nodes) <= 12:
                left.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white")
    by_algo: Dict[str, List] = {}
    for row in report.get("allreduce", []):
        by_algo.setdefault(row["algorithm"], []).append((row["bytes"], row["busbw_bytes_per_second"] / 1e9))
    for algo, points in sorted(by_algo.items()):
        points.sort()
        right.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=algo)
    right.set_xscale("log", base=2)
    right.set_xlabel("message size (bytes)")
    right.set_ylabel("busbw (GB/s)")
    right.set_title("allreduce")
    if by_algo:
        right.legend(fontsize=8)
    else:
        right.text(0.5, 0.5, "no allreduce sweep in this run", ha="center", va="center", transform=right.transAxes)
    verdict = {0: "healthy", 1: "degraded", 2: "failed"}.get(report.get("exit_code"), "?")
    fig.suptitle(f"kumi-netcheck: {len(nodes)} nodes, {verdict}, {len(report.get('findings', []))} findings")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: List[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kumi-netcheck-plot", description=__doc__.splitlines()[0])
    p.add_argument("report", help="the JSON report of kumi-netcheck --json")
    p.add_argument("image", help="the image to write (.png, .svg, .pdf)")
    a = p.parse_args(argv)
    plot(load(a.report), a.image)


if __name__ == "__main__":
    main(sys.argv[1:])
