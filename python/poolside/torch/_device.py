"""Turning the ``device`` argument of the statistics functions into a CUDA ordinal.

Accepts what torch.cuda's functions accept: None, an int, "cuda", "cuda:N", or a
torch.device. None means the current device, asked of torch only when torch is already
imported and CUDA initialized, so a statistics call never initializes CUDA by itself.
"""

import sys

from ..errors import PoolsideError


def current_device():
    """torch.cuda.current_device() when CUDA is up in this process, else 0."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_initialized():
        return int(cuda.current_device())
    return 0


def device_index(device):
    """CUDA ordinal for ``device``; PoolsideError for anything that is not a CUDA device."""
    if device is None:
        return current_device()
    if isinstance(device, bool):
        raise PoolsideError(f"invalid device {device!r}")
    if isinstance(device, int):
        index = device
    elif isinstance(device, str):
        kind, _, rest = device.partition(":")
        if kind != "cuda":
            raise PoolsideError(f"expected a CUDA device, got {device!r}")
        if not rest:
            return current_device()
        if not rest.isdigit():
            raise PoolsideError(f"invalid device {device!r}")
        index = int(rest)
    elif hasattr(device, "type") and hasattr(device, "index"):
        if device.type != "cuda":
            raise PoolsideError(f"expected a CUDA device, got {device!r}")
        if device.index is None:
            return current_device()
        index = int(device.index)
    else:
        raise PoolsideError(f"invalid device {device!r}: use None, an int, 'cuda:N' or a torch.device")
    if index < 0:
        raise PoolsideError(f"invalid device {device!r}: ordinals are >= 0")
    return index
