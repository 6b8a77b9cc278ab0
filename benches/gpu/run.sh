#!/usr/bin/env bash
# Everything that needs a GPU, in steps that each fit the lent machine's 10-minute limit
# per command. Each step prints what it ran; copy the output into BENCHMARKS.md (GPU
# section) with the date, `nvidia-smi -L` and the commit.
#
#   bash benches/gpu/run.sh tests                 # every GPU test, in one command (< 5 min)
#   bash benches/gpu/run.sh compare ARGS...       # benches/gpu/compare.py ARGS (one slice)
#
# `tests` runs, in order, and goes on past a failure so that one run shows everything:
#   1. the plugin's real-driver Rust tests (#[ignore]d without a GPU, so run with
#      --ignored): real_gpu.rs (pool, OOM, lazy context retention, record_stream with a
#      busy stream and the event pool) and real_gpu_graphs.rs (private pools under a
#      real stream capture);
#   2. pytest of the GPU tests: test_gpu_torch.py and test_record_stream.py (record_stream
#      against the native allocator as control), test_gpu_graphs.py (torch.cuda.graph with
#      freed intermediates, torch.compile reduce-overhead, make_graphed_callables), and
#      test_real_torch.py / test_snapshot.py (the CPU-side tests, which must still pass there).
# It exits non-zero if any part failed.
#
# compare.py over all workloads, allocators and the largest-batch search takes longer than
# one command may run, so run it in slices. Step times and peaks: 3 alternating runs per
# allocator (issue 14), one workload per command:
#   bash benches/gpu/run.sh compare --workloads gpt --no-oom-search
#   bash benches/gpu/run.sh compare --workloads generate --no-oom-search
# The largest batch, under a memory cap that keeps each probe small (checked first for every
# allocator; 0.05 of an 80 GiB H100 is 4 GiB), one timed run:
#   bash benches/gpu/run.sh compare --workloads gpt generate --repeats 1 --memory-fraction 0.05
#
# From a session with the device tool: build here first
#   cargo build --release -p poolside-cuda -p poolside-cli
#   cargo test --release -p poolside-cuda --test real_gpu --test real_gpu_graphs --no-run
# then run with carry=["target/release"] (a debuginfo-free copy if it exceeds 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."

step="${1:-}"
shift || true

# The lent GPU machine may have no network and no Rust toolchain: build here and carry
# target/release (see below), and have pytest and torch installed there.
setup() {
  nvidia-smi -L
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  if [ ! -f target/release/libpoolside_cuda.so ]; then
    cargo build --release -q -p poolside-cuda
  fi
  export POOLSIDE_CUDA_LIB="$PWD/target/release/libpoolside_cuda.so"
  export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
}

# The plugin's real-driver tests: through cargo when it is there, else the test binaries
# built here with `cargo test --release -p poolside-cuda --test real_gpu --test
# real_gpu_graphs --no-run` (found under target/release/deps/). They are #[ignore]d so that
# a machine without a GPU reports them as ignored; --ignored runs them, and there a missing
# GPU fails.
real_gpu_tests() {
  local t rc=0
  for t in real_gpu real_gpu_graphs; do
    if command -v cargo >/dev/null; then
      echo "== cargo test --release -p poolside-cuda --test $t -- --ignored --nocapture"
      cargo test --release -q -p poolside-cuda --test "$t" -- --ignored --nocapture || rc=1
    else
      local bin
      bin="$(ls -t target/release/deps/"$t"-* 2>/dev/null | grep -v '\.d$' | head -1)"
      if [ -z "$bin" ]; then
        echo "no cargo and no prebuilt target/release/deps/$t-*"; rc=1; continue
      fi
      echo "== $bin --ignored --nocapture"
      "$bin" --ignored --nocapture || rc=1
    fi
  done
  return $rc
}

case "$step" in
  tests)
    setup
    start=$SECONDS
    failed=0
    real_gpu_tests || failed=1
    tests=(python/tests/test_gpu_torch.py python/tests/test_record_stream.py
           python/tests/test_gpu_graphs.py python/tests/test_real_torch.py
           python/tests/test_snapshot.py)
    echo "== pytest -q -rs ${tests[*]}"
    python3 -m pytest -q -rs "${tests[@]}" || failed=1
    echo "== tests took $((SECONDS - start)) s; $([ $failed = 0 ] && echo 'all passed' || echo 'SOME FAILED')"
    exit $failed
    ;;
  compare)
    setup
    python3 -c 'import torchvision' 2>/dev/null || echo "torchvision missing: resnet50 will be skipped"
    echo "== python3 benches/gpu/compare.py $*"
    python3 benches/gpu/compare.py --poolside-lib "$POOLSIDE_CUDA_LIB" "$@"
    ;;
  *)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { print }' "$0"
    exit 2
    ;;
esac
