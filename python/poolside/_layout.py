"""ctypes mirror of ``DeviceSection`` from alloc-core/src/stats/layout.rs.

libpoolside_cuda copies one device's section into this struct for
``poolside_cuda_memory_stats``. Field order and widths must match the Rust ``repr(C)``
struct exactly; tests/test_layout.py checks this against the Rust source and, when the
library is built, against the library itself.
"""

import ctypes

u64 = ctypes.c_uint64


class Gauge(ctypes.Structure):
    """A current value with the highest value it reached (Rust ``Gauge``)."""

    _fields_ = [("current", u64), ("peak", u64)]


class DeviceSection(ctypes.Structure):
    """One GPU's pool statistics (Rust ``DeviceSection``)."""

    _fields_ = [
        ("seq", u64),
        ("present", ctypes.c_uint32),
        ("device", ctypes.c_int32),
        ("total_memory", u64),
        ("free_memory", u64),
        ("limit_bytes", u64),
        ("requested_bytes", Gauge),
        ("allocated_bytes", Gauge),
        ("reserved_bytes", Gauge),
        ("active_bytes", Gauge),
        ("allocations", Gauge),
        ("segments", Gauge),
        ("mapped_bytes", u64),
        ("cached_free_bytes", u64),
        ("largest_free_block", u64),
        ("hits", u64),
        ("misses", u64),
        ("alloc_retries", u64),
        ("ooms", u64),
        ("device_allocs", u64),
        ("device_frees", u64),
        ("event_record_failures", u64),
        ("event_query_failures", u64),
        ("sync_fallbacks", u64),
        ("private_pool_bytes", Gauge),
        ("cached_bytes", u64),
        ("fragmented_bytes", Gauge),
    ]


# 6 scalars (8+4+4+8+8+8 = 40) + 8 gauges (128) + 13 counters (104).
DEVICE_SECTION_SIZE = 272
