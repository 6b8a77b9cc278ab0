#!/usr/bin/env bash
# Everything issue 6 needs from a GPU session, in steps that each fit the lent machine's
# 10-minute limit per command. Each step prints what it ran; copy the output into
# BENCHMARKS.md (GPU section) with the date and `nvidia-smi -L`.
#
#   bash benches/gpu/run.sh tests                 # build; real-driver plugin tests; GPU pytest
#   bash benches/gpu/run.sh compare ARGS...       # benches/gpu/compare.py ARGS (one slice)
#
# compare.py over all workloads, allocators and the largest-batch search takes longer than
# one command may run, so run it in slices, for example:
#   bash benches/gpu/run.sh compare --workloads gpt --no-oom-search
#   bash benches/gpu/run.sh compare --workloads gpt --allocators native expandable
#   bash benches/gpu/run.sh compare --workloads gpt --allocators cudaMallocAsync poolside
#
# From a session with the device tool: build here (cargo build --release -p poolside-cuda;
# cargo test --release -p poolside-cuda --test real_gpu --no-run), then run with
# carry=["target/release"] (a debuginfo-free copy if it exceeds 64 MiB).
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

# The plugin's real-driver tests: through cargo when it is there, else the test binary
# built here with `cargo test --release -p poolside-cuda --test real_gpu --no-run`
# (found under target/release/deps/real_gpu-*).
real_gpu_tests() {
  if command -v cargo >/dev/null; then
    echo "== cargo test --release -p poolside-cuda --test real_gpu -- --nocapture"
    cargo test --release -q -p poolside-cuda --test real_gpu -- --nocapture
  else
    local bin
    bin="$(ls -t target/release/deps/real_gpu-* 2>/dev/null | grep -v '\.d$' | head -1)"
    [ -n "$bin" ] || { echo "no cargo and no prebuilt target/release/deps/real_gpu-*"; return 1; }
    echo "== $bin --nocapture"
    "$bin" --nocapture
  fi
}

case "$step" in
  tests)
    setup
    real_gpu_tests
    echo "== pytest python/tests/test_gpu_torch.py python/tests/test_real_torch.py"
    python3 -m pytest -q -rs python/tests/test_gpu_torch.py python/tests/test_real_torch.py
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
