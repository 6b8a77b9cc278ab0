#!/usr/bin/env bash
# LD_PRELOAD across programs other people wrote: CPython (its own test suite, and a json
# round trip, also with PYTHONMALLOC=malloc so that every object goes through malloc),
# sqlite3, GNU sort, perl, g++ (the driver, cc1plus and as, all preloaded), git (log -p
# and a full repack with its pack-objects child, of a generated 2,000-commit history), jq
# (a filter over a JSON array of 50,000 records), and cache-scratch, a classic allocator benchmark written from its published description
# (benches/c/cache_scratch.c). Inputs are made by benches/suite/make_inputs.py, the same
# bytes every time. Allocators: glibc, libpoolside.so, mimalloc, jemalloc, tcmalloc
# (benches/peers.sh), alternating: each round runs every program under every allocator.
#
# Prints, and writes to $OUT (default target/bench-preload-suite.md): median wall time,
# CPU time (user + sys) and peak RSS of RUNS rounds (default 5), poolside's ratios to
# mimalloc and to the best peer, and the geomeans.
#
# With PROFILE=1 it then runs every program once more under each allocator but glibc with
# `perf record -e cpu-clock` (a software clock: no hardware counters needed, so it works in a
# VM) and prints the share of the samples that fell in the allocator's library and in the
# kernel. 1 - (mimalloc's share) bounds what any allocator can gain over mimalloc on that
# program through its own code: an allocator that cost nothing would still take that
# fraction of mimalloc's time, unless it also sped up the program's own code (cache, TLB).
#
# Usage: benches/preload_suite.sh [RUNS]   env: POOLSIDE_LIB, OUT, BENCH_SCALE (default 1),
#   PROFILE (0 or 1; needs perf)
# Needs python3, sqlite3, sort, perl, g++, git and jq on PATH (Debian: apt-get install sqlite3
# g++ git jq) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
scale=${BENCH_SCALE:-1}
target=${CARGO_TARGET_DIR:-target}
out=${OUT:-$target/bench-preload-suite.md}
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
profile=${PROFILE:-0}
tools="python3 sqlite3 sort perl g++ git jq"
[ "$profile" = 1 ] && tools+=" perf"
for tool in $tools; do
  command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
if [ -z "${POOLSIDE_LIB:-}" ]; then
  cargo build --release --quiet -p poolside-capi
  POOLSIDE_LIB=$(realpath "$target/release/libpoolside.so")
fi
source benches/peers.sh

work=$(realpath -m "$target/bench-preload-suite")
mkdir -p "$work"
python3 benches/suite/make_inputs.py "$work" "$scale"
gcc -O2 -pthread -Wall -Wextra -Werror benches/c/cache_scratch.c -o "$work/cache_scratch"
# The repository, made anew from the stream (under glibc) and packed once, so that every
# measured repack starts from the same single pack.
rm -rf "$work/repo"
git init -q -b main "$work/repo"
git -C "$work/repo" fast-import --quiet < "$work/history.fi"
rm "$work/history.fi"
git -C "$work/repo" repack -adfq
reps=$(awk -v f="$scale" 'BEGIN { n = int(200000000 * f); print (n < 1000 ? 1000 : n) }')

# name|command (run in $work; the environment variable assignments before the program
# apply to it alone)
programs=(
  "cpython_tests|python3 -m test -q test_json test_re"
  "cpython_json|python3 json_work.py"
  "cpython_json_malloc|env PYTHONMALLOC=malloc python3 json_work.py"
  "sqlite3|sqlite3 :memory: .read\ load.sql"
  "sort|sort -o sorted.txt words.txt"
  "perl|perl -ne 'for (split) { \$c{\$_}++ } END { my @k = sort { \$c{\$b} <=> \$c{\$a} || \$a cmp \$b } keys %c; print scalar(@k), qq(\n) }' words.txt"
  "g++|g++ -O2 -std=c++17 -c templates.cpp -o templates.o"
  "git_log|git -C repo log -p --no-color"
  "git_repack|git -C repo repack -adfq --window=20 --threads=2"
  "jq|jq -c 'map(select(.score > 20) | {id, t: (.tags | join(\",\")), s: (.nested.a | add)}) | group_by(.t | length) | map({k: (.[0].t | length), n: length, s: (map(.s) | add)})' records.json"
  "cache_scratch|./cache_scratch 2 1000 8 $reps"
)

