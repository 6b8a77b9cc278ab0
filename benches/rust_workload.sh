#!/usr/bin/env bash
# The Rust workload (benches/src/rust_workload.rs: 8 threads, HashMaps of format! keys and
# Vecs of small buffers, maps dropped on another thread) built with three global
# allocators: poolside, the mimalloc crate, std's System. Runs them alternating for ROUNDS
# rounds (default 5) under GNU time and prints, per allocator, the median and range of user
# and system CPU seconds, wall seconds, minor faults, involuntary context switches and peak
# RSS. With STRACE=1, also one run of each under `strace -f -c`, counting sched_yield,
# futex, madvise, mmap and munmap. Extra arguments go to the workload (THREADS ROUNDS
# ENTRIES). Needs GNU time (/usr/bin/time, Debian package time) and, for STRACE=1, strace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
ROUNDS=${ROUNDS:-5}
ALLOCS=(poolside mimalloc system)
cargo build --release -q -p poolside-benches \
  --example rust_workload_poolside --example rust_workload_mimalloc --example rust_workload_system
dir=$(mktemp -d /tmp/rust-workload.XXXXXX)
trap 'rm -rf "$dir"' EXIT
for a in "${ALLOCS[@]}"; do
  cp "$CARGO_TARGET_DIR/release/examples/rust_workload_$a" "$dir/$a"
done
echo "load before: $(uptime)"
for r in $(seq "$ROUNDS"); do
  for a in "${ALLOCS[@]}"; do
    /usr/bin/time -f "%U %S %e %R %c %M" -o "$dir/time" "$dir/$a" "$@" >/dev/null
    echo "$a $(cat "$dir/time")" >>"$dir/runs"
  done
done
echo "load after: $(uptime)"
if [ -n "${STRACE:-}" ]; then
  for a in "${ALLOCS[@]}"; do
    strace -f -c -e trace=sched_yield,futex,madvise,mmap,munmap -o "$dir/strace-$a" \
      "$dir/$a" "$@" >/dev/null
  done
fi
python3 - "$dir" "$ROUNDS" "${ALLOCS[@]}" <<'PY'
import os, statistics, sys
d, rounds, allocs = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = {a: [] for a in allocs}
for line in open(os.path.join(d, "runs")):
    a, *v = line.split()
    runs[a].append([float(x) for x in v])
cols = ["user s", "sys s", "wall s", "minor faults", "invol. ctx sw", "peak RSS MB"]
def cell(vals, k):
    if k == 5:
        vals = [v / 1024 for v in vals]
    fmt = (lambda v: f"{v:.2f}") if k < 3 else (lambda v: f"{v:,.0f}")
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}-{fmt(max(vals))})"
print(f"\nmedian (min-max) of {rounds} alternating runs")
print("| allocator | " + " | ".join(cols) + " | CPU s |")
print("|---|" + "---:|" * (len(cols) + 1))
med = {}
for a in allocs:
    rs = runs[a]
    cpu = [r[0] + r[1] for r in rs]
    med[a] = [statistics.median([r[k] for r in rs]) for k in range(6)] + [statistics.median(cpu)]
    print(f"| {a} | " + " | ".join(cell([r[k] for r in rs], k) for k in range(6))
          + f" | {statistics.median(cpu):.2f} |")
if "mimalloc" in med:
    m = med["mimalloc"]
    print("\nratios of medians to mimalloc (targets: CPU and wall <= 1.0, faults <= 2.0, RSS <= 1.0)")
    for a in allocs:
        x = med[a]
        print(f"  {a}: CPU {x[6] / m[6]:.2f}, wall {x[2] / m[2]:.2f}, "
              f"faults {x[3] / max(m[3], 1):.2f}, RSS {x[5] / m[5]:.2f}")
names = ["sched_yield", "futex", "madvise", "mmap", "munmap"]
if os.path.exists(os.path.join(d, f"strace-{allocs[0]}")):
    print("\nsystem calls, one run each (strace -f -c)")
    print("| allocator | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for a in allocs:
        calls = {}
        for line in open(os.path.join(d, f"strace-{a}")):
            f = line.split()
            if f and f[-1] in names and f[0][0].isdigit():
                # columns: % time, seconds, usecs/call, calls, [errors], syscall
                calls[f[-1]] = int(f[3])
        print(f"| {a} | " + " | ".join(f"{calls.get(n, 0):,}" for n in names) + " |")
PY
