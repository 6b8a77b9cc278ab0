"""poolside.torch.enable() against the fake torch: hooks, install, refusal, idempotence."""

import textwrap

from conftest import FAKE_TORCH, PYTHON_DIR, run_json, run_py

PATH = [PYTHON_DIR, FAKE_TORCH]
SYMBOLS = {
    "set_init_fn": "poolside_cuda_init",
    "set_reset_fn": "poolside_cuda_empty_cache",
    "set_memory_fraction_fn": "poolside_cuda_set_memory_fraction",
    "set_base_alloc_fn": "poolside_cuda_base_alloc",
    "set_record_stream_fn": "poolside_cuda_record_stream",
    "set_begin_allocate_to_pool": "poolside_cuda_begin_allocate_to_pool",
    "set_end_allocate_to_pool_fn": "poolside_cuda_end_allocate_to_pool",
    "set_release_pool": "poolside_cuda_release_pool",
}
GRAPH = {"set_begin_allocate_to_pool", "set_end_allocate_to_pool_fn", "set_release_pool"}
REPORT = """
    import ctypes, json, os
    import torch.cuda.memory as m
    lib = ctypes.CDLL(os.environ["POOLSIDE_CUDA_LIB"])
    addr = lambda s: ctypes.cast(getattr(lib, s), ctypes.c_void_p).value
    cur = m.current
    print(json.dumps({
        "swaps": m.swaps,
        "path": cur and cur.path,
        "alloc_ok": bool(cur) and cur.alloc_fn == addr("poolside_cuda_malloc") and cur.free_fn == addr("poolside_cuda_free"),
        "hooks": cur and {k: v == addr(%s[k]) for k, v in cur.allocator().hooks.items()},
        "same": same,
    }))
""" % repr(SYMBOLS)


def enable_and_report(fake_lib, body, **env):
    code = textwrap.dedent(body) + textwrap.dedent(REPORT)
    return run_json(code, PATH, POOLSIDE_CUDA_LIB=fake_lib, **env)


def test_enable_sets_every_hook_and_installs(fake_lib):
    got = enable_and_report(fake_lib, """
        import torch, poolside.torch
        a = poolside.torch.enable()
        same = a is torch.cuda.memory.current
    """)
    assert got["swaps"] == 1 and got["same"] and got["alloc_ok"]
    assert got["path"] == str(fake_lib)
    assert got["hooks"] == {k: True for k in SYMBOLS}


def test_enable_is_idempotent(fake_lib):
    got = enable_and_report(fake_lib, """
        import torch, poolside.torch
        a = poolside.torch.enable()
        same = poolside.torch.enable() is a and poolside.torch.enabled_allocator() is a
    """)
    assert got["swaps"] == 1 and got["same"]


def test_refuses_after_cuda_init(fake_lib):
    got = enable_and_report(fake_lib, """
        import torch, poolside.torch
        torch.cuda.init()
        try:
            poolside.torch.enable()
            same = "no error"
        except poolside.torch.PoolsideError as e:
            same = [isinstance(e, RuntimeError), str(e)]
    """)
    is_rt, msg = got["same"]
    assert is_rt and "before any CUDA work" in msg and "poolside run -- python" in msg
    assert got["swaps"] == 0


def test_older_torch_missing_setters_warns_and_still_installs(fake_lib):
    proc = run_py("""
        import warnings, torch, poolside.torch
        warnings.simplefilter("always")
        poolside.torch.enable()
        print(sorted(torch.cuda.memory.current.allocator().hooks))
    """, PATH, POOLSIDE_CUDA_LIB=fake_lib, FAKE_TORCH_MISSING_HOOKS="set_record_stream_fn,set_base_alloc_fn")
    assert proc.stdout.strip() == str(sorted(set(SYMBOLS) - {"set_record_stream_fn", "set_base_alloc_fn"}))
    assert "set_record_stream_fn (this torch lacks it)" in proc.stderr
    assert "set_base_alloc_fn (this torch lacks it)" in proc.stderr
    assert "set_init_fn" not in proc.stderr


