"""PEP 517 backend for the poolside wheel: maturin, plus the two shared libraries.

maturin builds one cargo package per wheel. With ``bindings = "bin"`` it builds the
``poolside`` command (cli/) and packs it with the Python package, but it cannot also
build other packages' cdylibs into the same wheel (PyO3/maturin#368: one binding kind,
one package per build). So before handing over to maturin this backend runs one cargo
build of ``poolside-capi`` and ``poolside-cuda`` (same workspace, target directory and
release profile that maturin then uses, so nothing is compiled twice), and stages the
results in maturin's wheel data directory (``[tool.maturin] data``), laid out as an
install prefix:

    lib/libpoolside.so, lib/libpoolside_cuda.so   -> <prefix>/lib/
    include/poolside*.h                            -> <prefix>/include/
    share/poolside/python-hook/sitecustomize.py    -> <prefix>/share/poolside/python-hook/

which is where ``poolside run`` (cli/src/run/locate.rs, from <prefix>/bin/poolside) and
``poolside._library`` look. Everything else (metadata, tags, the auditwheel check, the
RECORD) is maturin's.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import maturin
from maturin import (  # noqa: F401  (the PEP 517 hooks this backend leaves to maturin)
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
)

HERE = Path(__file__).resolve().parent.parent  # python/
REPO = HERE.parent
STAGE = HERE / "build" / "wheel-data"
LIBS = ("libpoolside.so", "libpoolside_cuda.so")


def _target_dir():
    """cargo's target directory for the workspace (honours CARGO_TARGET_DIR and config)."""
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--manifest-path", str(REPO / "Cargo.toml")],
        check=True, capture_output=True, text=True,
    )
    return Path(json.loads(meta.stdout)["target_directory"])


def _stage_libraries():
    subprocess.run(
        ["cargo", "build", "--release", "-p", "poolside-capi", "-p", "poolside-cuda",
         "--manifest-path", str(REPO / "Cargo.toml")],
        check=True,
    )
    release = _target_dir() / "release"
    shutil.rmtree(STAGE, ignore_errors=True)
    data = STAGE / "data"
    (data / "lib").mkdir(parents=True)
    for name in LIBS:
        shutil.copy2(release / name, data / "lib" / name)
    (data / "include").mkdir()
    for header in sorted((REPO / "include").glob("*.h")):
        shutil.copy2(header, data / "include" / header.name)
    hook = data / "share" / "poolside" / "python-hook"
    hook.mkdir(parents=True)
    shutil.copy2(HERE / "hook" / "sitecustomize.py", hook / "sitecustomize.py")


def _manylinux(config_settings):
    """The settings with ``--compatibility pypi`` added unless the caller chose a tag.

    maturin's PEP 517 hook passes ``--compatibility off`` (a plain ``linux`` tag, fit for
    this machine only) unless told otherwise; ``pypi`` makes maturin audit the binary and
    tag the wheel with the lowest manylinux version its glibc symbol versions allow.
    The two libraries need no more than the binary (libc, libgcc_s; the CUDA plugin also
    libstdc++, which manylinux allows): `auditwheel show` on the wheel says the same tag.
    """
    args = maturin.get_maturin_pep517_args(config_settings)
    if not any(a.startswith(("--compatibility", "--manylinux")) for a in args):
        args = [*args, "--compatibility", "pypi"]
    return {**(config_settings or {}), "maturin.build-args": args}


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _stage_libraries()
    return maturin.build_wheel(wheel_directory, _manylinux(config_settings), metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _stage_libraries()
    return maturin.build_editable(wheel_directory, _manylinux(config_settings), metadata_directory)


# maturin checks that the data directory exists even when it only writes metadata.
def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    STAGE.mkdir(parents=True, exist_ok=True)
    return maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    STAGE.mkdir(parents=True, exist_ok=True)
    return maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings)
