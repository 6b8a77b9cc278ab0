#!/usr/bin/env bash
# Allocation benchmarks of benches/c under glibc, libpoolside.so, mimalloc, jemalloc and
# tcmalloc, through LD_PRELOAD. Prints, and writes to $OUT (default
# target/bench-preload.md), a markdown table: median wall time and median peak RSS of
# RUNS alternating rounds (default 5), each as a ratio to glibc's, and poolside's ratios
# to mimalloc.
#
# Installs nothing. Needs: gcc, GNU time (/usr/bin/time, Debian package `time`), cargo
# (builds libpoolside.so), and for the other allocators the Debian packages
#   libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4
# (an allocator whose library is missing is reported and skipped).
#
# Usage: benches/preload.sh [RUNS]     env: POOLSIDE_LIB, OUT, BENCH_SCALE (work factor,
#                                      default 1; use e.g. 0.2 for a quick look),
#                                      PROGRAMS (a subset, e.g. "mstress rptest"; default all)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
scale=${BENCH_SCALE:-1}
target=${CARGO_TARGET_DIR:-target}
out=${OUT:-$target/bench-preload.md}

[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }

if [ -z "${POOLSIDE_LIB:-}" ]; then
  cargo build --release --quiet -p poolside-capi
  POOLSIDE_LIB=$(realpath "$target/release/libpoolside.so")
fi

build=$target/bench-preload
mkdir -p "$build"
all_programs="larson prodcons false_sharing churn big_buffers large_threads
  xmalloc_test glibc_simple glibc_thread sh6bench mstress rptest alloc_test"
read -r -a programs <<< "$(echo ${PROGRAMS:-$all_programs})"
for p in "${programs[@]}"; do
  [ -f benches/c/$p.c ] || { echo "unknown program $p (known: $(echo $all_programs))" >&2; exit 1; }
done
for p in "${programs[@]}"; do
  gcc -O2 -pthread -Wall -Wextra -Werror benches/c/$p.c -o "$build/$p"
done

source benches/peers.sh

# Scaled arguments of each benchmark (work is linear in the scaled number).
s() { awk -v v="$1" -v f="$scale" 'BEGIN { n = int(v * f); print (n < 1 ? 1 : n) }'; }
args_larson="4 $(s 20) 400000 2000"
args_prodcons="2 $(s 4000000)"
args_false_sharing="2 $(s 2000) 20000 8"
args_churn="2 $(s 6000000) 20000"
args_big_buffers="$(s 2000) 2"
args_large_threads="4 $(s 10000) 3"
# The classic benchmarks, 0.4-1.5 s each under glibc at scale 1 (see the top of each file).
args_xmalloc_test="2 2 $(s 3000000) 0"
args_glibc_simple="$(s 300000)"
args_glibc_thread="2 $(s 30000000) 1024 4096"
args_sh6bench="2 $(s 6000) 2000 1 1000"
args_mstress="4 10 $(s 700000) 500 1000"
args_rptest="2 $(s 6000) 1000 2000 4"
args_alloc_test="2 $(s 25000000) 65536"

# Alternating: each round runs every allocator once, so that a slower spell of this
# shared VM (its speed moved by 2x within the hour on 2026-12-07) falls on all of them
# rather than on the one whose runs it happened to catch.
declare -A time_of rss_of times_of rsss_of
for p in "${programs[@]}"; do
  args_var=args_$p
  for ((r = 0; r < runs; r++)); do
    for a in "${present[@]}"; do
      name=${a%%|*} lib=${a#*|}
      # %e: elapsed seconds; %M: peak RSS in KiB.
      # Only the benchmark is preloaded (env execs it in the process time measures).
      if ! line=$(/usr/bin/time -f "%e %M" env ${lib:+LD_PRELOAD=$lib} "$build/$p" ${!args_var} 2>&1 >/dev/null | tail -1); then
        echo "$p under $name failed: $line" >&2; exit 1
      fi
      times_of[$p,$name]+="${line% *} " rsss_of[$p,$name]+="${line#* } "
    done
  done
  for a in "${present[@]}"; do
    name=${a%%|*}
    time_of[$p,$name]=$(echo ${times_of[$p,$name]} | tr ' ' '\n' | median)
    rss_of[$p,$name]=$(echo ${rsss_of[$p,$name]} | tr ' ' '\n' | median)
    echo "$p / $name: ${time_of[$p,$name]} s, ${rss_of[$p,$name]} KiB (median of $runs)" >&2
  done
done

{
  echo "Median of $runs alternating rounds (scale $scale) on $(nproc) CPUs; ratios to glibc, lower is better."
  echo "Time in seconds, peak RSS in MiB."
  echo
  header="| benchmark |" sep="|---|"
  for a in "${present[@]}"; do header+=" ${a%%|*} time | ${a%%|*} RSS |"; sep+="---:|---:|"; done
  both=0
  [ -n "${time_of[${programs[0]},poolside]:-}" ] && [ -n "${time_of[${programs[0]},mimalloc]:-}" ] && both=1
  [ $both = 1 ] && header+=" poolside/mimalloc time | poolside/mimalloc RSS |" && sep+="---:|---:|"
  echo "$header"; echo "$sep"
  for p in "${programs[@]}"; do
    row="| $p |"
    base_t=${time_of[$p,glibc]} base_m=${rss_of[$p,glibc]}
    for a in "${present[@]}"; do
      n=${a%%|*}
      row+=$(awk -v t="${time_of[$p,$n]}" -v m="${rss_of[$p,$n]}" -v bt="$base_t" -v bm="$base_m" \
        'BEGIN { printf " %.2f (%.2fx) | %.1f (%.2fx) |", t, (bt > 0 ? t / bt : 0), m / 1024, (bm > 0 ? m / bm : 0) }')
    done
    [ $both = 1 ] && row+=$(awk -v t="${time_of[$p,poolside]}" -v m="${rss_of[$p,poolside]}" \
      -v bt="${time_of[$p,mimalloc]}" -v bm="${rss_of[$p,mimalloc]}" \
      'BEGIN { printf " %.2fx | %.2fx |", (bt > 0 ? t / bt : 0), (bm > 0 ? m / bm : 0) }')
    echo "$row"
  done
} | tee "$out"
echo "written to $out" >&2
