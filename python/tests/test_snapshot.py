"""PyTorch's memory snapshot under poolside, with real PyTorch on the CPU.

Real torch's CUDAPluggableAllocator drives the real libpoolside_cuda on its simulated
driver (the cudart shim of test_real_torch.py). Recording is turned on through
torch.cuda.memory._record_memory_history and the pickle written by
torch.cuda.memory._dump_snapshot, both as enable() patched them and through torch's own
_dump_snapshot (which looks _snapshot up in its module). The file is then read by:
- real torch's visualizer: ``python -m torch.cuda._memory_viz segment_plot`` and
  ``trace_plot``, and the functions behind its ``stats`` (``segsum``, which raises when a
  segment's blocks do not add up) and ``trace`` commands;
- a model of what the HTML pages do with it in the browser (MemoryViz.js, loaded from a
  CDN, so it cannot run here): ``viz_replay`` below replays the trace backwards from the
  segments as that script's ``simulate_memory`` does, and fails where the script would
  throw or draw a block outside every segment;
- ``poolside replay --json``, whose peaks must be the pool's own statistics.
"""

import json
import pickle
import subprocess
import sys
import textwrap

import pytest
from conftest import PYTHON_DIR, built, clean_env, run_json

MIB = 1 << 20
STREAM = 0x5000  # a second stream (any cudaStream_t value names a stream in the sim)

WORKLOAD = """
    import json, os, sys, torch
    import poolside.torch as pt
    torch_dump = torch.cuda.memory._dump_snapshot  # torch's own, before enable() patches
    pt.enable()
    torch.cuda.is_initialized = lambda: True  # see test_real_torch.py
    raw_alloc = torch._C._cuda_cudaCachingAllocator_raw_alloc
    raw_delete = torch._C._cuda_cudaCachingAllocator_raw_delete
    out = {"patched": [torch.cuda.memory._snapshot is pt.memory_snapshot,
                       torch.cuda.memory._record_memory_history is pt.record_memory_history,
                       torch.cuda.memory._dump_snapshot is pt.dump_snapshot]}
    early = [raw_alloc(n, 0) for n in EARLY]  # live before recording starts
    torch.cuda.memory._record_memory_history(max_entries=100000)
    sizes = [512, 4096, 100 * 512, 3 << 20, 24 << 20, 1 << 20, 40 << 20, 2048 * 512]
    ptrs = [raw_alloc(n, 0 if i % 2 else STREAM) for i, n in enumerate(sizes * 3)]
    for p in ptrs[::2]:
        raw_delete(p)
    try:
        raw_alloc(1 << 50, 0)
    except torch.cuda.OutOfMemoryError:
        out["oom"] = True
    torch._C._cuda_emptyCache()
    ptrs += [raw_alloc(n, STREAM) for n in (7 << 20, 512, 30 << 20)]
    for p in ptrs[1:6:2]:
        raw_delete(p)
    out["stats"] = torch.cuda.memory_stats(0)
    out["requested_now"] = pt.pool_stats(0)["requested_bytes"]["current"]
    torch.cuda.memory._dump_snapshot(sys.argv[1])
    torch_dump(sys.argv[2])
    out["segments"] = len(torch.cuda.memory_snapshot())
    print(json.dumps(out))
"""


def workload(real_lib, cudart_shim, tmp_path, early=(), conf=""):
    paths = [tmp_path / "ours.pickle", tmp_path / "via_torch.pickle"]
    code = textwrap.dedent(WORKLOAD).replace("EARLY", repr(list(early))).replace("STREAM", str(STREAM))
    got = run_json(
        "import sys; sys.argv[1:] = " + repr([str(p) for p in paths]) + "\n" + code,
        [PYTHON_DIR], POOLSIDE_CUDA_LIB=real_lib, POOLSIDE_CUDA_DRIVER="sim", LD_PRELOAD=cudart_shim,
        PYTORCH_CUDA_ALLOC_CONF=conf,
    )
    return got, paths


