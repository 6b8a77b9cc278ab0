"""Finding and loading libpoolside_cuda.so.

The same file must be loaded by PyTorch (through CUDAPluggableAllocator) and by the
statistics functions here: the dynamic loader then hands both the same image, so the
statistics read the pool PyTorch allocates from. Discovery is therefore one function,
used by both, and the first successful choice is remembered for the process.
"""

import ctypes
import os
import shutil
import sysconfig
from pathlib import Path

from ._layout import DeviceSection
from .errors import PoolsideError

LIB_NAME = "libpoolside_cuda.so"
ENV_LIB = "POOLSIDE_CUDA_LIB"

# Symbols PyTorch needs for the allocator itself; without them nothing works.
REQUIRED_SYMBOLS = ("poolside_cuda_malloc", "poolside_cuda_free")

_loaded = {}  # resolved path -> ctypes.CDLL


def candidates():
    """Return ``[(where, path)]`` in the order discovery tries them.

    1. ``$POOLSIDE_CUDA_LIB``;
    2. installed by the wheel: ``<prefix>/lib`` of the install scheme (venv, user,
       system) whose site-packages holds this package, where the wheel puts it beside
       ``<prefix>/bin/poolside``;
    3. packaged inside this package (``poolside/lib/``);
    4. beside the ``poolside`` binary found on PATH (as found, then symlinks resolved),
       then in ``../lib`` from those directories;
    5. a source checkout's ``target/release`` then ``target/debug`` (when this package
       sits in ``<repo>/python/poolside`` next to the workspace ``Cargo.toml``).
    """
    out = []
    env = os.environ.get(ENV_LIB)
    if env:
        out.append((ENV_LIB, Path(env)))
    pkg = Path(__file__).resolve().parent
    for lib_dir in installed_lib_dirs(pkg.parent):
        out.append(("installed", lib_dir / LIB_NAME))
    out.append(("package", pkg / "lib" / LIB_NAME))
    exe = shutil.which("poolside")
    if exe:
        dirs = [Path(exe).parent, Path(exe).resolve().parent]
        seen = []
        for cand in [d / LIB_NAME for d in dirs] + [d.parent / "lib" / LIB_NAME for d in dirs]:
            if cand not in seen:
                seen.append(cand)
                out.append(("beside poolside binary", cand))
    repo = pkg.parent.parent
    if (repo / "Cargo.toml").is_file():
        out.append(("checkout", repo / "target" / "release" / LIB_NAME))
        out.append(("checkout", repo / "target" / "debug" / LIB_NAME))
    return out


def installed_lib_dirs(site_dir):
    """``<data>/lib`` of every install scheme whose purelib or platlib is ``site_dir``.

    A wheel's ``.data/data/`` files land in the scheme's ``data`` directory (the venv or
    prefix root), its packages in the same scheme's site-packages: matching the package's
    own directory against the schemes finds the prefix the wheel was installed into,
    without guessing from ``sys.prefix``. Empty in a checkout.
    """
    out = []
    for scheme in sysconfig.get_scheme_names():
        try:
            paths = sysconfig.get_paths(scheme)
        except KeyError:  # a scheme that needs variables this interpreter lacks
            continue
        sites = [paths.get(k) for k in ("purelib", "platlib")]
        if any(s and Path(s).resolve() == site_dir for s in sites) and paths.get("data"):
            lib_dir = Path(paths["data"]) / "lib"
            if lib_dir not in out:
                out.append(lib_dir)
    return out


def find_library():
    """Path of the libpoolside_cuda.so to use, or PoolsideError listing what was tried.

    An explicit ``$POOLSIDE_CUDA_LIB`` that names no file is an error rather than a
    silent fall-through: the user asked for that file.
    """
    env = os.environ.get(ENV_LIB)
    if env and not Path(env).is_file():
        raise PoolsideError(f"{ENV_LIB}={env!r} does not name a file")
    tried = []
    for where, path in candidates():
        if path.is_file():
            return str(path)
        tried.append(f"{path} ({where})")
    raise PoolsideError(
        f"{LIB_NAME} not found; tried: " + "; ".join(tried)
        + f". Build it (cargo build --release -p poolside-cuda) or set {ENV_LIB}."
    )


def load_library(path=None):
    """Load (once per path) and return the CDLL with argument types declared.

    Raises PoolsideError when the file cannot be loaded or lacks the allocator symbols.
    """
    path = path or find_library()
    if os.path.exists(path):  # a bare soname is left to the dynamic loader's search
        path = os.path.realpath(path)
    lib = _loaded.get(path)
    if lib is not None:
        return lib
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise PoolsideError(f"cannot load {path}: {exc}") from exc
    missing = [s for s in REQUIRED_SYMBOLS if not hasattr(lib, s)]
    if missing:
        raise PoolsideError(f"{path} is not libpoolside_cuda: missing {', '.join(missing)}")
    _declare(lib)
    _loaded[path] = lib
    return lib


def _declare(lib):
    """Set argtypes/restype for the entry points poolside's Python side calls itself."""
    if hasattr(lib, "poolside_cuda_memory_stats"):
        f = lib.poolside_cuda_memory_stats
        f.argtypes = [ctypes.c_int, ctypes.POINTER(DeviceSection)]
        f.restype = ctypes.c_int
    if hasattr(lib, "poolside_cuda_reset_peak_stats"):
        f = lib.poolside_cuda_reset_peak_stats
        f.argtypes = [ctypes.c_int]
        f.restype = None
