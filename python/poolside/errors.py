"""The one exception type poolside raises for its own failures.

A subclass of RuntimeError so code that already catches torch's RuntimeErrors keeps
working, while callers who care can catch poolside's errors alone.
"""


class PoolsideError(RuntimeError):
    """A poolside-specific failure: library not found, enabled too late, bad argument."""
