"""poolside: the Python side of the poolside memory allocator.

The package is pure Python and imports nothing heavy: ``import poolside`` never imports
torch. The PyTorch integration lives in :mod:`poolside.torch`.
"""

from .errors import PoolsideError

__version__ = "0.1.0"
__all__ = ["PoolsideError", "__version__"]
