"""The memory snapshot under poolside on a real GPU: a few training steps of a small model
and a block freed while a side stream still uses it (record_stream), recorded and dumped
with torch.cuda.memory's own functions, then read as test_snapshot.py reads its CPU
snapshots (real torch's _memory_viz, the MemoryViz.js model, poolside replay).

Skipped, saying why, without a CUDA build of PyTorch and a visible GPU (every CI machine).
"""

import json
import pickle
import subprocess

from conftest import PYTHON_DIR, clean_env, run_json
from test_gpu_torch import gpu  # noqa: F401 (fixture)
from test_snapshot import poolside_bin, viz, viz_replay  # noqa: F401 (poolside_bin: fixture)

SCRIPT = """
import json, sys, torch
import poolside.torch as pt
pt.enable()
torch.cuda.memory._record_memory_history(max_entries=100000)
model = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 1024)).cuda()
opt = torch.optim.Adam(model.parameters())
for _ in range(3):
    loss = model(torch.randn(256, 1024, device="cuda")).square().mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
side = torch.cuda.Stream()
y = torch.empty(8 << 20, dtype=torch.uint8, device="cuda")
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):
    torch.cuda._sleep(50_000_000)
    y.fill_(1)
y.record_stream(side)
del y
stats = torch.cuda.memory_stats()
torch.cuda.memory._dump_snapshot(sys.argv[1])
torch.cuda.synchronize()
print(json.dumps(stats))
"""


def test_snapshot_of_training_steps_on_the_gpu(gpu, poolside_bin, tmp_path):  # noqa: F811
    path = tmp_path / "gpu.pickle"
    stats = run_json(f"import sys; sys.argv[1:] = [{str(path)!r}]\n" + SCRIPT, [PYTHON_DIR], POOLSIDE_CUDA_LIB=gpu)
    with open(path, "rb") as f:
        snap = pickle.load(f)
    segs = snap["segments"]
    assert sum(s["total_size"] for s in segs) == stats["reserved_bytes.all.current"]
    # As in PyTorch: a block waiting on record_stream events is active, not allocated.
    assert sum(s["allocated_size"] for s in segs) == stats["allocated_bytes.all.current"]
    assert sum(s["active_size"] for s in segs) == stats["active_bytes.all.current"]
    actions = {e["action"] for e in snap["device_traces"][0]}
    assert {"alloc", "free_requested", "free_completed"} <= actions
    assert viz_replay(snap) > 0
    proc = viz("stats", str(path))
    assert proc.returncode == 0, proc.stderr
    for cmd in ("segment_plot", "trace_plot"):
        proc = viz(cmd, str(path), "-o", str(tmp_path / f"{cmd}.html"))
        assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([poolside_bin, "replay", "--json", str(path)], capture_output=True, text=True,
                          env=clean_env(POOLSIDE_CUDA_LIB=gpu), timeout=300)
    assert proc.returncode == 0, proc.stderr
    (dev,) = json.loads(proc.stdout)["devices"]
    assert dev["pytorch"]["matches_dump"] is True and dev["trace"]["unreadable"] == 0
    # Recorded from an empty pool: the trace's reserved bytes peak where the pool's did;
    # its allocated bytes (requests rounded to 512 B, held until free_completed) lie between
    # the requested bytes and the active block sizes.
    assert dev["pytorch"]["peak_reserved_bytes"] == stats["reserved_bytes.all.peak"]
    assert stats["requested_bytes.all.peak"] <= dev["peak_allocated_bytes"] <= stats["active_bytes.all.peak"]