declare -A wall cpu rss
for ((r = 0; r < runs; r++)); do
  for p in "${programs[@]}"; do
    name=${p%%|*} cmd=${p#*|}
    for a in "${present[@]}"; do
      alloc=${a%%|*} lib=${a#*|}
      # %e wall s, %U + %S CPU s, %M peak RSS KiB of the program (and of its children,
      # for g++: GNU time reports the largest).
      if ! (cd "$work" && eval "/usr/bin/time -o time.txt -f '%e %U %S %M' env ${lib:+LD_PRELOAD=$lib} $cmd" \
            >/dev/null 2>err.txt); then
        echo "$name under $alloc failed:" >&2; cat "$work/err.txt" >&2; exit 1
      fi
      read -r e u s m < <(tail -1 "$work/time.txt")
      wall[$name,$alloc]+="$e "
      cpu[$name,$alloc]+="$(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }') "
      rss[$name,$alloc]+="$m "
    done
  done
  echo "round $((r + 1)) of $runs done" >&2
done

med() { tr ' ' '\n' | grep . | median; }
{
  echo "Median of $runs alternating rounds (scale $scale) on $(nproc) CPUs. Wall and CPU"
  echo "(user + sys) time in seconds, peak RSS in MiB."
  echo
  header="| program |" sep="|---|"
  for a in "${present[@]}"; do header+=" ${a%%|*} wall / CPU / RSS |"; sep+="---:|"; done
  echo "$header poolside / mimalloc wall | poolside / mimalloc CPU | poolside / best peer wall | poolside / best peer CPU | poolside / mimalloc RSS |"
  echo "$sep---:|---:|---:|---:|---:|"
  ratios=()
  for p in "${programs[@]}"; do
    name=${p%%|*}
    row="| $name |"
    best="" best_cpu=""
    for a in "${present[@]}"; do
      alloc=${a%%|*}
      w=$(med <<<"${wall[$name,$alloc]}") c=$(med <<<"${cpu[$name,$alloc]}") m=$(med <<<"${rss[$name,$alloc]}")
      row+=$(awk -v w="$w" -v c="$c" -v m="$m" 'BEGIN { printf " %.2f / %.2f / %.1f |", w, c, m / 1024 }')
      declare "w_$alloc=$w" "c_$alloc=$c" "m_$alloc=$m"
      if [ "$alloc" != poolside ]; then
        best=$(awk -v b="$best" -v w="$w" 'BEGIN { print ((b == "" || w < b) ? w : b) }')
        best_cpu=$(awk -v b="$best_cpu" -v w="$c" 'BEGIN { print ((b == "" || w < b) ? w : b) }')
      fi
    done
    vs_mi=$(awk -v a="${w_poolside:-0}" -v b="${w_mimalloc:-0}" 'BEGIN { print (b > 0 ? a / b : 0) }')
    vs_mi_cpu=$(awk -v a="${c_poolside:-0}" -v b="${c_mimalloc:-0}" 'BEGIN { print (b > 0 ? a / b : 0) }')
    vs_best=$(awk -v a="${w_poolside:-0}" -v b="$best" 'BEGIN { print (b > 0 ? a / b : 0) }')
    vs_best_cpu=$(awk -v a="${c_poolside:-0}" -v b="$best_cpu" 'BEGIN { print (b > 0 ? a / b : 0) }')
    rss_mi=$(awk -v a="${m_poolside:-0}" -v b="${m_mimalloc:-0}" 'BEGIN { print (b > 0 ? a / b : 0) }')
    ratios+=("$vs_mi $vs_best $rss_mi $vs_mi_cpu $vs_best_cpu")
    echo "$row $(printf '%.2f | %.2f | %.2f | %.2f | %.2f |' "$vs_mi" "$vs_mi_cpu" "$vs_best" "$vs_best_cpu" "$rss_mi")"
  done
  # A ratio of 0 (a time too short to measure at a small BENCH_SCALE) leaves the geomeans.
  printf '%s\n' "${ratios[@]}" | awk '
    function g(i) { if ($i > 0) { sum[i] += log($i); cnt[i]++ } }
    { g(1); g(3); g(4); b = ($2 > b) ? $2 : b; bc = ($5 > bc) ? $5 : bc }
    END { printf "\nGeomean poolside / mimalloc: wall %.3f, CPU %.3f, peak RSS %.3f. Largest poolside / best peer: wall %.2f, CPU %.2f.\n",
          exp(sum[1] / cnt[1]), exp(sum[4] / cnt[4]), exp(sum[3] / cnt[3]), b, bc }'
} | tee "$out"

if [ "$profile" = 1 ]; then
  # Share of perf's samples (in %) whose DSO is the allocator's library, and the kernel's.
  share() { # data file, DSO basename
    perf report -i "$1" --sort dso --stdio -q 2>/dev/null |
      awk -v d="$2" '{ p = $1; sub(/%/, "", p) } $2 == d { a += p } $2 == "[kernel.kallsyms]" { k += p }
                     END { printf "%.1f %.1f\n", a, k }'
  }
  {
    echo
    echo "Share of CPU samples (perf record -e cpu-clock, one run each) in the allocator's"
    echo "library / in the kernel, %, and 1 - mimalloc's allocator share: the least time, as a"
    echo "fraction of mimalloc's, that an allocator costing nothing could reach through its own code."
    echo
    header="| program |" sep="|---|"
    for a in "${present[@]}"; do
      if [ -n "${a#*|}" ]; then header+=" ${a%%|*} |" sep+="---:|"; fi
    done
    echo "$header bound vs mimalloc |"
    echo "$sep---:|"
    bounds=()
    for p in "${programs[@]}"; do
      name=${p%%|*} cmd=${p#*|}
      row="| $name |" mi_share=""
      for a in "${present[@]}"; do
        alloc=${a%%|*} lib=${a#*|}
        [ -n "$lib" ] || continue
        data="$work/perf.data"
        (cd "$work" && eval "perf record -q -e cpu-clock -F 1000 -o perf.data env LD_PRELOAD=$lib $cmd" \
          >/dev/null 2>"$work/err.txt") || { echo "perf of $name under $alloc failed:" >&2; cat "$work/err.txt" >&2; exit 1; }
        read -r as ks < <(share "$data" "$(basename "$(realpath "$lib")")")
        row+=" $as / $ks |"
        if [ "$alloc" = mimalloc ]; then mi_share=$as; fi
      done
      bound=$(awk -v s="${mi_share:-0}" 'BEGIN { printf "%.3f", 1 - s / 100 }')
      bounds+=("$bound")
      echo "$row $bound |"
    done
    printf '%s\n' "${bounds[@]}" | awk '{ s += log($1); n++ } END { printf "\nGeomean bound vs mimalloc: %.3f.\n", exp(s / n) }'
  } | tee -a "$out"
  rm -f "$work/perf.data" "$work/perf.data.old"
fi
echo "written to $out" >&2
