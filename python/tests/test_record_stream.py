"""record_stream without a GPU: what of the GPU check can run on the CPU.

- The judge of record_stream_scenario.py names each way the GPU run can go wrong, and
  never passes a run that was skipped or that proved nothing.
- The scenario script itself starts, enables poolside on real PyTorch without a warning,
  and reports a skip (never a pass) when no GPU is visible.
- The record_stream hook that enable() registers reaches the pool: through real PyTorch's
  pluggable allocator (CUDA runtime shim, simulated driver), a block freed after
  record_stream stays allocated until the next allocation polls its event, and a
  record_stream of an address poolside did not hand out warns on stderr, which is what
  the GPU test fails on.

The GPU run itself is test_gpu_torch.py::test_record_stream_keeps_a_block_from_reuse_while_its_stream_runs.
"""

import json
import subprocess
import sys

import pytest

from conftest import PYTHON_DIR, TESTS, clean_env, run_py
from record_stream_scenario import problems

SCENARIO = TESTS / "record_stream_scenario.py"
MIB = 1 << 20


def run_scenario(allocator, lib, **env):
    """Runs the scenario in a fresh interpreter: (its JSON outcome, its stderr)."""
    full = clean_env(POOLSIDE_CUDA_LIB=lib, PYTHONPATH=PYTHON_DIR, **env)
    proc = subprocess.run([sys.executable, str(SCENARIO), allocator], capture_output=True, text=True,
                          env=full, cwd="/", timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def poolside_warnings(stderr):
    """Lines of stderr in which poolside (the library or the Python package) warns."""
    return [line for line in stderr.splitlines() if "poolside" in line and "warn" in line.lower()]


GOOD = {"enable_warnings": [], "side_busy_at_alloc": True, "reused": False, "new_ok": True, "side_ok": True,
        "held_by_pool": True, "counters": {"event_record_failures": 0, "event_query_failures": 0,
                                           "sync_fallbacks": 0}}


@pytest.mark.parametrize("change, expected", [
    ({"side_busy_at_alloc": False}, "proves nothing"),
    ({"side_busy_at_alloc": False, "reused": True}, "proves nothing"),
    ({"reused": True}, "handed out while its side stream still ran"),
    ({"new_ok": False}, "new tensor was overwritten"),
    ({"side_ok": False}, "side stream's tensor was overwritten"),
    ({"held_by_pool": False}, "did not reach poolside"),
    ({"counters": {"event_record_failures": 1, "event_query_failures": 0, "sync_fallbacks": 1}},
     "fell back to synchronizes"),
    ({"enable_warnings": ["set_record_stream_fn missing"]}, "enable() warned"),
])
def test_the_judge_names_each_failure(change, expected):
    assert problems(GOOD, "poolside") == []
    found = problems({**GOOD, **change}, "poolside")
    assert len(found) == 1 and expected in found[0], found


def test_the_judge_asks_less_of_the_native_control_and_never_passes_a_skip():
    native = {k: v for k, v in GOOD.items() if k != "counters"}
    assert problems({**native, "held_by_pool": None}, "native") == []
    assert problems({**native, "reused": True}, "native") != []
    assert problems({"skipped": "no CUDA GPU is visible"}, "poolside") == ["skipped: no CUDA GPU is visible"]


def test_the_scenario_runs_and_reports_a_skip_without_a_gpu(real_torch, real_lib):
    probe = run_py("import json, torch; print(json.dumps(torch.cuda.is_available()))", [], check=False)
    if json.loads(probe.stdout.strip().splitlines()[-1]):
        pytest.skip("a GPU is visible: test_gpu_torch.py runs the scenario itself")
    for allocator in ("native", "poolside"):
        got, stderr = run_scenario(allocator, real_lib)
        assert got == {"allocator": allocator, "enable_warnings": [], "skipped": "no CUDA GPU is visible"}, got
        assert problems(got, allocator) != []
        assert not poolside_warnings(stderr), stderr


def test_the_record_stream_hook_reaches_the_pool_through_real_torch(real_torch, real_lib, cudart_shim):
    proc = run_py("""
        import ctypes, json, torch
        import poolside.torch as pt
        pt.enable()
        torch.cuda.is_initialized = lambda: True
        raw_alloc = torch._C._cuda_cudaCachingAllocator_raw_alloc
        raw_delete = torch._C._cuda_cudaCachingAllocator_raw_delete
        # The function enable() registered with set_record_stream_fn, from the same library.
        record = ctypes.CDLL(pt.enabled_library_path()).poolside_cuda_record_stream
        record.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        allocated = lambda: pt.pool_stats(0)["active_bytes"]["current"]  # pending blocks are active
        out = {}
        p = raw_alloc(8 << 20, 0)
        record(p + 4096, 0x5eed)  # an interior pointer and another stream
        raw_delete(p)
        out["pending"] = allocated()
        q = raw_alloc(8 << 20, 0)  # polls the event: the simulated stream is idle
        out["after_poll"] = allocated()
        out["same_block"] = q == p
        raw_delete(q)
        s = pt.pool_stats(0)
        out["counters"] = [s["event_record_failures"], s["event_query_failures"], s["sync_fallbacks"]]
        import sys; sys.stderr.flush()
        record(0x1000, 0x5eed)  # not poolside's: warned, as the GPU test would see
        print(json.dumps(out))
    """, [PYTHON_DIR], POOLSIDE_CUDA_LIB=real_lib, POOLSIDE_CUDA_DRIVER="sim", LD_PRELOAD=cudart_shim)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["pending"] == 8 * MIB, "the freed block must stay active until its event completes"
    assert got["after_poll"] == 8 * MIB and got["same_block"], got
    assert got["counters"] == [0, 0, 0]
    warned = poolside_warnings(proc.stderr)
    assert len(warned) == 1 and "record_stream of 0x1000" in warned[0], proc.stderr
