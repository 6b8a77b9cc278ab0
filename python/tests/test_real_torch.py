"""Real PyTorch (a CUDA build, no GPU needed) against the real libpoolside_cuda.

The fake torch elsewhere in these tests models PyTorch's API; these check the model
against the real thing:
- enable() and the sitecustomize hook install every hook on real torch's allocator;
- with a two-function CUDA runtime shim (fakes/cudart_shim.c) and the simulated driver,
  allocations made through real torch's CUDAPluggableAllocator reach poolside, an
  out-of-memory comes out of PyTorch as torch.cuda.OutOfMemoryError carrying the sizes,
  and empty_cache and the memory fraction reach poolside's hooks;
- real torch's graph-pool calls (the ones cudagraph trees make) reach poolside's C++
  graph entries with PyTorch's own std::function filter, and their errors come back as
  RuntimeError.

Skipped, saying why, when torch is not installed or is a CPU-only build. On a GPU these
run the same way; tests/test_gpu_torch.py covers what only a GPU can show.
"""

import json

from conftest import HOOK_DIR, PYTHON_DIR, run_json, run_py

MIB = 1 << 20


def test_enable_sets_every_hook_on_real_torch(real_torch, real_lib):
    got = run_json("""
        import json, warnings, torch
        import poolside.torch as pt
        warnings.simplefilter("error")  # enable() warns when it has to leave a hook unset
        alloc = pt.enable()
        raw = alloc.allocator()
        print(json.dumps({
            "type": type(raw).__name__,
            "setters": [s for s, _ in pt.HOOKS if hasattr(raw, s)],
            "again": pt.enable() is alloc,
            "patched": [torch.cuda.memory_stats is pt.memory_stats,
                        torch.cuda.memory.max_memory_allocated is pt.max_memory_allocated,
                        torch.cuda.memory_summary is pt.memory_summary],
            "cuda_initialized": torch.cuda.is_initialized(),
            "allocated": torch.cuda.memory_allocated(0),
        }))
    """, [PYTHON_DIR], POOLSIDE_CUDA_LIB=real_lib)
    assert got["type"] == "_CUDAPluggableAllocator"
    assert len(got["setters"]) == 8
    assert got["again"] and got["patched"] == [True, True, True]
    assert got["cuda_initialized"] is False and got["allocated"] == 0


def test_hook_enables_on_real_torch_import(real_torch, real_lib):
    proc = run_py("""
        import json, torch
        import poolside.torch as pt
        print(json.dumps([pt.enabled_library_path(), torch.cuda.memory_stats is pt.memory_stats]))
    """, [HOOK_DIR], POOLSIDE_CUDA_LIB=real_lib)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [str(real_lib), True]
    assert "not enabled" not in proc.stderr


def test_real_torch_allocates_through_poolside(real_torch, real_lib, cudart_shim):
    got = run_json("""
        import json, torch
        import poolside.torch as pt
        pt.enable()
        # On a GPU, PyTorch initializes CUDA before its first allocation; the shim skips
        # that, and poolside's stats functions report zeros while torch's CUDA is down.
        torch.cuda.is_initialized = lambda: True
        raw_alloc = torch._C._cuda_cudaCachingAllocator_raw_alloc
        raw_delete = torch._C._cuda_cudaCachingAllocator_raw_delete
        out = {}
        p = raw_alloc(3 << 20, 0)
        out["ptr"] = p != 0
        out["during"] = torch.cuda.memory_stats(0)
        try:
            raw_alloc(1 << 50, 0)
        except torch.cuda.OutOfMemoryError as e:
            out["oom"] = [type(e).__name__, isinstance(e, RuntimeError), str(e)]
        out["after_oom"] = torch.cuda.memory_stats(0)
        raw_delete(p)
        out["freed"] = torch.cuda.memory_stats(0)
        torch._C._cuda_emptyCache()
        out["emptied"] = torch.cuda.memory_reserved(0)
        torch._C._cuda_setMemoryFraction(0.25, 0)
        try:
            raw_alloc(8 << 30, 0)
        except torch.cuda.OutOfMemoryError as e:
            out["fraction_oom"] = str(e)
        q = raw_alloc(2 << 30, 0)
        out["under_fraction"] = q != 0
        raw_delete(q)
        print(json.dumps(out))
    """, [PYTHON_DIR], POOLSIDE_CUDA_LIB=real_lib, POOLSIDE_CUDA_DRIVER="sim", LD_PRELOAD=cudart_shim)
    assert got["ptr"]
    during, after, freed = got["during"], got["after_oom"], got["freed"]
    assert during["requested_bytes.all.current"] == 3 * MIB and during["allocation.all.current"] == 1
    name, is_runtime_error, msg = got["oom"]
    assert name == "OutOfMemoryError" and is_runtime_error
    assert msg.startswith("CUDA out of memory. Tried to allocate 1048576.00 GiB. GPU 0 has a total capacity of 16.00 GiB")
    assert "3.00 MiB is allocated by poolside" in msg
    # The failed request changed nothing but the OOM count.
    assert after["num_ooms"] == during["num_ooms"] + 1
    for key in ("allocated_bytes.all.current", "reserved_bytes.all.current", "allocation.all.current"):
        assert after[key] == during[key], key
    assert freed["allocation.all.current"] == 0 and freed["requested_bytes.all.current"] == 0
    assert got["emptied"] == 0
    assert "Tried to allocate 8.00 GiB" in got["fraction_oom"] and "memory fraction" in got["fraction_oom"]
    assert got["under_fraction"]


def test_real_torch_routes_a_private_pool_through_poolside(real_torch, real_lib, cudart_shim):
    got = run_json("""
        import json, threading, torch
        import poolside.torch as pt
        pt.enable()
        torch.cuda.is_initialized = lambda: True
        raw_alloc = torch._C._cuda_cudaCachingAllocator_raw_alloc
        raw_delete = torch._C._cuda_cudaCachingAllocator_raw_delete
        private = lambda: pt.pool_stats(0)["private_pool_bytes"]["current"]
        out = {}
        pool = (0, 77)
        # What cudagraph trees' warm-up does: PyTorch builds a "this thread" std::function
        # and passes it to the begin hook.
        torch._C._cuda_beginAllocateCurrentThreadToPool(0, pool)
        p = raw_alloc(8 << 20, 0)
        out["during"] = private()
        others = []
        t = threading.Thread(target=lambda: others.append(raw_alloc(8 << 20, 0)))
        t.start(); t.join()
        out["other_thread"] = private()
        torch._C._cuda_endAllocateToPool(0, pool)
        q = raw_alloc(8 << 20, 0)
        out["after_end"] = private()
        torch._C._cuda_releasePool(0, pool)
        out["released_block_live"] = private()
        raw_delete(p)
        out["released_and_freed"] = private()
        for x in [q] + others:
            raw_delete(x)
        try:
            torch._C._cuda_endAllocateToPool(0, pool)
        except RuntimeError as e:
            out["error"] = str(e)
        print(json.dumps(out))
    """, [PYTHON_DIR], POOLSIDE_CUDA_LIB=real_lib, POOLSIDE_CUDA_DRIVER="sim", LD_PRELOAD=cudart_shim)
    assert got["during"] == 8 * MIB
    assert got["other_thread"] == 8 * MIB and got["after_end"] == 8 * MIB
    assert got["released_block_live"] == 8 * MIB
    assert got["released_and_freed"] == 0
    assert got["error"] == "poolside: endAllocateToPool: not allocating to pool (0, 77)"
