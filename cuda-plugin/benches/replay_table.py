#!/usr/bin/env python3
"""Rows of BENCHMARKS.md's "Snapshot replay" table: `poolside replay --json` on each snapshot,
on a device of PyTorch's peak size (the replay's default) and on an 80 GiB device.

    python3 cuda-plugin/benches/replay_table.py [POOLSIDE] [SNAPSHOT...]

POOLSIDE defaults to target/release/poolside; snapshots to cuda-plugin/tests/data/snapshots/.
"""
import glob, json, os, subprocess, sys

MIB = 1 << 20
args = sys.argv[1:]
exe = args.pop(0) if args and not args[0].endswith(".pickle") else "target/release/poolside"
snaps = args or sorted(glob.glob("cuda-plugin/tests/data/snapshots/*.pickle"))
for snap in snaps:
    name = os.path.basename(snap).rsplit(".", 1)[0]
    for label, conf in (("PyTorch peak", "stats:false"), ("80 GiB", "stats:false,device_capacity_mb:81920")):
        env = dict(os.environ, POOLSIDE_CONF=conf)
        out = subprocess.run([exe, "replay", "--json", snap], env=env, capture_output=True, text=True)
        if out.returncode not in (0, 1):
            print(f"| {name} | error {out.returncode}: {out.stderr.strip()} |")
            continue
        r = json.loads(out.stdout)
        cut = " (cut short)" if r["snapshot"]["cut_short_at_byte"] is not None else ""
        for d in r["devices"]:
            alloc = d["peak_allocated_bytes"]
            pt, ps, pf = d["pytorch"], d["poolside"], d["poolside_expandable_false"]
            cell = lambda x: f"{x['peak_reserved_bytes'] / MIB:.1f} ({x['reserved_over_allocated']:.3f})"
            ok = ps["peak_reserved_bytes"] <= 1.05 * alloc
            below = ps["peak_reserved_bytes"] <= pt["peak_reserved_bytes"]
            print(f"| {name}{cut} | {d['device']} | {label} | {d['trace']['entries']:,} | {alloc / MIB:.1f} "
                  f"| {cell(pt)} | {cell(ps)} | {ps['alloc_retries']} / {ps['ooms']} "
                  f"| {cell(pf)} | {pf['alloc_retries']} / {pf['ooms']} | {d['not_replayed']} "
                  f"| 1.05x: {'met' if ok else 'missed'}; <= PyTorch: {'met' if below else 'missed'} |")
