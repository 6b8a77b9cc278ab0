"""Redirecting torch.cuda's statistics functions to poolside's.

With a pluggable allocator installed these functions throw in PyTorch, which breaks
unchanged training scripts that log max_memory_allocated() and the like; under
`poolside run` there is no code change, so enable() points them at poolside's versions.
Both torch.cuda and torch.cuda.memory are patched because torch.cuda re-exports the
functions and torch.cuda.memory's own helpers look them up in their module.
"""

from ._stats import (
    max_memory_allocated,
    max_memory_reserved,
    memory_allocated,
    memory_reserved,
    memory_stats,
    reset_peak_memory_stats,
)
from ._snapshot import dump_snapshot, memory_snapshot, record_memory_history, segments_snapshot
from ._summary import memory_summary

REPLACEMENTS = {
    "memory_stats": memory_stats,
    "memory_allocated": memory_allocated,
    "max_memory_allocated": max_memory_allocated,
    "memory_reserved": memory_reserved,
    "max_memory_reserved": max_memory_reserved,
    "reset_peak_memory_stats": reset_peak_memory_stats,
    "reset_max_memory_allocated": reset_peak_memory_stats,
    "memory_summary": memory_summary,
    # The memory snapshot and history (_snapshot.py); _dump_snapshot and the visualizer
    # read _snapshot through the module, but _dump_snapshot is replaced too in case a
    # caller holds torch's own.
    "_snapshot": memory_snapshot,
    "_dump_snapshot": dump_snapshot,
    "_record_memory_history": record_memory_history,
    "memory_snapshot": segments_snapshot,
}


def patch_torch_stats(torch):
    """Replace the functions in REPLACEMENTS that exist in torch.cuda / torch.cuda.memory."""
    patched = []
    for module in (torch.cuda, getattr(torch.cuda, "memory", None)):
        if module is None:
            continue
        for name, fn in REPLACEMENTS.items():
            if hasattr(module, name):
                setattr(module, name, fn)
                patched.append(f"{module.__name__}.{name}")
    return patched
