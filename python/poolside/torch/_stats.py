"""torch.cuda-compatible memory statistics, read from libpoolside_cuda.

PyTorch throws "not supported" for memory_stats and friends once a pluggable allocator
is installed (PyTorch issues #133281, #98481). These functions return the same key names
from the pool's own counters (``poolside_cuda_memory_stats``), so existing logging code
keeps working.

Only the "all" pool is reported (poolside has no small/large split), and only keys the
library counts: the cumulative ``.allocated``/``.freed`` entries, "active.*" (a count of
blocks), "inactive_split.*" and "oversize_*" have no counterpart in DeviceSection and are
left out rather than invented. "inactive_split_bytes" is poolside's fragmented bytes:
free memory that shares a page or segment with active blocks, so that releasing the
cache cannot return it (PyTorch counts the free blocks of split segments, the same idea
at the granularity of its blocks).

pool_stats() gives every field of the section, plus the figures ``poolside stat --json``
derives, under the same names: "fragmentation" (fragmented / reserved) and
"peak_overhead" (peak reserved / peak allocated), None when undefined.
"""

import collections
import ctypes
import sys

from .. import _library
from .._layout import DeviceSection
from ..errors import PoolsideError
from ._device import device_index
from ._enable import enabled_library_path

# torch key stem -> DeviceSection gauge; each yields "<stem>.all.current" and ".peak".
GAUGES = (
    ("allocated_bytes", "allocated_bytes"),
    ("reserved_bytes", "reserved_bytes"),
    ("active_bytes", "active_bytes"),
    ("requested_bytes", "requested_bytes"),
    ("allocation", "allocations"),
    ("segment", "segments"),
    ("inactive_split_bytes", "fragmented_bytes"),
)
# torch scalar key -> DeviceSection counter.
SCALARS = (
    ("num_alloc_retries", "alloc_retries"),
    ("num_ooms", "ooms"),
    ("num_device_alloc", "device_allocs"),
    ("num_device_free", "device_frees"),
)


def _lib():
    return _library.load_library(enabled_library_path())


def _torch_cuda_idle():
    """True when torch is imported but has not initialized CUDA: nothing can be allocated
    yet and the library may have no pool (torch itself reports empty stats then)."""
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    return cuda is not None and hasattr(cuda, "is_initialized") and not cuda.is_initialized()


def read_section(device=None):
    """Copy of the DeviceSection for ``device``: zeros while torch's CUDA is not up yet,
    PoolsideError when the library refuses (code 1: bad device or no driver)."""
    index = device_index(device)
    if _torch_cuda_idle():
        return DeviceSection(device=index)
    lib = _lib()
    if not hasattr(lib, "poolside_cuda_memory_stats"):
        raise PoolsideError("this libpoolside_cuda has no poolside_cuda_memory_stats")
    section = DeviceSection()
    rc = lib.poolside_cuda_memory_stats(index, ctypes.byref(section))
    if rc != 0:
        raise PoolsideError(f"poolside_cuda_memory_stats(device={index}) failed with code {rc}")
    return section


def stats_from_section(section):
    """torch.cuda.memory_stats-style OrderedDict (sorted keys, like torch's) of a section."""
    out = {}
    for stem, field in GAUGES:
        gauge = getattr(section, field)
        out[f"{stem}.all.current"] = gauge.current
        out[f"{stem}.all.peak"] = gauge.peak
    for key, field in SCALARS:
        out[key] = getattr(section, field)
    return collections.OrderedDict(sorted(out.items()))


def memory_stats(device=None):
    """Like torch.cuda.memory_stats, from poolside's pool."""
    return stats_from_section(read_section(device))


def pool_stats(device=None):
    """Every field of the device's DeviceSection as a dict (gauges as {current, peak})."""
    section = read_section(device)
    out = {}
    for name, _ in DeviceSection._fields_:
        if name in ("seq", "_reserved"):
            continue
        value = getattr(section, name)
        out[name] = {"current": value.current, "peak": value.peak} if hasattr(value, "peak") else value
    reserved, allocated = section.reserved_bytes, section.allocated_bytes
    out["fragmentation"] = (
        min(section.fragmented_bytes.current / reserved.current, 1.0) if reserved.current else None
    )
    out["peak_overhead"] = reserved.peak / allocated.peak if allocated.peak else None
    return out


def memory_allocated(device=None):
    """Bytes in live tensors now (torch.cuda.memory_allocated)."""
    return read_section(device).allocated_bytes.current


def max_memory_allocated(device=None):
    """Peak of memory_allocated since start or the last reset."""
    return read_section(device).allocated_bytes.peak


def memory_reserved(device=None):
    """Bytes of device memory the pool holds now (torch.cuda.memory_reserved)."""
    return read_section(device).reserved_bytes.current


def max_memory_reserved(device=None):
    """Peak of memory_reserved since start or the last reset."""
    return read_section(device).reserved_bytes.peak


def reset_peak_memory_stats(device=None):
    """Set every peak to its current value (torch.cuda.reset_peak_memory_stats)."""
    index = device_index(device)
    if _torch_cuda_idle():
        return
    lib = _lib()
    if not hasattr(lib, "poolside_cuda_reset_peak_stats"):
        raise PoolsideError("this libpoolside_cuda has no poolside_cuda_reset_peak_stats")
    lib.poolside_cuda_reset_peak_stats(index)
