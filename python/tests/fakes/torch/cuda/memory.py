"""Fake torch.cuda.memory: CUDAPluggableAllocator that records hook setters.

Like real torch, CUDAPluggableAllocator loads the library with ctypes and looks up the
alloc/free symbols (so a wrong name fails the same way). FAKE_TORCH_MISSING_HOOKS (comma
separated setter names) imitates an older torch without those setters. The statistics
functions raise like real torch does under a pluggable allocator.
"""

import ctypes
import os
import sys

SETTERS = (
    "set_init_fn",
    "set_reset_fn",
    "set_memory_fraction_fn",
    "set_base_alloc_fn",
    "set_record_stream_fn",
    "set_begin_allocate_to_pool",
    "set_end_allocate_to_pool_fn",
    "set_release_pool",
)
current = None
swaps = 0
# Whether torch/__init__.py had finished when the allocator was swapped.
swapped_after_torch_import = None


class _RawAllocator:
    def __init__(self):
        self.hooks = {}


def _make_setter(name):
    def setter(self, addr):
        if not isinstance(addr, int):
            raise TypeError(f"{name} expects an int address, got {addr!r}")
        self.hooks[name] = addr

    return setter


_missing = {s for s in os.environ.get("FAKE_TORCH_MISSING_HOOKS", "").split(",") if s}
for _name in SETTERS:
    if _name not in _missing:
        setattr(_RawAllocator, _name, _make_setter(_name))


class CUDAPluggableAllocator:
    def __init__(self, path_to_so_file, alloc_fn_name, free_fn_name):
        lib = ctypes.CDLL(path_to_so_file)
        self.path = path_to_so_file
        self.alloc_fn = ctypes.cast(getattr(lib, alloc_fn_name), ctypes.c_void_p).value
        self.free_fn = ctypes.cast(getattr(lib, free_fn_name), ctypes.c_void_p).value
        self._allocator = _RawAllocator()

    def allocator(self):
        return self._allocator


def change_current_allocator(allocator):
    global current, swaps, swapped_after_torch_import
    from . import is_initialized

    if is_initialized() or current is not None:
        raise RuntimeError("Can't swap an already initialized allocator")
    current = allocator
    swaps += 1
    swapped_after_torch_import = getattr(sys.modules.get("torch"), "FULLY_IMPORTED", False)


def _unsupported(*args, **kwargs):
    raise RuntimeError("CUDAPluggableAllocator does not yet support getDeviceStats")


memory_stats = memory_allocated = max_memory_allocated = _unsupported
memory_reserved = max_memory_reserved = reset_peak_memory_stats = memory_summary = _unsupported
