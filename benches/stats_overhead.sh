#!/usr/bin/env bash
# What the statistics cost: the engine built with and without the statistics work (feature
# no-counters), compared three ways: instructions executed (callgrind: exact and
# repeatable) by examples/mixed.rs (a deterministic alloc/free workload, over 4,096 and
# over 200,000 live blocks) and by pair loops of one size; the best of 15 wall-clock runs of mixed; and the host criterion benchmark's
# poolside lines (two alternating rounds; SKIP_CRITERION=1 skips this part, which takes
# about 4 minutes). Needs valgrind (Debian package valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release -q -p poolside-benches --example mixed
cp "$CARGO_TARGET_DIR/release/examples/mixed" /tmp/mixed-stats-on
cargo build --release -q -p poolside-benches --example mixed --features no-counters
cp "$CARGO_TARGET_DIR/release/examples/mixed" /tmp/mixed-stats-off

instructions() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
best_ns() {
  local best=
  for _ in $(seq 15); do
    v=$("$1" 2>&1 | sed -n 's/ ns\/step//p')
    best=$(python3 -c "print(min(float('$v'), float('${best:-inf}')))")
  done
  echo "$best"
}
on_i=$(instructions /tmp/mixed-stats-on 500000); off_i=$(instructions /tmp/mixed-stats-off 500000)
# The same mix over 200,000 live blocks (about 300 MB): a heap of thousands of pages, where
# a fold that walked every page cost more than the allocations did.
big_on_i=$(instructions /tmp/mixed-stats-on 1000000 live=200000)
big_off_i=$(instructions /tmp/mixed-stats-off 1000000 live=200000)
on_t=$(best_ns /tmp/mixed-stats-on); off_t=$(best_ns /tmp/mixed-stats-off)
pairs=()
for size in 16 256 4096 65536 262144 1048576; do
  pairs+=("$size" "$(instructions /tmp/mixed-stats-on 500000 "$size")" \
          "$(instructions /tmp/mixed-stats-off 500000 "$size")")
done
python3 - "$on_i" "$off_i" "$on_t" "$off_t" "$big_on_i" "$big_off_i" "${pairs[@]}" <<'PY'
import sys
on_i, off_i, on_t, off_t, big_on, big_off = map(float, sys.argv[1:7])
print("| measure | counters on | counters off | on / off |")
print("|---|---:|---:|---:|")
print(f"| mixed: instructions, 500k steps | {on_i:,.0f} | {off_i:,.0f} | {on_i / off_i:.4f} |")
print(f"| mixed: best of 15 runs, ns per step (2M steps) | {on_t:.2f} | {off_t:.2f} | {on_t / off_t:.4f} |")
print(f"| mixed over 200,000 live blocks: instructions, 1M steps | {big_on:,.0f} | {big_off:,.0f} | {big_on / big_off:.4f} |")
rest = sys.argv[7:]
for k in range(0, len(rest), 3):
    size, on, off = rest[k], float(rest[k + 1]), float(rest[k + 2])
    print(f"| pairs of {size} B: instructions, 500k pairs | {on:,.0f} | {off:,.0f} | {on / off:.4f} |")
PY

[ -n "${SKIP_CRITERION:-}" ] && exit 0

# The host benchmark (criterion), poolside's lines only, with and without the counters:
# two rounds, alternating, keeping each line's lower median (a busy moment only adds).
for round in 1 2; do
  cargo bench -q -p poolside-benches --bench host -- poolside \
    --save-baseline "stats-on-$round" >/dev/null 2>&1
  cargo bench -q -p poolside-benches --bench host --features no-counters -- poolside \
    --save-baseline "stats-off-$round" >/dev/null 2>&1
done
python3 - "$CARGO_TARGET_DIR/criterion" <<'PY'
import json, math, os, sys
root = sys.argv[1]
def est(d, variant):
    vals = []
    for r in (1, 2):
        with open(os.path.join(d, f"stats-{variant}-{r}", "estimates.json")) as f:
            vals.append(json.load(f)["median"]["point_estimate"])
    return min(vals)
def fmt(ns):
    return f"{ns / 1000:.2f} µs" if ns >= 10_000 else f"{ns:.1f} ns"
rows = []
for group in sorted(os.listdir(root)):
    pdir = os.path.join(root, group, "poolside")
    if not os.path.isdir(pdir):
        continue
    for case in sorted(os.listdir(pdir), key=lambda c: (len(c), c)):
        d = os.path.join(pdir, case)
        if os.path.exists(os.path.join(d, "stats-off-2", "estimates.json")):
            rows.append((f"{group} {case}", est(d, "on"), est(d, "off")))
print()
print("| host benchmark line | counters on | counters off | on / off |")
print("|---|---:|---:|---:|")
for name, on, off in rows:
    print(f"| {name} | {fmt(on)} | {fmt(off)} | {on / off:.3f} |")
g = math.exp(sum(math.log(on / off) for _, on, off in rows) / len(rows))
print(f"| geometric mean | | | {g:.3f} |")
PY
