#!/usr/bin/env bash
# How often realloc moves a block, and how many bytes it copies, under glibc, poolside and
# the peers: a shim (benches/c/realloc_moves.c) preloaded in front of each allocator counts
# the moves of one run of COMMAND. Prints one table of new-size buckets (4 KiB and up; the
# smaller ones move under every allocator) with moves / MB copied / in place per allocator,
# and the totals.
#
# Usage: benches/realloc_moves.sh COMMAND...   env: POOLSIDE_LIB
#   e.g. benches/realloc_moves.sh env PYTHONMALLOC=malloc python3 json_work.py
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
if [ -z "${POOLSIDE_LIB:-}" ]; then
  (cd "$here" && cargo build --release --quiet -p poolside-capi)
  POOLSIDE_LIB=$(realpath "$target/release/libpoolside.so")
fi
source "$here/benches/peers.sh"
shim=$(realpath -m "$target/realloc_moves.so")
gcc -O2 -shared -fPIC -Wall -Wextra -Werror "$here/benches/c/realloc_moves.c" -o "$shim" -ldl

results=()
for a in "${present[@]}"; do
  alloc=${a%%|*} lib=${a#*|}
  out=$(LD_PRELOAD="$shim${lib:+ $lib}" "$@" 2>&1 >/dev/null | grep -E '^[0-9]+ moved ' || true)
  results+=("$alloc|$out")
done
python3 - "${results[@]}" <<'PY'
import sys
cols, data = [], {}
for arg in sys.argv[1:]:
    name, _, out = arg.partition("|")
    cols.append(name)
    for line in out.splitlines():
        b, _, m, _, c, _, k = line.split()
        data[name, int(b)] = (int(m), int(c), int(k))
buckets = sorted({b for (_, b) in data if b >= 12})
print("| new size |" + "".join(f" {c} moved / MB copied / in place |" for c in cols))
print("|---|" + "---:|" * len(cols))
for b in buckets:
    row = [data.get((c, b), (0, 0, 0)) for c in cols]
    print(f"| 2^{b} |" + "".join(f" {m} / {cp / 2**20:.0f} / {k} |" for m, cp, k in row))
tot = [[sum(v[i] for (cc, _), v in data.items() if cc == c) for i in range(3)] for c in cols]
print("| all sizes |" + "".join(f" {m} / {cp / 2**20:.0f} / {k} |" for m, cp, k in tot))
PY
