"""poolside's GPU pool for PyTorch, and the memory statistics PyTorch withholds from it.

    import torch, poolside.torch
    poolside.torch.enable()          # before any CUDA work
    ...
    poolside.torch.max_memory_allocated()

Importing this module does not import torch; enable() does.
"""

from ..errors import PoolsideError
from ._enable import HOOKS, enable, enabled_allocator, enabled_library_path
from ._oom import is_oom, translate_oom
from ._snapshot import dump_snapshot, memory_snapshot, record_memory_history
from ._stats import (
    max_memory_allocated,
    max_memory_reserved,
    memory_allocated,
    memory_reserved,
    memory_stats,
    pool_stats,
    reset_peak_memory_stats,
)
from ._summary import memory_summary

__all__ = [
    "HOOKS",
    "PoolsideError",
    "dump_snapshot",
    "enable",
    "enabled_allocator",
    "enabled_library_path",
    "is_oom",
    "max_memory_allocated",
    "max_memory_reserved",
    "memory_allocated",
    "memory_reserved",
    "memory_snapshot",
    "memory_stats",
    "memory_summary",
    "pool_stats",
    "record_memory_history",
    "reset_peak_memory_stats",
    "translate_oom",
]
