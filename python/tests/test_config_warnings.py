"""Configuration warnings of a real PyTorch process (CUDA build, no GPU needed) with
libpoolside.so preloaded and libpoolside_cuda.so reached through torch's pluggable
allocator on the simulated driver: four threads allocate, yet each problem is reported
once, 10,000 bad keys in one summary line. Skips, saying why, without torch, the
libraries or a C compiler (see conftest.py)."""

import pytest

from conftest import PYTHON_DIR, built, run_py


@pytest.fixture(scope="session")
def host_lib():
    """The release libpoolside.so (the preload tests build it)."""
    found = [p for p in built("libpoolside.so") if p.parent.name == "release"]
    if not found:
        pytest.skip("libpoolside.so not built (cargo build --release -p poolside-capi)")
    return found[0]


def test_torch_process_reports_each_problem_once(real_torch, real_lib, cudart_shim, host_lib):
    keys = ",".join(f"k{i}:1" for i in range(10_000))
    proc = run_py("""
        import threading, torch
        import poolside.torch as pt
        pt.enable()
        torch.cuda.is_initialized = lambda: True
        raw_alloc = torch._C._cuda_cudaCachingAllocator_raw_alloc
        raw_delete = torch._C._cuda_cudaCachingAllocator_raw_delete
        def work():
            for _ in range(50):
                raw_delete(raw_alloc(1 << 20, 0))
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("config_warnings: ok")
    """, [PYTHON_DIR], POOLSIDE_CUDA_LIB=real_lib, POOLSIDE_CUDA_DRIVER="sim",
        LD_PRELOAD=f"{host_lib}:{cudart_shim}",
        POOLSIDE_CONF=f"stats:off,max_split_size_mb:x,{keys}")
    assert "config_warnings: ok" in proc.stdout
    lines = [l for l in proc.stderr.splitlines() if "poolside: warning" in l]
    # The host engine names the unknown keys; the plugin the bad value of its own key.
    assert lines == [
        "poolside: warning: POOLSIDE_CONF: unknown key 'k0'; unknown key 'k1'; "
        "unknown key 'k2'; and 9997 more (ignored)",
        "poolside: warning: POOLSIDE_CONF: bad value for 'max_split_size_mb': 'x', "
        "expected an integer above 20 (ignored)",
    ], proc.stderr
