#!/usr/bin/env bash
# malloc + free pairs of one size through LD_PRELOAD (benches/c/pair.c), poolside against
# Debian's mimalloc (package libmimalloc2.0; skipped when missing). For each size prints
# callgrind's instructions per pair (the difference between runs of 200,000 and 100,000
# pairs, so start-up cancels out; load-independent) and the minimum over RUNS timed runs
# of PAIRS pairs in ns per pair (wall time, so noisy on a shared machine).
#
# Usage: benches/c_pairs.sh [RUNS] [PAIRS]    env: POOLSIDE_LIB, SIZES
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
pairs=${2:-20000000}
sizes=${SIZES:-"16 64 128 160 256 512 1024 4096 65536"}
target=${CARGO_TARGET_DIR:-target}
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
if [ -z "${POOLSIDE_LIB:-}" ]; then
  cargo build --release --quiet -p poolside-capi
  POOLSIDE_LIB=$(realpath "$target/release/libpoolside.so")
fi
libs=("poolside|$POOLSIDE_LIB")
mi=/usr/lib/$multiarch/libmimalloc.so.2
if [ -e "$mi" ]; then libs+=("mimalloc|$mi"); else echo "skipping mimalloc: $mi not found" >&2; fi
mkdir -p "$target/bench-preload"
bin=$target/bench-preload/pair
gcc -O2 -Wall -Wextra -Werror benches/c/pair.c -o "$bin"

instructions() { # lib size pairs -> total instructions
  LD_PRELOAD=$1 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$2" "$3" 2>&1 |
    awk '/Collected/ { print $4 }'
}
ns_per_pair() { # lib size -> minimum over runs
  local best=
  for ((r = 0; r < runs; r++)); do
    local t0 t1
    t0=$(date +%s%N); LD_PRELOAD=$1 "$bin" "$2" "$pairs"; t1=$(date +%s%N)
    best=$(awk -v b="$best" -v t=$(( t1 - t0 )) -v n="$pairs" 'BEGIN { v = t / n; print (b == "" || v < b) ? v : b }')
  done
  printf '%.1f' "$best"
}

header="| size |" rule="|---:|"
for l in "${libs[@]}"; do header+=" ${l%%|*} instr/pair | ${l%%|*} ns/pair |"; rule+="---:|---:|"; done
echo "$header"; echo "$rule"
for s in $sizes; do
  line="| $s |"
  for l in "${libs[@]}"; do
    lib=${l#*|}
    a=$(instructions "$lib" "$s" 100000) b=$(instructions "$lib" "$s" 200000)
    line+=" $(( (b - a) / 100000 )) | $(ns_per_pair "$lib" "$s") |"
  done
  echo "$line"
done
