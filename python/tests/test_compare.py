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
