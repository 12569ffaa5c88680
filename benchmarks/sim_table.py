"""Reads kumi-sim's table: one place that knows its columns, for the scripts that use it."""
import re

ROW = re.compile(r"\s+(\d+)\s+\d+\s+float\s+(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$")


def parse(text):
    """[(bytes, algorithm, time_us, algbw_GBps, busbw_GBps)] from kumi-sim's standard output."""
    rows = []
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            rows.append((int(m.group(1)), m.group(2), float(m.group(3)), float(m.group(4)), float(m.group(5))))
    return rows
