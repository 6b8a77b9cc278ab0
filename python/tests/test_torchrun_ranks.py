"""`poolside run -- torchrun --nproc_per_node=2 train.py` on the CPU (gloo), checked from
outside while it runs: `poolside stat` and `poolside export` tell the two workers apart by
RANK / LOCAL_RANK / WORLD_SIZE, and the launcher shows none.

Each worker holds host memory from the preloaded pool (tensors on the CPU); no GPU is
needed. Skipped, saying why, when torchrun, PyTorch or the release `poolside` binary is
missing.
"""

import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from conftest import built, clean_env

MIB = 1 << 20
WORKER = textwrap.dedent("""\
    import os, sys, time
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    # 64 MiB of host tensors per worker, held until the test says go.
    held = [torch.full((1 << 20,), float(rank)) for _ in range(16)]
    dist.all_reduce(held[0])  # the workers really talk to each other
    assert float(held[0][0]) == 1.0  # 0 + 1
    out = sys.argv[1]
    with open(os.path.join(out, f"ready-{rank}"), "w") as f:
        f.write(str(os.getpid()))
    while not os.path.exists(os.path.join(out, "go")):
        time.sleep(0.05)
    dist.barrier()
    dist.destroy_process_group()
""")


@pytest.fixture(scope="module")
def poolside_bin():
    found = [p for p in built("poolside") if p.parent.name == "release"]
    if not found:
        pytest.skip("target/release/poolside not built (cargo build --release -p poolside-cli -p poolside-capi)")
    if not [p for p in built("libpoolside.so") if p.parent.name == "release"]:
        pytest.skip("target/release/libpoolside.so not built (cargo build --release -p poolside-capi)")
    return str(found[0])


@pytest.fixture(scope="module")
def torchrun():
    exe = shutil.which("torchrun")
    if exe is None:
        pytest.skip("torchrun is not on PATH (pip install torch)")
    probe = subprocess.run([sys.executable, "-c", "import torch.distributed as d; print(d.is_gloo_available())"],
                           capture_output=True, text=True, env=clean_env())
    if probe.returncode != 0 or probe.stdout.strip() != "True":
        pytest.skip(f"PyTorch with gloo is not importable: {probe.stderr.strip()[-200:]}")
    return exe


def scrape(poolside_bin, stats):
    """One scrape of a real `poolside export` server over the stats directory."""
    server = subprocess.Popen([poolside_bin, "export", "--listen", "127.0.0.1:0", "--stats-dir", str(stats)],
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        m = re.match(r"poolside export: serving (http://\S+/metrics)", line)
        assert m, f"unexpected first line {line!r}"
        with urllib.request.urlopen(m.group(1), timeout=30) as r:
            return r.read().decode()
    finally:
        server.kill()
        server.wait()


def series(text, name):
    """[(labels dict, value)] of metric `name` in a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m:
            out.append((dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1))), float(m.group(2))))
    return out


def test_torchrun_workers_show_their_ranks_and_the_launcher_none(poolside_bin, torchrun, tmp_path):
    stats = tmp_path / "stats"
    stats.mkdir()
    script = tmp_path / "train.py"
    script.write_text(WORKER)
    env = clean_env(POOLSIDE_CONF=f"stats_dir:{stats}", OMP_NUM_THREADS=1)
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    proc = subprocess.Popen([poolside_bin, "run", "--", torchrun, "--standalone", "--nproc_per_node=2",
                             str(script), str(tmp_path)],
                            env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not all((tmp_path / f"ready-{r}").exists() for r in (0, 1)):
            if proc.poll() is not None:
                pytest.fail(f"torchrun exited with {proc.returncode}:\n{proc.stderr.read()[-4000:]}")
            assert time.monotonic() < deadline, "the workers did not get ready in 180 s"
            time.sleep(0.1)
        worker_pids = {int((tmp_path / f"ready-{r}").read_text()): r for r in (0, 1)}
        report = json.loads(subprocess.run([poolside_bin, "stat", "--stats-dir", str(stats), "--json"],
                                           capture_output=True, text=True, check=True).stdout)
        table = subprocess.run([poolside_bin, "stat", "--stats-dir", str(stats)],
                               capture_output=True, text=True, check=True).stdout
        metrics = scrape(poolside_bin, stats)
    finally:
        (tmp_path / "go").touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-4000:]

    by_pid = {p["pid"]: p for p in report}
    for pid, rank in worker_pids.items():
        w = by_pid[pid]
        assert (w["rank"], w["local_rank"], w["world_size"]) == (rank, rank, 2), w
        assert w["host"]["live_bytes"] >= 64 * MIB, w["host"]
    launchers = [p for p in report if "--nproc_per_node=2" in p["command"]]
    assert launchers, [p["command"] for p in report]
    for p in launchers:
        assert (p["rank"], p["local_rank"], p["world_size"]) == (None, None, None), p
    # Nothing else claims a rank: only the two workers.
    assert sorted(p["rank"] for p in report if p["rank"] is not None) == [0, 1]

    rows = {}
    for line in table.splitlines()[1:]:
        cells = line.split()
        if len(cells) > 2 and cells[2] == "host":
            rows[int(cells[0])] = cells[1]
    for pid, rank in worker_pids.items():
        assert rows[pid] == f"{rank}/2", table
    assert all(rows[p["pid"]] == "-" for p in launchers), table

    live = series(metrics, "poolside_live_bytes")
    for pid, rank in worker_pids.items():
        [host] = [l for l, _ in live if l["pid"] == str(pid) and l["device"] == "host"]
        assert (host.get("rank"), host.get("local_rank"), host.get("world_size")) == (str(rank), str(rank), "2"), host
    for p in launchers:
        [host] = [l for l, _ in live if l["pid"] == str(p["pid"]) and l["device"] == "host"]
        assert not {"rank", "local_rank", "world_size"} & host.keys(), host
