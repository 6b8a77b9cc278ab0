"""Installing libpoolside_cuda as PyTorch's CUDA allocator.

PyTorch accepts one allocator swap per process, and only before its CUDA allocator has
been used, so enable() checks that first and explains the fix instead of letting
PyTorch's terse "Can't swap an already initialized allocator" through.
"""

import ctypes
import warnings

from .. import _library
from ..errors import PoolsideError

# (setter on CUDAPluggableAllocator(...).allocator(), exported symbol). Every optional
# hook PyTorch offers with a plain-C signature; older torch versions lack some setters.
HOOKS = (
    ("set_init_fn", "poolside_cuda_init"),
    ("set_reset_fn", "poolside_cuda_empty_cache"),
    ("set_memory_fraction_fn", "poolside_cuda_set_memory_fraction"),
    ("set_base_alloc_fn", "poolside_cuda_base_alloc"),
    ("set_record_stream_fn", "poolside_cuda_record_stream"),
)

_state = {"allocator": None, "path": None, "lib": None}


def enabled_allocator():
    """The CUDAPluggableAllocator installed by enable(), or None."""
    return _state["allocator"]


def enabled_library_path():
    """Path of the library enable() installed, or None."""
    return _state["path"]


def enable(path=None, patch_stats=True):
    """Make libpoolside_cuda PyTorch's CUDA allocator; return the CUDAPluggableAllocator.

    Must run before any CUDA work in the process. A second call returns the same object
    and changes nothing. ``path`` overrides library discovery. With ``patch_stats``
    (default), torch.cuda.memory_stats and friends, which PyTorch makes throw under a
    pluggable allocator, are redirected to poolside's statistics.
    """
    if _state["allocator"] is not None:
        return _state["allocator"]
    import torch

    if getattr(torch.version, "cuda", None) is None:
        raise PoolsideError("this torch build has no CUDA support; poolside's GPU pool needs a CUDA build of torch")
    if torch.cuda.is_initialized():
        raise PoolsideError(
            "CUDA is already initialized, so PyTorch's allocator can no longer be replaced. "
            "Call poolside.torch.enable() before any CUDA work (first thing after "
            "`import torch`), or start the program with `poolside run -- python ...`."
        )
    memory = getattr(torch.cuda, "memory", None)
    if not hasattr(memory, "CUDAPluggableAllocator") or not hasattr(memory, "change_current_allocator"):
        raise PoolsideError(f"torch {getattr(torch, '__version__', '?')} has no CUDAPluggableAllocator (needs torch >= 2.0)")
    lib_path = path or _library.find_library()
    lib = _library.load_library(lib_path)
    alloc = memory.CUDAPluggableAllocator(lib_path, "poolside_cuda_malloc", "poolside_cuda_free")
    raw = alloc.allocator()
    skipped = []
    for setter, symbol in HOOKS:
        if not hasattr(raw, setter):
            skipped.append(f"{setter} (this torch lacks it)")
        elif not hasattr(lib, symbol):
            skipped.append(f"{setter} ({lib_path} lacks {symbol})")
        else:
            getattr(raw, setter)(ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value)
    memory.change_current_allocator(alloc)
    _state.update(allocator=alloc, path=lib_path, lib=lib)
    if patch_stats:
        from ._patch import patch_torch_stats

        patch_torch_stats(torch)
    if skipped:
        warnings.warn("poolside: hooks not set: " + "; ".join(skipped), RuntimeWarning, stacklevel=2)
    return alloc
