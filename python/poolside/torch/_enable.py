"""Installing libpoolside_cuda as PyTorch's CUDA allocator.

PyTorch accepts one allocator swap per process, and only before its CUDA allocator has
been used, so enable() checks that first and explains the fix instead of letting
PyTorch's terse "Can't swap an already initialized allocator" through.
"""

import ctypes
import warnings

from .. import _library
from ..errors import PoolsideError

# (setter on CUDAPluggableAllocator(...).allocator(), exported symbol): every optional
# hook PyTorch offers. Older torch versions lack some setters.
HOOKS = (
    ("set_init_fn", "poolside_cuda_init"),
    ("set_reset_fn", "poolside_cuda_empty_cache"),
    ("set_memory_fraction_fn", "poolside_cuda_set_memory_fraction"),
    ("set_base_alloc_fn", "poolside_cuda_base_alloc"),
    ("set_record_stream_fn", "poolside_cuda_record_stream"),
    # CUDA graphs' private pools (torch >= 2.3). PyTorch calls these with C++ types
    # (std::pair, std::function), so they are set only when the library confirms that
    # this torch declares them with the types it was built for, and only all three.
    ("set_begin_allocate_to_pool", "poolside_cuda_begin_allocate_to_pool"),
    ("set_end_allocate_to_pool_fn", "poolside_cuda_end_allocate_to_pool"),
    ("set_release_pool", "poolside_cuda_release_pool"),
)
GRAPH_SETTERS = ("set_begin_allocate_to_pool", "set_end_allocate_to_pool_fn", "set_release_pool")
GRAPH_UNSAFE = (
    "CUDA graphs (torch.cuda.graph, make_graphed_callables, torch.compile "
    'mode="reduce-overhead") would take memory from the general pool, where ordinary '
    "tensors can reuse it and replays overwrite them: do not capture graphs in this process"
)

_state = {"allocator": None, "path": None, "lib": None}


def _graph_abi_ok(lib, setter):
    """Whether the library says this torch's `setter` takes its graph entry's C++ types."""
    check = getattr(lib, "poolside_cuda_graph_hook_abi_ok", None)
    if check is None:
        return False
    check.argtypes = (ctypes.c_char_p,)
    check.restype = ctypes.c_int
    return check(setter.encode()) == 1


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
    settable = {}
    for setter, symbol in HOOKS:
        if not hasattr(raw, setter):
            skipped.append(f"{setter} (this torch lacks it)")
        elif not hasattr(lib, symbol):
            skipped.append(f"{setter} ({lib_path} lacks {symbol})")
        elif setter in GRAPH_SETTERS and not _graph_abi_ok(lib, setter):
            skipped.append(f"{setter} (this torch's C++ signature for it is not the one {lib_path} was built for)")
        else:
            settable[setter] = ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value
    if not all(s in settable for s in GRAPH_SETTERS):
        # One graph hook without the others would route a capture and never end it.
        left = [s for s in GRAPH_SETTERS if s in settable]
        for s in left:
            del settable[s]
        if left:
            skipped.append(", ".join(left) + " (the other graph hooks cannot be set)")
        skipped.append(GRAPH_UNSAFE)
    for setter, address in settable.items():
        getattr(raw, setter)(address)
    memory.change_current_allocator(alloc)
    _state.update(allocator=alloc, path=lib_path, lib=lib)
    if patch_stats:
        from ._patch import patch_torch_stats

        patch_torch_stats(torch)
    if skipped:
        warnings.warn("poolside: hooks not set: " + "; ".join(skipped), RuntimeWarning, stacklevel=2)
    return alloc
