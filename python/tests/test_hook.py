"""python/hook/sitecustomize.py: what `poolside run -- python ...` loads at startup."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import CHECKOUT_HOOK_DIR, CHECKOUT_PYTHON_DIR, FAKE_TORCH, HOOK_DIR, PYTHON_DIR, run_json, run_py

STATE = textwrap.dedent("""\
    import json, sys
    import torch.cuda.memory as m
    print(json.dumps({"swaps": m.swaps, "after": m.swapped_after_torch_import, "path": m.current and m.current.path,
                      "hooks": m.current and sorted(m.current.allocator().hooks),
                      "finders": [type(f).__name__ for f in sys.meta_path if "Poolside" in type(f).__name__]}))
""")
MODULES = "import json, sys; print(json.dumps(sorted(sys.modules)))"


def test_installs_a_finder_and_imports_nothing_heavy():
    got = run_json("import json, sys; print(json.dumps([type(sys.meta_path[0]).__name__, "
                   "'torch' in sys.modules, any(m.startswith('poolside') for m in sys.modules)]))", [HOOK_DIR, FAKE_TORCH])
    assert got == ["PoolsideTorchFinder", False, False]


def test_stays_out_of_the_way_of_programs_without_torch(tmp_path):
    baseline = set(run_json(MODULES, [tmp_path]))
    proc = run_py(MODULES, [HOOK_DIR, FAKE_TORCH])
    extra = set(json.loads(proc.stdout)) - baseline
    assert extra == {"sitecustomize"}, extra
    assert proc.stderr == ""
    quiet = run_py("pass", [HOOK_DIR, FAKE_TORCH])
    assert quiet.stdout == "" and quiet.stderr == ""


@pytest.mark.parametrize("first_import", ["import torch", "import torch.cuda.memory", "from torch import cuda"])
def test_enables_right_after_torch_import(fake_lib, first_import):
    # PYTHON_DIR: the copy under test, not whatever copy pip installed earlier.
    got = run_json(first_import + "\n" + STATE, [HOOK_DIR, FAKE_TORCH, PYTHON_DIR], POOLSIDE_CUDA_LIB=fake_lib)
    assert got["swaps"] == 1 and got["after"] is True
    assert got["path"] == str(fake_lib)
    # All eight of CUDAPluggableAllocator's hooks, the three CUDA graph ones included.
    assert got["hooks"] == sorted([
        "set_init_fn", "set_reset_fn", "set_memory_fraction_fn", "set_base_alloc_fn", "set_record_stream_fn",
        "set_begin_allocate_to_pool", "set_end_allocate_to_pool_fn", "set_release_pool",
    ]), got["hooks"]
    assert got["finders"] == [], "the finder removes itself after firing"


def test_torch_stats_work_unchanged_under_the_hook(fake_lib):
    got = run_json("import json, torch; torch.cuda.init(); print(json.dumps(torch.cuda.max_memory_allocated(0)))",
                   [HOOK_DIR, FAKE_TORCH], POOLSIDE_CUDA_LIB=fake_lib)
    assert isinstance(got, int) and got > 0


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_poolside_torch_0_disables(fake_lib, value):
    got = run_json("import torch\n" + STATE, [HOOK_DIR, FAKE_TORCH], POOLSIDE_CUDA_LIB=fake_lib, POOLSIDE_TORCH=value)
    assert got["swaps"] == 0 and got["finders"] == []


@pytest.mark.parametrize("env", [{"POOLSIDE_CUDA_LIB": "/nonexistent/libpoolside_cuda.so"}, {"FAKE_TORCH_NO_CUDA": "1"}])
def test_failure_is_one_line_and_program_continues(fake_lib, env):
    env = {"POOLSIDE_CUDA_LIB": fake_lib, **env}
    proc = run_py("import torch\nprint('still running')", [HOOK_DIR, FAKE_TORCH], **env)
    assert proc.stdout == "still running\n"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("poolside: not enabled for PyTorch (")
    assert lines[0].endswith("using PyTorch's native allocator")


def write_other_sitecustomize(directory):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        "import sys\nsys.chained_name = __name__\nsys.chained_count = getattr(sys, 'chained_count', 0) + 1\n"
    )


CHAIN = ("import json, sys; print(json.dumps([getattr(sys, 'chained_name', None), getattr(sys, 'chained_count', 0), "
         "sum('Poolside' in type(f).__name__ for f in sys.meta_path)]))")


def test_chains_an_existing_sitecustomize(tmp_path):
    write_other_sitecustomize(tmp_path / "other")
    assert run_json(CHAIN, [HOOK_DIR, tmp_path / "other"]) == ["sitecustomize", 1, 1]


def test_chaining_still_runs_when_torch_hook_disabled(tmp_path):
    write_other_sitecustomize(tmp_path / "other")
    assert run_json(CHAIN, [HOOK_DIR, tmp_path / "other"], POOLSIDE_TORCH="0") == ["sitecustomize", 1, 0]


def test_no_recursion_with_repeated_or_copied_hook_dirs(tmp_path):
    write_other_sitecustomize(tmp_path / "other")
    (tmp_path / "link").symlink_to(HOOK_DIR)
    shutil.copytree(HOOK_DIR, tmp_path / "copy", ignore=shutil.ignore_patterns("__pycache__"))
    path = [HOOK_DIR, tmp_path / "link", HOOK_DIR, tmp_path / "copy", tmp_path / "other"]
    assert run_json(CHAIN, path) == ["sitecustomize", 1, 1]


def test_finds_the_package_without_pip_install(tmp_path, fake_lib):
    """In a venv that cannot see any installed poolside, the hook falls back to python/."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    venv_python = str(tmp_path / "venv" / "bin" / "python")
    code = "import torch, json, poolside, torch.cuda.memory as m; print(json.dumps([poolside.__file__, m.swaps]))"
    where, swaps = run_json(code, [CHECKOUT_HOOK_DIR, FAKE_TORCH], python=venv_python, POOLSIDE_CUDA_LIB=fake_lib)
    assert os.path.realpath(where).startswith(str(CHECKOUT_PYTHON_DIR) + os.sep) and swaps == 1
