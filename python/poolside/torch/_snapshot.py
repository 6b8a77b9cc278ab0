"""PyTorch's memory snapshot and allocation history, from poolside's own pool.

With any pluggable allocator, ``torch.cuda.memory._snapshot()`` raises
"CUDAPluggableAllocator does not yet support snapshot", which takes down
``_dump_snapshot``, ``_record_memory_history`` and the memory visualizer
(``python -m torch.cuda._memory_viz``, pytorch.org/memory_viz). These functions give the
same dict, built from poolside's segments and blocks (``poolside_cuda_snapshot``) and from
the trace entries recorded since ``record_memory_history()`` turned recording on
(``poolside_cuda_record_history``); enable() installs them in torch.cuda.memory.

The dict is torch 2.11's (torch/csrc/cuda/Module.cpp): ``segments`` (device, address,
total_size, allocated_size, active_size, requested_size, stream, segment_type,
segment_pool_id, is_expandable, frames, blocks: address, size, requested_size, state,
frames), ``device_traces`` (one list per device; action, addr or device_free for
"oom", size, stream, time_us, frames) and ``allocator_settings``.

Stack frames: every ``frames`` is an empty list (one shared list, as PyTorch shares its
empty one). PyTorch captures stacks inside its own allocator; through the pluggable
allocator, poolside is called from C++ without Python's involvement, and walking the
Python stack there would cost each allocation far more than the allocation itself.
``context`` and ``stacks`` are therefore checked and accepted, and change nothing.
"""

import ctypes
import json
import os
import pickle
import sys

from .. import _library
from ..errors import PoolsideError
from ._enable import enabled_library_path

# Bit n of the library's skip mask is ACTIONS[n] (pool/history.rs, Action).
ACTIONS = (
    "alloc",
    "free_requested",
    "free_completed",
    "segment_alloc",
    "segment_free",
    "segment_map",
    "segment_unmap",
    "oom",
)
# Actions PyTorch accepts in skip_actions that poolside never records.
NEVER_RECORDED = ("snapshot",)
SIZE_MAX = (1 << 64) - 1


def _lib():
    return _library.load_library(enabled_library_path())


def _function(name, argtypes, restype):
    lib = _lib()
    fn = getattr(lib, name, None)
    if fn is None:
        raise PoolsideError(f"this libpoolside_cuda has no {name}; rebuild it (cargo build --release -p poolside-cuda)")
    fn.argtypes = argtypes
    fn.restype = restype
    return fn


def _check_choice(value, allowed, what):
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise PoolsideError(f"invalid {what} {value!r}: expected one of {shown}")


def record_memory_history(enabled="all", *args, **kwargs):
    """Like torch.cuda.memory._record_memory_history, for poolside's pool.

    ``enabled``: "all" records every alloc, free and segment event, keeping the newest
    ``max_entries`` per device; "state" keeps one entry (PyTorch keeps stacks of live
    blocks then; poolside records no stacks); None stops recording and forgets the
    entries. ``clear_history`` forgets earlier entries when enabling; ``skip_actions``
    names actions not to record. The legacy form (``enabled`` a bool, with
    ``trace_alloc_max_entries``) is accepted too. ``context``, ``stacks``, ``device``,
    ``compile_context`` and ``global_record_annotations`` are accepted for compatibility.
    """
    if isinstance(enabled, bool):
        return _record_legacy(enabled, *args, **kwargs)
    return _record(enabled, *args, **kwargs)


def _record(
    enabled="all",
    context="all",
    stacks="all",
    max_entries=sys.maxsize,
    device=None,
    clear_history=False,
    compile_context=False,
    global_record_annotations=False,
    skip_actions=None,
):
    _check_choice(enabled, (None, "state", "all"), "enabled")
    _check_choice(context, (None, "state", "alloc", "all"), "context")
    _check_choice(stacks, ("python", "all"), "stacks")
    if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 0:
        raise PoolsideError(f"invalid max_entries {max_entries!r}: expected an integer >= 0")
    mask = 0
    for action in skip_actions or ():
        if action in ACTIONS:
            mask |= 1 << ACTIONS.index(action)
        elif action not in NEVER_RECORDED:
            _check_choice(action, ACTIONS + NEVER_RECORDED, "skip_actions entry")
    # As PyTorch does: "state" keeps a single entry.
    entries = min(max_entries, SIZE_MAX) if enabled == "all" else 1
    fn = _function(
        "poolside_cuda_record_history",
        (ctypes.c_int, ctypes.c_size_t, ctypes.c_int, ctypes.c_uint32),
        ctypes.c_int,
    )
    if fn(int(enabled is not None), entries, int(bool(clear_history)), mask) != 0:
        raise PoolsideError("poolside_cuda_record_history failed: no working CUDA driver")


def _record_legacy(
    enabled,
    record_context=True,
    trace_alloc_max_entries=1,
    trace_alloc_record_context=False,
    device=None,
    record_context_cpp=False,
    clear_history=False,
    compile_context=False,
    global_record_annotations=False,
):
    _record(
        "all" if enabled else None,
        max_entries=trace_alloc_max_entries,
        clear_history=clear_history,
    )


def _raw_snapshot():
    fn = _function("poolside_cuda_snapshot", (ctypes.POINTER(ctypes.c_void_p),), ctypes.c_int)
    free = _function("poolside_cuda_snapshot_free", (ctypes.c_void_p,), None)
    out = ctypes.c_void_p()
    rc = fn(ctypes.byref(out))
    try:
        text = ctypes.string_at(out.value).decode() if out.value else ""
    finally:
        free(out)
    if rc != 0:
        raise PoolsideError(text or f"poolside_cuda_snapshot failed with code {rc}")
    return json.loads(text)


def memory_snapshot(device=None, augment_with_fx_traces=False):
    """Like torch.cuda.memory._snapshot(): every device's segments, blocks and recorded
    trace entries in poolside's pool. ``device`` is ignored, as in PyTorch (the snapshot
    covers every device); so is ``augment_with_fx_traces`` (there are no frames)."""
    data = _raw_snapshot()
    frames = []  # one shared empty list, as PyTorch's snapshot shares its own
    for seg in data["segments"]:
        seg["segment_pool_id"] = tuple(seg["segment_pool_id"])
        seg["frames"] = frames
        for block in seg["blocks"]:
            block["frames"] = frames
    for trace in data["device_traces"]:
        for entry in trace:
            entry["frames"] = frames
    data["allocator_settings"]["PYTORCH_CUDA_ALLOC_CONF"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    return data


def dump_snapshot(filename="dump_snapshot.pickle", augment_with_fx_traces=False):
    """Like torch.cuda.memory._dump_snapshot: pickle memory_snapshot() to ``filename``,
    for ``python -m torch.cuda._memory_viz`` and pytorch.org/memory_viz."""
    snapshot = memory_snapshot(augment_with_fx_traces=augment_with_fx_traces)
    with open(filename, "wb") as f:
        pickle.dump(snapshot, f)


def segments_snapshot(mempool_id=None, include_traces=True):
    """Like torch.cuda.memory_snapshot(): the segments of memory_snapshot(). A private
    pool's id keeps that pool's segments only; ``include_traces`` changes nothing here."""
    segments = memory_snapshot()["segments"]
    if mempool_id is not None:
        segments = [s for s in segments if s["segment_pool_id"] == tuple(mempool_id)]
    return segments
