"""Discovery order of libpoolside_cuda.so: env, package, beside the binary, checkout."""

import os
import shutil
import stat

import pytest

from conftest import PYTHON_DIR, run_py

NAME = "libpoolside_cuda.so"


@pytest.fixture()
def layout(tmp_path):
    """A fake checkout with a copy of the package and a library at every candidate place."""
    repo = tmp_path / "repo"
    shutil.copytree(PYTHON_DIR / "poolside", repo / "python" / "poolside",
                    ignore=shutil.ignore_patterns("__pycache__", "lib"))
    (repo / "Cargo.toml").write_text("[workspace]\n")
    places = {
        "env": tmp_path / "env" / NAME,
        "package": repo / "python" / "poolside" / "lib" / NAME,
        "binary": tmp_path / "bin" / NAME,
        "binary_lib": tmp_path / "lib" / NAME,
        "release": repo / "target" / "release" / NAME,
        "debug": repo / "target" / "debug" / NAME,
    }
    for p in places.values():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    exe = tmp_path / "bin" / "poolside"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return repo, places


def find(repo, env_lib=None, path_dirs=()):
    env = {"PATH": os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"])}
    if env_lib is not None:
        env["POOLSIDE_CUDA_LIB"] = env_lib
    proc = run_py("""
        from poolside._library import find_library
        from poolside.errors import PoolsideError
        try:
            print(find_library())
        except PoolsideError as e:
            print("ERROR", e)
    """, [repo / "python"], **env)
    return proc.stdout.strip()


def test_order(layout):
    repo, places = layout
    bin_dir = places["binary"].parent
    assert find(repo, places["env"], [bin_dir]) == str(places["env"])
    for name in ("package", "binary", "binary_lib", "release", "debug"):
        assert find(repo, None, [bin_dir]) == str(places[name]), name
        places[name].unlink()
    out = find(repo, None, [bin_dir])
    assert out.startswith("ERROR") and "tried:" in out and "cargo build" in out
    for name in ("package", "release", "debug"):
        assert str(places[name]) in out


def test_binary_found_through_a_symlink(layout, tmp_path):
    repo, places = layout
    places["package"].unlink()
    links = tmp_path / "links"
    links.mkdir()
    (links / "poolside").symlink_to(places["binary"].parent / "poolside")
    assert find(repo, None, [links]) == str(places["binary"])


def test_env_naming_no_file_is_an_error(layout, tmp_path):
    repo, _ = layout
    out = find(repo, str(tmp_path / "missing.so"))
    assert out.startswith("ERROR") and "POOLSIDE_CUDA_LIB" in out and "does not name a file" in out


def test_no_checkout_candidates_outside_a_checkout(layout):
    repo, places = layout
    (repo / "Cargo.toml").unlink()
    for name in ("package", "binary", "binary_lib"):
        places[name].unlink()
    out = find(repo)
    assert out.startswith("ERROR") and "target" not in out.split("tried:")[1].split("Build it")[0]
