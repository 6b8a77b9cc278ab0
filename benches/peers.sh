# Sourced by the LD_PRELOAD benchmarks (preload.sh, preload_suite.sh): which allocators
# are present, and the median of numbers on stdin. Needs $POOLSIDE_LIB set.
# Peers come from the Debian packages libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4;
# an allocator whose library is missing is reported and skipped.

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
libdir=/usr/lib/$multiarch
# name|library ("" = none)
allocators=("glibc|" "poolside|$POOLSIDE_LIB" "mimalloc|$libdir/libmimalloc.so.2"
            "jemalloc|$libdir/libjemalloc.so.2" "tcmalloc|$libdir/libtcmalloc_minimal.so.4")
present=()
for a in "${allocators[@]}"; do
  lib=${a#*|}
  if [ -n "$lib" ] && [ ! -e "$lib" ]; then
    echo "skipping ${a%%|*}: $lib not found (apt-get install libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4)" >&2
  else
    present+=("$a")
  fi
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
