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

from conftest import built, clean_env

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