def viz_replay(snapshot, device=0):
    """Replays the trace of ``device`` backwards from the dump, as MemoryViz.js's
    simulate_memory does for the segment view, checking every step; returns the steps."""
    segments = sorted(
        [[s["address"], s["total_size"], s["stream"]] for s in snapshot["segments"] if s["device"] == device]
    )
    blocks = {}
    for s in snapshot["segments"]:
        addr = s["address"]
        for b in s["blocks"]:
            assert b["address"] == addr, "blocks follow each other from the segment's address"
            if s["device"] == device and b["state"] in ("active_allocated", "active_pending_free"):
                blocks[addr] = b["size"]
            addr += b["size"]
    # annotate_snapshot: a free_requested directly followed by its free_completed is one "free".
    events = []
    for e in snapshot["device_traces"][device]:
        if e["action"] == "free_completed" and events and events[-1]["action"] == "free_requested" \
                and events[-1]["addr"] == e["addr"]:
            events[-1] = dict(events[-1], action="free")
            continue
        events.append(e)

    def find(addr):
        return [s for s in segments if s[0] <= addr < s[0] + s[1]]

    def check():
        for b in blocks:
            assert len(find(b)) == 1, f"block {b:#x} outside every segment"

    check()
    for e in reversed(events):
        a, n, action = e.get("addr"), e["size"], e["action"]
        if action == "free":
            blocks[a] = n
        elif action == "free_requested":
            assert a in blocks, f"free_requested of {a:#x}, not live then"
        elif action == "free_completed":
            blocks[a] = n
        elif action == "alloc":
            assert blocks.pop(a, None) is not None, f"alloc of {a:#x}, not live after it"
        elif action == "segment_free":
            segments.append([a, n, e["stream"]])
        elif action == "segment_unmap":
            segments.append([a, n, e["stream"]])
            segments.sort()
            merged = []
            for s in segments:
                if merged and merged[-1][0] + merged[-1][1] == s[0] and merged[-1][2] == s[2]:
                    merged[-1][1] += s[1]
                else:
                    merged.append(s)
            segments[:] = merged
        elif action == "segment_alloc":
            found = [s for s in segments if s[0] == a]
            assert found, f"segment_alloc of {a:#x}: no segment starts there later"
            segments.remove(found[0])
        elif action == "segment_map":
            holder = [s for s in segments if s[0] <= a and a + n <= s[0] + s[1]]
            assert holder, f"segment_map of {a:#x}+{n}: no segment holds it later"
            s = holder[0]
            segments.remove(s)
            if s[0] < a:
                segments.append([s[0], a - s[0], s[2]])
            if a + n < s[0] + s[1]:
                segments.append([a + n, s[0] + s[1] - a - n, s[2]])
            segments.sort()
        check()
    return len(events)


def viz(*args):
    return subprocess.run([sys.executable, "-m", "torch.cuda._memory_viz", *args], capture_output=True, text=True,
                          env=clean_env(), cwd="/", timeout=120)


@pytest.mark.parametrize("conf", ["", "expandable_segments:False"])
def test_snapshot_renders_in_torchs_visualizer(real_torch, real_lib, cudart_shim, tmp_path, conf):
    got, (ours, via_torch) = workload(real_lib, cudart_shim, tmp_path, conf=conf)
    assert got["patched"] == [True, True, True] and got["oom"]
    with open(ours, "rb") as f:
        snap = pickle.load(f)
    with open(via_torch, "rb") as f:
        assert pickle.load(f)["segments"] == snap["segments"], "torch's _dump_snapshot reads the patched _snapshot"
    assert set(snap) == {"segments", "device_traces", "allocator_settings"}
    assert snap["allocator_settings"]["expandable_segments"] is (conf == "")
    stats = got["stats"]
    segs = snap["segments"]
    assert got["segments"] == len(segs)
    # Small blocks share the stream's expandable segment; without expandable segments they
    # get 2 MiB segments of their own, PyTorch's small pool.
    assert {s["segment_type"] for s in segs} == ({"large"} if conf == "" else {"large", "small"})
    assert {s["stream"] for s in segs} == {0, STREAM}
    assert all(s["is_expandable"] is (conf == "") and s["segment_pool_id"] == (0, 0) for s in segs)
    assert sum(s["total_size"] for s in segs) == stats["reserved_bytes.all.current"]
    assert sum(s["allocated_size"] for s in segs) == stats["allocated_bytes.all.current"]
    assert sum(s["requested_size"] for s in segs) == got["requested_now"]
    states = [b["state"] for s in segs for b in s["blocks"]]
    assert states.count("active_allocated") == stats["allocation.all.current"]
    assert set(states) <= {"active_allocated", "active_pending_free", "inactive"}
    for s in segs:
        assert s["frames"] == [] and all(b["frames"] == [] for b in s["blocks"])
        assert s["allocated_size"] == sum(b["size"] for b in s["blocks"] if b["state"] == "active_allocated")
    trace = snap["device_traces"][0]
    assert all(t == [] for t in snap["device_traces"][1:]), "one list per device, device 1 unused"
    actions = [e["action"] for e in trace]
    assert actions.count("alloc") == 27 and actions.count("free_requested") == 15
    assert actions.count("free_completed") == 15 and actions.count("oom") == 1
    new, gone = ("segment_map", "segment_unmap") if conf == "" else ("segment_alloc", "segment_free")
    assert new in actions and gone in actions, "empty_cache() released memory"
    oom = trace[actions.index("oom")]
    assert oom["size"] == 1 << 50 and "device_free" in oom and "addr" not in oom
    assert all(isinstance(e["time_us"], int) and e["frames"] == [] for e in trace)
    assert viz_replay(snap) > 0

    # What the `stats` and `trace` commands print, in one interpreter (torch imports slowly).
    # segsum raises when a segment's blocks do not add up to its size.
    summary, listing = run_json(f"""
        import json, pickle
        from torch.cuda import _memory_viz as viz
        with open({str(ours)!r}, "rb") as f:
            data = pickle.load(f)
        print(json.dumps([viz.segsum(data), viz.trace(data)]))
    """, [])
    assert f"segments: {len(segs)}" in summary
    assert "raise OutOfMemoryError" in listing and f"{len(trace)} entries" in listing
    for cmd in ("segment_plot", "trace_plot"):
        html = tmp_path / f"{cmd}.html"
        proc = viz(cmd, str(ours), "-o", str(html))
        assert proc.returncode == 0, proc.stderr
        text = html.read_text()
        assert "MemoryViz.js" in text and '"name": "snapshot.pickle"' in text and len(text) > 1000


