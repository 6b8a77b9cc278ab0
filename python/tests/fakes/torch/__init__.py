"""A fake ``torch`` for poolside's tests: only the surface poolside.torch touches.

Real torch is large and needs a GPU for the parts poolside replaces; this package mimics
the Python-visible behaviour of torch.cuda's allocator API so tests can check what
poolside calls, in what order, with which arguments.
"""

from . import version  # noqa: F401
from . import cuda  # noqa: F401

# The hook must call enable() after this module has run; tests read this flag.
FULLY_IMPORTED = True
