"""benches/gpu/compare.py without a GPU: it must refuse clearly, and its bisection must
find the largest fitting batch. (The measurements themselves need a GPU.)"""

import importlib.util
import subprocess
import sys

import pytest

from conftest import FAKE_TORCH, REPO, clean_env

COMPARE = REPO / "benches" / "gpu" / "compare.py"
pytestmark = pytest.mark.skipif(not COMPARE.is_file(), reason="benches/gpu/compare.py absent")


def load():
    spec = importlib.util.spec_from_file_location("compare", COMPARE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("limit,base,cap,expected", [
    (100, 16, 1024, (100, False)),   # grows past base, then bisects
    (5, 16, 1024, (5, False)),       # base itself does not fit
    (0, 16, 1024, (0, False)),       # nothing fits
    (5000, 16, 1024, (1024, True)),  # still fits at the cap
    (16, 16, 1024, (16, False)),
])
def test_max_batch_bisection(limit, base, cap, expected):
    calls = []

    def fits(b):
        calls.append(b)
        return b <= limit

    best, capped = load().max_batch(fits, base, cap)
    assert (best, capped) == expected or (not capped and best <= limit and limit - best <= max(1, best // 32))
    assert all(b <= cap for b in calls)


@pytest.mark.parametrize("torch_kind,needle", [("absent", "PyTorch is not installed"), ("fake", "no CUDA GPU is visible")])
def test_refuses_without_gpu(torch_kind, needle, tmp_path):
    if torch_kind == "absent":
        # Shadow any installed torch with one whose import fails, as a missing one does.
        (tmp_path / "torch").mkdir()
        (tmp_path / "torch" / "__init__.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
        pythonpath = str(tmp_path)
    else:
        pythonpath = str(FAKE_TORCH)
    env = clean_env(PYTHONPATH=pythonpath)
    proc = subprocess.run([sys.executable, str(COMPARE)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and needle in proc.stderr and proc.stdout == ""


def test_scripts_compile():
    import py_compile

    for name in ("compare.py", "child.py", "workloads.py"):
        py_compile.compile(str(COMPARE.parent / name), doraise=True, cfile=None)


def test_timed_runs_alternate_and_rotate():
    order = load().rounds(["native", "expandable", "cudaMallocAsync", "poolside"], 3)
    assert len(order) == 3
    assert all(sorted(r) == sorted(order[0]) for r in order), "every allocator once per round"
    assert len({r[0] for r in order}) == 3, "a different allocator starts each round"


def test_rows_give_median_and_range_and_count_ooms():
    mod = load()
    run = lambda ms, reserved: {"oom": False, "median_step_ms": ms, "peak_driver_bytes": reserved,
                                "peak_allocated_bytes": reserved // 2, "peak_reserved_bytes": reserved}
    row = mod.summarize([run(12.0, 3 << 20), run(10.0, 2 << 20), run(11.0, 2 << 20), {"oom": True}])
    assert row["step"] == "11.00 (10.00-12.00), OOM in 1 of 4"
    assert row["reserved"] == "2 (2-3)"
    assert mod.summarize([run(5.0, 1 << 20)])["step"] == "5.00"
    assert mod.summarize([{"oom": True}])["step"] == "OOM"


def _fake_cuda(total, free, cap):
    """Just enough of torch for child.fraction_honoured: an allocator refusing beyond cap."""
    import types

    class OutOfMemoryError(RuntimeError):
        pass

    def empty(n, dtype=None, device=None):
        if n > cap:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate")
        return object()

    cuda = types.SimpleNamespace(mem_get_info=lambda dev: (free, total), OutOfMemoryError=OutOfMemoryError)
    return types.SimpleNamespace(cuda=cuda, empty=empty, uint8="uint8")


def test_fraction_check_tells_an_allocator_that_keeps_the_cap_from_one_that_does_not(monkeypatch):
    spec = importlib.util.spec_from_file_location("child", COMPARE.parent / "child.py")
    child = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(child)
    gib = 1 << 30
    keeps = _fake_cuda(total=80 * gib, free=79 * gib, cap=8 * gib)
    ignores = _fake_cuda(total=80 * gib, free=79 * gib, cap=79 * gib)
    # child.is_oom imports torch; let it see the fake.
    monkeypatch.setitem(sys.modules, "torch", keeps)
    assert child.fraction_honoured(keeps, 0.1) is True
    monkeypatch.setitem(sys.modules, "torch", ignores)
    assert child.fraction_honoured(ignores, 0.1) is False
    # Too little free memory to tell: the larger block would fail under any allocator.
    full = _fake_cuda(total=80 * gib, free=8 * gib, cap=8 * gib)
    monkeypatch.setitem(sys.modules, "torch", full)
    assert child.fraction_honoured(full, 0.1) is None
