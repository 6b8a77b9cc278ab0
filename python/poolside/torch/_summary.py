"""A human-readable table of the pool, in the spirit of torch.cuda.memory_summary.

Only figures the library actually counts are shown (current and peak, no cumulative
totals), followed by poolside's own pool figures (mapped, cached free, largest block).
"""

from ._device import device_index
from ._stats import read_section

WIDTH = 75


def format_size(n):
    """Bytes as a short string with a binary unit: 512 B, 1.5 MiB, 2.0 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _row(cells, widths):
    return "|" + "|".join(f" {c:<{w}} " if i == 0 else f" {c:>{w}} " for i, (c, w) in enumerate(zip(cells, widths))) + "|"


def memory_summary(device=None, abbreviated=False):
    """Table of the device's pool; ``abbreviated`` drops poolside's extra figures."""
    index = device_index(device)
    s = read_section(index)
    widths = (31, 18, 18)
    rule = "|" + "-" * (WIDTH - 2) + "|"
    double = "|" + "=" * (WIDTH - 2) + "|"
    lines = [
        double,
        "|" + f"poolside CUDA memory summary, device ID {index}".center(WIDTH - 2) + "|",
        rule,
        "|" + f"CUDA OOMs: {s.ooms}    alloc retries: {s.alloc_retries}".center(WIDTH - 2) + "|",
        double,
        _row(("Metric", "Cur Usage", "Peak Usage"), widths),
        rule,
    ]
    for label, gauge, is_bytes in (
        ("Allocated memory", s.allocated_bytes, True),
        ("Active memory", s.active_bytes, True),
        ("Requested memory", s.requested_bytes, True),
        ("GPU reserved memory", s.reserved_bytes, True),
        ("Non-releasable memory", s.fragmented_bytes, True),
        ("Allocations", s.allocations, False),
        ("GPU reserved segments", s.segments, False),
    ):
        fmt = format_size if is_bytes else str
        lines.append(_row((label, fmt(gauge.current), fmt(gauge.peak)), widths))
    if not abbreviated:
        lines.append(rule)
        for label, value in (
            ("Mapped device memory", format_size(s.mapped_bytes)),
            ("Free inside the pool", format_size(s.cached_free_bytes)),
            ("Cached (releasable)", format_size(s.cached_bytes)),
            ("Largest free block", format_size(s.largest_free_block)),
            ("Pool hits / misses", f"{s.hits} / {s.misses}"),
            ("Device allocs / frees", f"{s.device_allocs} / {s.device_frees}"),
            ("Stream event failures", f"{s.event_record_failures} record / {s.event_query_failures} query"),
            ("Synchronize fallbacks", str(s.sync_fallbacks)),
            ("Memory limit", format_size(s.limit_bytes) if s.limit_bytes else "none"),
        ):
            lines.append(_row((label, value, ""), widths))
    lines.append(double)
    return "\n".join(lines) + "\n"
