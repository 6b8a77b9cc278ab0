"""Shared fixtures: the fake torch, a fake libpoolside_cuda built from C, and a runner
that starts real Python subprocesses with PYTHONPATH set the way `poolside run` sets it.

Subprocesses are used because everything under test is process-global: import hooks,
sitecustomize, PyTorch's one-shot allocator swap.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

collect_ignore = ["fakes"]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent.parent
FAKE_TORCH = TESTS / "fakes"
# The checkout's package and hook, for the tests of how a checkout is found.
CHECKOUT_PYTHON_DIR = TESTS.parent
CHECKOUT_HOOK_DIR = CHECKOUT_PYTHON_DIR / "hook"


def _under_test():
    """(directory holding the ``poolside`` package, hook directory) of the copy under test.

    The checkout's by default. With ``POOLSIDE_TEST_PREFIX`` set to the prefix an installed
    wheel went into (a venv: .ci/test runs the suite with that venv's Python), the installed
    package (found as that interpreter imports it, which must be inside the prefix) and the
    hook installed under ``<prefix>/share/poolside/python-hook``.
    """
    prefix = os.environ.get("POOLSIDE_TEST_PREFIX")
    if not prefix:
        return CHECKOUT_PYTHON_DIR, CHECKOUT_HOOK_DIR
    import importlib.util

    prefix = Path(prefix).resolve()
    spec = importlib.util.find_spec("poolside")
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    if origin is None or prefix not in origin.parents:
        raise RuntimeError(f"POOLSIDE_TEST_PREFIX={prefix}, but this Python imports poolside from {origin}")
    hook = prefix / "share" / "poolside" / "python-hook"
    if not (hook / "sitecustomize.py").is_file():
        raise RuntimeError(f"POOLSIDE_TEST_PREFIX={prefix} holds no installed hook ({hook})")
    return origin.parent.parent, hook


PYTHON_DIR, HOOK_DIR = _under_test()


def clean_env(**extra):
    """os.environ without anything that would steer poolside or Python's path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLSIDE_", "FAKE_TORCH_", "PYTHON"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_py(code, pythonpath, python=sys.executable, check=True, cwd=None, **env):
    """Run ``code`` in a fresh interpreter; return the CompletedProcess (text mode).

    The working directory defaults to "/" so the checkout under test is only found
    through ``pythonpath`` (``-c`` puts the working directory first on sys.path).
    """
    full_env = clean_env(**env)
    full_env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    proc = subprocess.run(
        [python, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, cwd=cwd or "/", timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_json(code, pythonpath, **kw):
    """run_py, then parse the last stdout line as JSON."""
    proc = run_py(code, pythonpath, **kw)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def fake_lib(tmp_path_factory):
    """Path of a fake libpoolside_cuda.so compiled from fakes/fake_poolside_cuda.c."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler (cc/gcc/clang) to build the fake libpoolside_cuda these tests load")
    out = tmp_path_factory.mktemp("fakelib") / "libpoolside_cuda.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(FAKE_TORCH / "fake_poolside_cuda.c")], check=True)
    return out


@pytest.fixture(scope="session")
def real_lib():
    """Path of the built libpoolside_cuda.so; skips, saying why, when there is none."""
    path, reason = real_library()
    if path is None:
        pytest.skip(reason)
    return path


def built(name):
    """Existing build outputs called ``name``: under $CARGO_TARGET_DIR, then the checkout's
    target directories (``<target>/<profile>/name`` and ``<target>/<triple>/<profile>/name``)."""
    roots = [Path(os.environ["CARGO_TARGET_DIR"])] if os.environ.get("CARGO_TARGET_DIR") else []
    roots += sorted(REPO.glob("target*"))
    found = []
    for root in roots:
        for path in sorted(root.glob(f"*/{name}")) + sorted(root.glob(f"*/*/{name}")):
            if path.is_file() and path not in found:
                found.append(path)
    return found


def real_library():
    """(path, None) of a built libpoolside_cuda exporting the stats API, or (None, reason)."""
    import ctypes

    env = os.environ.get("POOLSIDE_CUDA_LIB")
    found = [Path(env)] if env else built("libpoolside_cuda.so")
    if not found:
        return None, "libpoolside_cuda.so not built (cargo build --release -p poolside-cuda) and POOLSIDE_CUDA_LIB unset"
    for path in found:
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        if all(hasattr(lib, s) for s in ("poolside_cuda_init", "poolside_cuda_malloc", "poolside_cuda_memory_stats")):
            return path, None
    return None, f"no built libpoolside_cuda.so exports the stats API yet (looked at {', '.join(map(str, found))})"


@pytest.fixture(scope="session")
def real_torch():
    """(torch version, libcudart soname) of an installed CUDA build of PyTorch."""
    proc = run_py("""
        import json, re, torch
        m = re.search(r"libcudart\\.so\\.[0-9]+", open("/proc/self/maps").read())
        print(json.dumps([torch.__version__, torch.version.cuda, m and m.group(0)]))
    """, [], check=False)
    if proc.returncode != 0:
        pytest.skip("PyTorch is not installed (pip install torch)")
    version, cuda, cudart = json.loads(proc.stdout.strip().splitlines()[-1])
    if cuda is None:
        pytest.skip(f"torch {version} is a CPU-only build; the pluggable allocator needs a CUDA build")
    if cudart is None:
        pytest.skip(f"torch {version} did not load libcudart at import")
    return version, cudart


@pytest.fixture(scope="session")
def cudart_shim(real_torch, tmp_path_factory):
    """fakes/cudart_shim.c built with the symbol version of PyTorch's libcudart."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the CUDA runtime shim")
    out = tmp_path_factory.mktemp("shim")
    script = out / "cudart.map"
    script.write_text(f"{real_torch[1]} {{ global: cudaGetDevice; cudaGetDeviceCount; }};\n")
    lib = out / "libcudart_shim.so"
    subprocess.run([cc, "-shared", "-fPIC", f"-Wl,--version-script={script}", "-o", str(lib),
                    str(FAKE_TORCH / "cudart_shim.c")], check=True)
    return lib
