"""poolside under real PyTorch on a real GPU: what the CPU tests cannot show.

Skipped, saying why, without a CUDA build of PyTorch and a visible GPU (every CI machine).
On a GPU machine: ``bash benches/gpu/run.sh tests`` (builds the library, then runs these
and the plugin's real-driver tests).
"""

import json

import pytest

from conftest import PYTHON_DIR, run_json, run_py
from record_stream_scenario import problems
from test_record_stream import poolside_warnings, run_scenario

MIB = 1 << 20


@pytest.fixture(scope="module")
def gpu(real_lib):
    proc = run_py("import json, torch; print(json.dumps(torch.cuda.is_available()))", [], check=False)
    if proc.returncode != 0:
        pytest.skip("PyTorch is not installed")
    if not json.loads(proc.stdout.strip().splitlines()[-1]):
        pytest.skip("no CUDA GPU is visible")
    return real_lib


def run_on_gpu(code, lib):
    return run_json("import json, torch, poolside.torch as pt\npt.enable()\n" + code, [PYTHON_DIR],
                    POOLSIDE_CUDA_LIB=lib)


def test_tensors_live_in_poolside_and_stats_follow(gpu):
    got = run_on_gpu("""
before = torch.cuda.memory_stats()
x = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
y = torch.randn(1024, 1024, device="cuda")
total = (y @ y).sum().item()  # kernels read and write poolside's memory
during = torch.cuda.memory_stats()
del x
torch.cuda.synchronize()
freed = torch.cuda.memory_stats()
del y
torch.cuda.empty_cache()
print(json.dumps({"before": before, "during": during, "freed": freed, "total_is_finite": total == total,
                  "emptied_reserved": torch.cuda.memory_reserved()}))
""", gpu)
    before, during, freed = got["before"], got["during"], got["freed"]
    # cuBLAS may take its workspace from the allocator too, hence >=.
    assert during["requested_bytes.all.current"] - before["requested_bytes.all.current"] >= 68 * MIB
    assert during["reserved_bytes.all.current"] >= during["allocated_bytes.all.current"] >= 68 * MIB
    assert during["allocated_bytes.all.current"] - freed["allocated_bytes.all.current"] >= 64 * MIB
    assert got["total_is_finite"]
    assert got["emptied_reserved"] < during["reserved_bytes.all.current"]


def test_oom_is_catchable_with_sizes_and_the_pool_survives(gpu):
    got = run_on_gpu("""
free, total = torch.cuda.mem_get_info()
keep = torch.ones(1 << 20, device="cuda")
out = {}
try:
    torch.empty(2 * total, dtype=torch.uint8, device="cuda")
except torch.cuda.OutOfMemoryError as e:
    out["oom"] = [type(e).__name__, isinstance(e, RuntimeError), str(e)]
out["stats"] = torch.cuda.memory_stats()
again = torch.ones(1 << 20, device="cuda")
out["ok"] = bool((keep + again).eq(2).all().item())
print(json.dumps(out))
""", gpu)
    name, is_runtime_error, msg = got["oom"]
    assert name == "OutOfMemoryError" and is_runtime_error
    assert msg.startswith("CUDA out of memory. Tried to allocate") and "GPU 0 has a total capacity of" in msg
    assert got["stats"]["num_ooms"] >= 1
    assert got["ok"]


def test_record_stream_keeps_a_block_from_reuse_while_its_stream_runs(gpu):
    """record_stream_scenario.py under the native allocator (the control), then poolside."""
    control, _ = run_scenario("native", gpu)
    assert not problems(control, "native"), (
        f"the control (PyTorch's own allocator) fails, so the scenario proves nothing here: {control}")
    got, stderr = run_scenario("poolside", gpu)
    assert not poolside_warnings(stderr), stderr
    assert not problems(got, "poolside"), got
