"""Fake torch.cuda: lazy-init state, current device, OutOfMemoryError, re-exports."""

import os

from . import memory  # noqa: F401
from .memory import (  # noqa: F401
    change_current_allocator,
    max_memory_allocated,
    max_memory_reserved,
    memory_allocated,
    memory_reserved,
    memory_stats,
    memory_summary,
    reset_peak_memory_stats,
)

_initialized = False


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError (a RuntimeError subclass in torch)."""


def is_available():
    """The fake has no GPU."""
    return False


def is_initialized():
    return _initialized


def init():
    global _initialized
    _initialized = True


def current_device():
    init()
    return int(os.environ.get("FAKE_TORCH_CURRENT_DEVICE", "0"))
