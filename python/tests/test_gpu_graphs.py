"""CUDA graphs on a real GPU under poolside: private pools keep a graph's memory to itself.

A captured graph bakes in its addresses; if a block it uses went back to the general pool,
the next ordinary tensor could take it and every replay would overwrite that tensor,
silently. These run real captures (torch.cuda.graph, make_graphed_callables,
torch.compile's CUDA graphs) and check the numbers.

Skipped, saying why, without a CUDA build of PyTorch and a visible GPU (every CI machine).
On a GPU machine: ``bash benches/gpu/run.sh tests``, or
``python3 -m pytest -rs python/tests/test_gpu_graphs.py``.
"""

import json

import pytest

from conftest import PYTHON_DIR, run_py

MIB = 1 << 20
PRELUDE = """
import json, torch, poolside.torch as pt
pt.enable()
private = lambda: pt.pool_stats(0)["private_pool_bytes"]["current"]
"""


@pytest.fixture(scope="module")
def gpu(real_lib):
    proc = run_py("import json, torch; print(json.dumps(torch.cuda.is_available()))", [], check=False)
    if proc.returncode != 0:
        pytest.skip("PyTorch is not installed")
    if not json.loads(proc.stdout.strip().splitlines()[-1]):
        pytest.skip("no CUDA GPU is visible")
    return real_lib


def run_on_gpu(code, lib, check=True):
    """Runs ``code`` after enable(); returns (parsed last stdout line or None, stderr).
    enable() must have set every hook: any poolside warning fails the test."""
    proc = run_py(PRELUDE + code, [PYTHON_DIR], check=check, POOLSIDE_CUDA_LIB=lib)
    if check:
        assert "poolside: warning" not in proc.stderr and "hooks not set" not in proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if proc.returncode == 0 and lines else None), proc.stderr


def test_replays_leave_ordinary_tensors_alone(gpu):
    got, _ = run_on_gpu("""
n = 1 << 20  # 4 MiB of float32 per tensor
x = torch.randn(n, device="cuda")
side = torch.cuda.Stream()
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):  # warm-up, as PyTorch's docs advise
    for _ in range(3):
        (((x * 2) + 1).relu() * 3).sum()
torch.cuda.current_stream().wait_stream(side)
torch.cuda.synchronize()
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    a = x * 2
    b = a + 1
    del a  # an intermediate freed during capture
    c = b.relu()
    out = c * 3
out_ptr = out.data_ptr()
held = private()
del b, c  # intermediates freed after capture: they stay the graph's
torch.cuda.synchronize()
# Ordinary tensors of the same sizes, allocated and filled after the capture.
ordinary = [torch.full((n,), float(i), device="cuda") for i in range(16)]
x.copy_(torch.linspace(-1, 1, n, device="cuda"))
for _ in range(10):
    g.replay()
torch.cuda.synchronize()
expected = ((x * 2) + 1).relu() * 3
res = {
    "held": held,
    "out_right": bool(torch.equal(out, expected)),
    "ordinary_unchanged": [bool(torch.equal(t, torch.full_like(t, float(i)))) for i, t in enumerate(ordinary)],
    "out_ptr_kept": out.data_ptr() == out_ptr,
}
del g, out
import gc; gc.collect()
torch.cuda.synchronize()
res["after_release"] = private()
print(json.dumps(res))
""", gpu)
    assert got["held"] >= 3 * 4 * MIB  # out plus the intermediates, in the private pool
    assert got["out_right"] and got["out_ptr_kept"]
    assert all(got["ordinary_unchanged"]), got["ordinary_unchanged"]
    assert got["after_release"] == 0


def test_make_graphed_callables_trains_like_eager(gpu):
    got, _ = run_on_gpu("""
import copy
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8)).cuda()
eager = copy.deepcopy(model)
x = torch.randn(32, 64, device="cuda", requires_grad=True)
graphed = torch.cuda.make_graphed_callables(model, (x,))
held = private()
opt_g = torch.optim.SGD(model.parameters(), lr=0.1)
opt_e = torch.optim.SGD(eager.parameters(), lr=0.1)
diffs = []
for step in range(5):
    inp = torch.randn(32, 64, device="cuda")
    noise = [torch.randn(1 << 18, device="cuda") for _ in range(4)]  # ordinary tensors between steps
    for m, opt in ((graphed, opt_g), (eager, opt_e)):
        opt.zero_grad(set_to_none=True)
        m(inp.clone().requires_grad_()).square().mean().backward()
        opt.step()
    torch.cuda.synchronize()
    diffs.append(max((p - q).abs().max().item() for p, q in zip(model.parameters(), eager.parameters())))
print(json.dumps({"held": held, "diffs": diffs}))
""", gpu)
    assert got["held"] > 0
    assert max(got["diffs"]) < 1e-5, got["diffs"]


COMPILE = """
import torch._inductor.config as inductor_config
inductor_config.triton.cudagraph_trees = {trees}
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(128, 512), torch.nn.GELU(), torch.nn.Linear(512, 128)).cuda().eval()
compiled = torch.compile(model, mode="reduce-overhead")
diffs = []
with torch.no_grad():
    for step in range(6):
        inp = torch.randn(16, 128, device="cuda")
        ordinary = torch.full((1 << 20,), 7.0, device="cuda")
        got = compiled(inp).clone()
        want = model(inp)
        diffs.append((got - want).abs().max().item())
        assert bool((ordinary == 7.0).all().item())
print(json.dumps({{"diffs": diffs, "private": private()}}))
"""


def test_compile_reduce_overhead_matches_eager(gpu):
    # Inductor's CUDA graphs without graph trees: torch.cuda.graph on private pools.
    got, _ = run_on_gpu(COMPILE.format(trees=False), gpu)
    assert max(got["diffs"]) < 1e-4, got["diffs"]
    assert got["private"] > 0


def test_compile_reduce_overhead_with_cudagraph_trees(gpu):
    # The default: CUDA graph trees, which also call getCheckpointState after recording.
    # PyTorch 2.11's CUDAPluggableAllocator does not implement that (any pluggable
    # allocator fails here, see pytorch#163257), whatever poolside does.
    got, err = run_on_gpu(COMPILE.format(trees=True), gpu, check=False)
    if got is None and "does not yet support getCheckpointState" in err:
        pytest.xfail("torch's CUDAPluggableAllocator lacks getCheckpointState, which CUDA graph trees call")
    assert got is not None, err
    assert max(got["diffs"]) < 1e-4, got["diffs"]
