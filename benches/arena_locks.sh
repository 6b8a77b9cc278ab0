#!/usr/bin/env bash
# How often the engine's global arena lock is taken, and found held, in the Rust workload
# (benches/src/rust_workload.rs, poolside as #[global_allocator]) and in the
# multi-threaded C programs of benches/c under the preload; plus their futex, madvise,
# munmap, mmap and mremap calls (strace -f -c). The counts are the lock's own
# (`SpinLock::counts`), read by gdb from the `ARENA` static when the process calls
# exit_group. Needs gdb and strace.
#
# Usage: benches/arena_locks.sh [PROGRAM...]   (default: all; rust_workload is one)
#        env: POOLSIDE_LIB (a libpoolside.so with symbols)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release -q -p poolside-benches --example rust_workload_poolside
if [ -z "${POOLSIDE_LIB:-}" ]; then
  cargo build --release -q -p poolside-capi
  POOLSIDE_LIB=$CARGO_TARGET_DIR/release/libpoolside.so
fi
build=$CARGO_TARGET_DIR/bench-preload
mkdir -p "$build"
for p in larson prodcons false_sharing churn large_threads; do
  gcc -O2 -pthread -Wall -Wextra -Werror benches/c/$p.c -o "$build/$p"
done

# locks OBJ [LD_PRELOAD] -- command: "taken contended" of the ARENA static in OBJ.
locks() {
  local obj=$1 preload=$2; shift 3
  local sym
  sym=$(nm "$obj" | awk '/4host5arena5ARENA/ && !n++ { print $3 }')
  # SpinLock is repr(C): state (u32, padded), taken (u64), contended (u64).
  gdb -q -batch -ex 'set pagination off' -ex 'set startup-with-shell off' \
    ${preload:+-ex "set environment LD_PRELOAD=$preload"} \
    -ex 'catch syscall exit_group' -ex run -ex "x/3gd &'$sym'" --args "$@" 2>/dev/null |
    grep -A1 "<$sym>:" | tr '\n' ' ' | awk '{ print $4, $7 }'
}
syscalls() { # [LD_PRELOAD] -- command: "futex madvise munmap mmap mremap"
  local preload=$1; shift 2
  local out
  out=$(mktemp)
  strace -f -c -e trace=futex,madvise,munmap,mmap,mremap ${preload:+-E LD_PRELOAD=$preload} -o "$out" "$@" >/dev/null
  # The calls column is the 4th of a line without errors, and also of one with them.
  awk '{ n[$NF] = $4 } END { print n["futex"] + 0, n["madvise"] + 0, n["munmap"] + 0, n["mmap"] + 0, n["mremap"] + 0 }' "$out"
  rm -f "$out"
}

echo "| program | arena lock taken | found held | futex | madvise | munmap | mmap | mremap |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
# wanted NAME: whether NAME was asked for (all are when none was).
wanted() { [ ${#only[@]} -eq 0 ] || [[ " ${only[*]} " == *" $1 "* ]]; }
only=("$@")
rw=$CARGO_TARGET_DIR/release/examples/rust_workload_poolside
wanted rust_workload && {
read -r t c < <(locks "$rw" "" -- "$rw")
read -r f m u mm r < <(syscalls "" -- "$rw")
echo "| rust_workload (8 threads, 10 rounds, 10,000 entries) | $t | $c | $f | $m | $u | $mm | $r |"
}
for run in "larson 4 20 400000 2000" "prodcons 2 4000000" "false_sharing 2 2000 20000 8" "churn 2 6000000 20000" \
  "large_threads 4 10000" "large_threads 4 10000 8"; do
  set -- $run
  p=$1; shift
  wanted "$p" || continue
  read -r t c < <(locks "$POOLSIDE_LIB" "$POOLSIDE_LIB" -- "$build/$p" "$@")
  read -r f m u mm r < <(syscalls "$POOLSIDE_LIB" -- "$build/$p" "$@")
  echo "| $p $* | $t | $c | $f | $m | $u | $mm | $r |"
done
