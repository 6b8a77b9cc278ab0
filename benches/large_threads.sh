#!/usr/bin/env bash
# benches/c/large_threads.c (threads looping over 1-8 MiB buffers) under several
# allocators through LD_PRELOAD, with the runs of the allocators interleaved (run 1 of
# each, then run 2 of each, ...) so that a machine loaded by something else weighs on all
# of them alike. Prints a markdown table of medians: wall seconds, CPU seconds (user +
# system), system seconds, peak RSS.
#
# Usage: benches/large_threads.sh [RUNS=7] [PROGRAM ARGS...]
#        env: LIBS: "name=path ..." (default: glibc, poolside, mimalloc, jemalloc; a
#             poolside build to compare against can be added, e.g. before=/tmp/old.so)
#             POOLSIDE_LIB (default: a fresh release build of poolside-capi)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
shift || true
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(4 10000 3)
target=${CARGO_TARGET_DIR:-target}
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
if [ -z "${POOLSIDE_LIB:-}" ]; then
  cargo build --release --quiet -p poolside-capi
  POOLSIDE_LIB=$(realpath "$target/release/libpoolside.so")
fi
libdir=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
libs=(${LIBS:-glibc= poolside=$POOLSIDE_LIB mimalloc=$libdir/libmimalloc.so.2 jemalloc=$libdir/libjemalloc.so.2})
build=$target/bench-preload
mkdir -p "$build"
gcc -O2 -pthread -Wall -Wextra -Werror benches/c/large_threads.c -o "$build/large_threads"

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A samples
for ((r = 0; r < runs; r++)); do
  for l in "${libs[@]}"; do
    name=${l%%=*} lib=${l#*=}
    # %e wall, %U user, %S system seconds, %M peak RSS KiB.
    line=$(/usr/bin/time -f "%e %U %S %M" env ${lib:+LD_PRELOAD=$lib} "$build/large_threads" "${args[@]}" 2>&1 >/dev/null | tail -1)
    samples[$name]+="$line"$'\n'
  done
done
echo "large_threads ${args[*]}: median of $runs interleaved runs on $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
echo "| allocator | wall s | CPU s | system s | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|"
for l in "${libs[@]}"; do
  name=${l%%=*}
  s=${samples[$name]}
  w=$(awk 'NF { print $1 }' <<<"$s" | median)
  c=$(awk 'NF { print $2 + $3 }' <<<"$s" | median)
  y=$(awk 'NF { print $3 }' <<<"$s" | median)
  m=$(awk 'NF { print $4 / 1024 }' <<<"$s" | median)
  printf '| %s | %.2f | %.2f | %.2f | %.0f |\n' "$name" "$w" "$c" "$y" "$m"
done