@pytest.fixture(scope="module")
def poolside_bin(real_lib):
    found = [p for p in built("poolside") if p.parent.name == "release"]
    if not found:
        pytest.skip("target/release/poolside not built (cargo build --release -p poolside-cli -p poolside-cuda)")
    return str(found[0])


@pytest.mark.parametrize("early", [(), (5 * MIB, 1024)])
def test_poolside_replay_reads_it_back_with_the_pools_peaks(real_torch, real_lib, cudart_shim, poolside_bin,
                                                            tmp_path, early):
    got, (ours, _) = workload(real_lib, cudart_shim, tmp_path, early=early)
    proc = subprocess.run([poolside_bin, "replay", "--json", str(ours)], capture_output=True, text=True,
                          env=clean_env(POOLSIDE_CUDA_LIB=real_lib), timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (dev,) = report["devices"]
    stats = got["stats"]
    trace = dev["trace"]
    assert trace["allocs"] == 27 and trace["unreadable"] == 0 and dev["not_replayed"] == 0
    assert trace["starts_mid_run"] is bool(early) and trace["start_blocks"] == len(early)
    assert dev["pytorch"]["matches_dump"] is True
    # Every size here is a multiple of 512 B, the replay's unit, so its peak allocated is
    # the peak of the requested bytes.
    assert dev["peak_allocated_bytes"] == stats["requested_bytes.all.peak"]
    if not early:
        # Recorded from an empty pool: the reserved bytes the trace reconstructs peak
        # where the pool's did.
        assert dev["pytorch"]["start_reserved_bytes"] == 0
        assert dev["pytorch"]["peak_reserved_bytes"] == stats["reserved_bytes.all.peak"]


def test_recording_switch_bound_and_arguments(real_lib):
    """The library alone (no torch): what each record_memory_history argument does."""
    got = run_json("""
        import ctypes, json, os
        import poolside.torch as pt
        from poolside.errors import PoolsideError
        lib = ctypes.CDLL(os.environ["POOLSIDE_CUDA_LIB"])
        lib.poolside_cuda_malloc.restype = ctypes.c_void_p
        lib.poolside_cuda_malloc.argtypes = [ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
        lib.poolside_cuda_free.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
        def churn(n):
            for i in range(n):
                lib.poolside_cuda_free(lib.poolside_cuda_malloc(512 * (i + 1), 0, None), 0, 0, None)
        def actions():
            return [e["action"] for e in pt.memory_snapshot()["device_traces"][0]]
        out = {}
        churn(3)
        out["off"] = actions()
        pt.record_memory_history(max_entries=5)
        churn(10)
        out["bounded"] = actions()
        pt.record_memory_history(max_entries=1000, skip_actions=["free_requested", "snapshot"])
        churn(2)
        out["kept_and_skipped"] = actions()
        pt.record_memory_history(max_entries=1000, clear_history=True)
        churn(1)
        out["cleared"] = actions()
        pt.record_memory_history("state")
        churn(2)
        out["state"] = actions()
        pt.record_memory_history(True, trace_alloc_max_entries=3)  # the legacy form
        churn(2)
        out["legacy"] = actions()
        pt.record_memory_history(None)
        out["disabled"] = actions()
        churn(2)
        out["still_off"] = actions()
        errors = []
        for kwargs in ({"enabled": "yes"}, {"context": "some"}, {"stacks": "cpp"}, {"max_entries": -1},
                       {"skip_actions": ["allocate"]}):
            try:
                pt.record_memory_history(**kwargs)
            except PoolsideError as e:
                errors.append(str(e))
        out["errors"] = errors
        out["after_errors"] = actions()
        print(json.dumps(out))
    """, [PYTHON_DIR], POOLSIDE_CUDA_LIB=real_lib, POOLSIDE_CUDA_DRIVER="sim")
    assert got["off"] == []
    assert len(got["bounded"]) == 5 and got["bounded"][-1] == "free_completed"
    kept = got["kept_and_skipped"]
    assert kept[:5] == got["bounded"] and kept[5:] == ["alloc", "free_completed"] * 2
    assert got["cleared"] == ["alloc", "free_requested", "free_completed"]
    assert got["state"] == ["free_completed"]
    assert got["legacy"] == ["alloc", "free_requested", "free_completed"]
    assert got["disabled"] == [] and got["still_off"] == []
    assert len(got["errors"]) == 5 and "invalid enabled 'yes'" in got["errors"][0]
    assert got["after_errors"] == [], "a refused call changes nothing"
