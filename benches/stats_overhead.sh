#!/usr/bin/env bash
# What the statistics counters cost on the fast path: examples/mixed.rs (a deterministic
# alloc/free workload) built with and without them (feature no-counters), compared by
# instructions executed (callgrind: exact and repeatable) and by the best of 15
# wall-clock runs. Needs valgrind (Debian package valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p poolside-benches --example mixed
cp "$CARGO_TARGET_DIR/release/examples/mixed" /tmp/mixed-stats-on
cargo build --release -q -p poolside-benches --example mixed --features no-counters
cp "$CARGO_TARGET_DIR/release/examples/mixed" /tmp/mixed-stats-off

instructions() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" 500000 2>&1 |
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
on_i=$(instructions /tmp/mixed-stats-on); off_i=$(instructions /tmp/mixed-stats-off)
on_t=$(best_ns /tmp/mixed-stats-on); off_t=$(best_ns /tmp/mixed-stats-off)
python3 - "$on_i" "$off_i" "$on_t" "$off_t" <<'PY'
import sys
on_i, off_i, on_t, off_t = map(float, sys.argv[1:])
print("| measure | counters on | counters off | on / off |")
print("|---|---:|---:|---:|")
print(f"| instructions, 500k steps | {on_i:,.0f} | {off_i:,.0f} | {on_i / off_i:.4f} |")
print(f"| best of 15 runs, ns per step (2M steps) | {on_t:.2f} | {off_t:.2f} | {on_t / off_t:.4f} |")
PY
