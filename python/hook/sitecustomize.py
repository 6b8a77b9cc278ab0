"""poolside's zero-code PyTorch hook, loaded by Python at startup under `poolside run`.

`poolside run -- python train.py` puts this directory first on PYTHONPATH, so Python's
`site` imports this file as `sitecustomize`. It must cost nothing for programs that never
touch torch, so it only adds a finder to sys.meta_path that answers for the single name
"torch". When torch is imported, the finder wraps torch's loader; right after torch's
`__init__` has run (and before any CUDA work can happen) it calls
poolside.torch.enable(). Any failure there prints one line to stderr and the program
continues on PyTorch's native allocator.

Because this file shadows any other `sitecustomize` on sys.path (Debian ships one, so do
many virtualenv tools), it finds the next one after its own directory and runs it under
the name `sitecustomize`.

POOLSIDE_TORCH=0 turns the torch hook off (the chained sitecustomize still runs).
"""

import os
import sys

_HOOK_DIR = os.path.dirname(os.path.realpath(__file__))


def _wanted():
    return os.environ.get("POOLSIDE_TORCH", "1").strip().lower() not in ("0", "false", "no", "off")


def _enable_for_torch():
    """Called once torch has finished importing; never raises."""
    try:
        try:
            import poolside.torch as pt
        except ImportError:
            # Run from a checkout without `pip install`: the package sits beside this dir.
            sys.path.append(os.path.dirname(_HOOK_DIR))
            import poolside.torch as pt
        pt.enable()
    except Exception as exc:  # noqa: BLE001 - the user's program must keep running
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(f"poolside: not enabled for PyTorch ({msg}); using PyTorch's native allocator\n")


class _LoaderWrapper:
    """Delegates to torch's real loader, then enables poolside after exec_module."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _enable_for_torch()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class PoolsideTorchFinder:
    """sys.meta_path finder that only answers for "torch", and only once."""

    _poolside_torch_hook = True

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torch":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _LoaderWrapper(spec.loader)
                return spec
        return None

    def invalidate_caches(self):
        pass


def _install():
    if not _wanted() or "torch" in sys.modules:
        return
    if any(getattr(f, "_poolside_torch_hook", False) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, PoolsideTorchFinder())


def _machinery():
    """PathFinder and module_from_spec without importing importlib when CPython already
    has them loaded (importing importlib.util at startup pulls in contextlib, warnings)."""
    bootstrap = sys.modules.get("_frozen_importlib")
    external = sys.modules.get("_frozen_importlib_external")
    if bootstrap is not None and external is not None:
        return external.PathFinder, bootstrap.module_from_spec
    import importlib.machinery
    import importlib.util

    return importlib.machinery.PathFinder, importlib.util.module_from_spec


def _chain():
    """Run the next `sitecustomize` on sys.path after this file's directory, if any."""
    path_finder, module_from_spec = _machinery()
    real = [os.path.realpath(p or os.getcwd()) for p in sys.path]
    start = real.index(_HOOK_DIR) + 1 if _HOOK_DIR in real else 0
    rest = [p for p, r in zip(sys.path[start:], real[start:]) if r != _HOOK_DIR]
    spec = path_finder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return None
    if spec.origin and os.path.realpath(spec.origin) == os.path.realpath(__file__):
        return None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_install()
chained = _chain()
