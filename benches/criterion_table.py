#!/usr/bin/env python3
"""Print the host benchmark as a markdown table of medians and ratios.

Reads criterion's results (target/criterion/<group>/<allocator>/<case>/new/estimates.json)
written by `cargo bench -p poolside-benches --bench host`. A ratio is peer time / poolside
time, so a value above 1.00 means poolside is faster.
"""
import json
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
PEERS = ["system", "mimalloc"]


def median_ns(path):
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def fmt(ns):
    return f"{ns / 1000:.2f} µs" if ns >= 10_000 else f"{ns:.1f} ns"


def main():
    rows = {}
    for group in sorted(os.listdir(ROOT)):
        gdir = os.path.join(ROOT, group)
        if not os.path.isdir(gdir) or group == "report":
            continue
        for alloc in os.listdir(gdir):
            adir = os.path.join(gdir, alloc)
            if not os.path.isdir(adir) or alloc == "report":
                continue
            for case in os.listdir(adir):
                est = os.path.join(adir, case, "new", "estimates.json")
                if os.path.exists(est):
                    rows.setdefault((group, case), {})[alloc] = median_ns(est)
    if not rows:
        sys.exit(f"no criterion results under {ROOT}: run the benchmark first")

    def order(key):
        group, case = key
        return (group, int(case) if case.isdigit() else 0, case)

    print("| benchmark | poolside | " + " | ".join(PEERS) + " | "
          + " | ".join(f"{p} / poolside" for p in PEERS) + " |")
    print("|---|---:|" + "---:|" * (2 * len(PEERS)))
    for key in sorted(rows, key=order):
        r = rows[key]
        if "poolside" not in r:
            continue
        cells = [fmt(r["poolside"])] + [fmt(r[p]) if p in r else "-" for p in PEERS]
        ratios = [f"{r[p] / r['poolside']:.2f}" if p in r else "-" for p in PEERS]
        print(f"| {key[0]} {key[1]} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main()