def test_graph_hooks_are_set_all_or_none_and_their_absence_is_named(fake_lib):
    # A torch without set_release_pool (hypothetical, but each setter is checked):
    # begin and end alone would route captures into a pool that is never freed, so
    # none of the three is set, and the warning names them and what it means.
    proc = run_py("""
        import warnings, torch, poolside.torch
        warnings.simplefilter("always")
        poolside.torch.enable()
        print(sorted(torch.cuda.memory.current.allocator().hooks))
    """, PATH, POOLSIDE_CUDA_LIB=fake_lib, FAKE_TORCH_MISSING_HOOKS="set_release_pool")
    assert proc.stdout.strip() == str(sorted(set(SYMBOLS) - GRAPH))
    assert "set_release_pool (this torch lacks it)" in proc.stderr
    assert "set_begin_allocate_to_pool, set_end_allocate_to_pool_fn (the other graph hooks cannot be set)" in proc.stderr
    assert "do not capture graphs in this process" in proc.stderr


def test_graph_hooks_are_left_unset_when_torch_abi_differs(fake_lib):
    proc = run_py("""
        import warnings, torch, poolside.torch
        warnings.simplefilter("always")
        poolside.torch.enable()
        print(sorted(torch.cuda.memory.current.allocator().hooks))
    """, PATH, POOLSIDE_CUDA_LIB=fake_lib, FAKE_POOLSIDE_GRAPH_ABI="0")
    assert proc.stdout.strip() == str(sorted(set(SYMBOLS) - GRAPH))
    for setter in GRAPH:
        assert f"{setter} (this torch's C++ signature for it is not the one" in proc.stderr
    assert "set_init_fn" not in proc.stderr


def test_torch_without_cuda_is_refused(fake_lib):
    proc = run_py("import torch, poolside.torch; poolside.torch.enable()", PATH, check=False,
                  POOLSIDE_CUDA_LIB=fake_lib, FAKE_TORCH_NO_CUDA=1)
    assert proc.returncode != 0 and "no CUDA support" in proc.stderr


def test_not_a_poolside_library_is_refused(tmp_path):
    import ctypes.util

    libc = ctypes.util.find_library("c")
    proc = run_py("import torch, poolside.torch; poolside.torch.enable(path=%r)" % libc, PATH, check=False)
    assert proc.returncode != 0 and "missing poolside_cuda_malloc" in proc.stderr


def test_torch_stats_functions_are_redirected(fake_lib):
    got = run_json("""
        import json, torch, poolside.torch as pt
        before = None
        try:
            torch.cuda.max_memory_allocated(0)
        except RuntimeError as e:
            before = str(e)
        pt.enable()
        torch.cuda.init()
        print(json.dumps([before, torch.cuda.max_memory_allocated(0), torch.cuda.memory.memory_stats(0)["num_ooms"],
                          pt.max_memory_allocated(0), pt.memory_stats(0)["num_ooms"]]))
    """, PATH, POOLSIDE_CUDA_LIB=fake_lib)
    assert got[0] and "not yet support" in got[0]
    assert got[1] == got[3] and got[2] == got[4] and got[1] > 0


def test_patch_stats_false_leaves_torch_alone(fake_lib):
    proc = run_py("""
        import torch, poolside.torch as pt
        pt.enable(patch_stats=False)
        torch.cuda.memory_stats(0)
    """, PATH, check=False, POOLSIDE_CUDA_LIB=fake_lib)
    assert proc.returncode != 0 and "not yet support" in proc.stderr


def test_torch_without_pluggable_allocator_is_refused(fake_lib, tmp_path):
    """An old torch (no CUDAPluggableAllocator) gets a clear error, not an AttributeError."""
    proc = run_py("""
        import torch, poolside.torch
        del torch.cuda.memory.CUDAPluggableAllocator
        poolside.torch.enable()
    """, PATH, check=False, POOLSIDE_CUDA_LIB=fake_lib)
    assert proc.returncode != 0 and "PoolsideError" in proc.stderr and "needs torch >= 2.0" in proc.stderr
