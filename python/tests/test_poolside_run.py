"""`poolside run -- python script.py` on an unchanged PyTorch script, then `poolside stat`
from outside: the host pool and the program's device section.

Real PyTorch (a CUDA build) with the CUDA runtime shim and the simulated driver stand in
for a GPU; the script itself never mentions poolside's setup. Skipped, saying why, when
the poolside binary, PyTorch or the shim's compiler is missing.
"""

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import PYTHON_DIR, built, clean_env

MIB = 1 << 20
SCRIPT = textwrap.dedent("""\
    import sys, torch
    p = torch._C._cuda_cudaCachingAllocator_raw_alloc(48 << 20, 0)
    print("ready", flush=True)
    sys.stdin.readline()
    torch._C._cuda_cudaCachingAllocator_raw_delete(p)
""")


@pytest.fixture(scope="module")
def poolside_bin(real_lib):
    found = [p for p in built("poolside") if p.parent.name == "release"]
    if not found:
        pytest.skip("target/release/poolside not built (cargo build --release -p poolside-cli -p poolside-capi)")
    return str(found[0])


def test_run_gives_an_unchanged_torch_script_the_gpu_pool_and_stat_shows_it(poolside_bin, cudart_shim, tmp_path):
    stats = tmp_path / "stats"
    stats.mkdir()
    env = clean_env(POOLSIDE_CONF=f"stats_dir:{stats}", POOLSIDE_CUDA_DRIVER="sim", LD_PRELOAD=cudart_shim)
    proc = subprocess.Popen([poolside_bin, "run", "--", sys.executable, "-c", SCRIPT], env=env, cwd="/",
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.poll() is not None else ""
        table = subprocess.run([poolside_bin, "stat", "--stats-dir", str(stats)], capture_output=True, text=True,
                               check=True).stdout
        report = json.loads(subprocess.run([poolside_bin, "stat", "--stats-dir", str(stats), "--json"],
                                           capture_output=True, text=True, check=True).stdout)
    finally:
        out, err = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0, err
    assert "not enabled" not in err
    [entry] = report  # the stats directory is this test's own
    assert entry["host"]["allocations"] > 0  # the preload serves Python's own memory
    [device] = entry["devices"]
    assert device["name"] == "cuda:0"
    assert device["requested_bytes"]["current"] == 48 * MIB
    assert device["allocations"]["current"] == 1
    lines = table.splitlines()
    assert any(" host " in l for l in lines) and any(" cuda:0 " in l for l in lines), table


FIGURES_SCRIPT = textwrap.dedent("""\
    import json, sys, torch
    import poolside.torch as pt
    raw_alloc = torch._C._cuda_cudaCachingAllocator_raw_alloc
    raw_delete = torch._C._cuda_cudaCachingAllocator_raw_delete
    blocks = [raw_alloc(n << 20, 0) for n in (3, 3, 40, 40)]
    raw_delete(blocks[0])  # beside a live block: fragmentation
    raw_delete(blocks[2])  # 40 MiB on their own pages: cached
    torch.cuda.is_initialized = lambda: True  # the shim allocates; torch's CUDA never starts
    s = pt.pool_stats(0)
    m = pt.memory_stats(0)
    print(json.dumps({"pool": s, "torch": m}), flush=True)
    sys.stdin.readline()
""")


def test_stat_and_memory_stats_show_the_same_figures_under_the_same_names(poolside_bin, cudart_shim, tmp_path):
    """Cached, fragmented, fragmentation, peak overhead and the largest free block: read
    in-process by poolside.torch and from outside by `poolside stat --json`."""
    stats = tmp_path / "stats"
    stats.mkdir()
    # This checkout's poolside package, not an installed copy.
    env = clean_env(POOLSIDE_CONF=f"stats_dir:{stats}", POOLSIDE_CUDA_DRIVER="sim", LD_PRELOAD=cudart_shim,
                    PYTHONPATH=str(PYTHON_DIR))
    proc = subprocess.Popen([poolside_bin, "run", "--", sys.executable, "-c", FIGURES_SCRIPT], env=env, cwd="/",
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.poll() is not None else ""
        inside = json.loads(line)
        report = json.loads(subprocess.run([poolside_bin, "stat", "--stats-dir", str(stats), "--json"],
                                           capture_output=True, text=True, check=True).stdout)
    finally:
        out, err = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0, err
    [entry] = report
    [device] = entry["devices"]
    pool = inside["pool"]
    for name in ("cached_bytes", "largest_free_block", "fragmentation", "peak_overhead"):
        assert device[name] == pool[name], name
    for name in ("fragmented_bytes", "reserved_bytes", "allocated_bytes", "active_bytes"):
        assert device[name] == pool[name], name
    assert inside["torch"]["inactive_split_bytes.all.current"] == device["fragmented_bytes"]["current"]
    # 40 MiB freed on pages of their own are cached, not fragmentation.
    assert device["cached_bytes"] >= 40 * MIB
    assert device["fragmented_bytes"]["current"] < device["cached_bytes"]
    assert device["largest_free_block"] >= 40 * MIB
    assert device["mapped_bytes"] == device["reserved_bytes"]["current"]
