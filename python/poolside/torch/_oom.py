"""Recognising poolside's out-of-memory errors, and the fallback translation.

libpoolside_cuda throws PyTorch's own c10::OutOfMemoryError when the process has a
PyTorch whose C++ library it recognises, so PyTorch raises torch.cuda.OutOfMemoryError by
itself. Otherwise it throws std::runtime_error, which PyTorch surfaces as a plain
RuntimeError (PyTorch issue #133280) that ``except torch.cuda.OutOfMemoryError`` misses.
Both messages start with "CUDA out of memory. Tried to allocate", which is what is_oom()
recognises. translate_oom() re-raises the RuntimeError as torch.cuda.OutOfMemoryError
(chained to the original) around the code it wraps.
"""

import contextlib
import sys

OOM_MARKER = "CUDA out of memory."


def _torch_oom_type():
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    return getattr(cuda, "OutOfMemoryError", None)


def is_oom(exc):
    """True for torch.cuda.OutOfMemoryError and for poolside's OOM RuntimeError."""
    oom_type = _torch_oom_type()
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and OOM_MARKER in str(exc)


class translate_oom(contextlib.ContextDecorator):
    """Context manager / decorator: OOM RuntimeErrors inside become OutOfMemoryError.

    Usage::

        with poolside.torch.translate_oom():
            loss = model(batch).sum()   # an OOM here raises torch.cuda.OutOfMemoryError
    """

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not is_oom(exc):
            return False
        oom_type = _torch_oom_type()
        if oom_type is None or isinstance(exc, oom_type):
            return False
        raise oom_type(str(exc)) from exc
