"""Reads ``struct DeviceSection`` out of alloc-core/src/stats/layout.rs.

The tests derive field offsets from the Rust source itself, not from poolside's ctypes
mirror, so a mirror that drifts from the Rust struct fails them.
"""

import re

from conftest import REPO

LAYOUT_RS = REPO / "alloc-core" / "src" / "stats" / "layout.rs"
SIZES = {"u64": 8, "i64": 8, "u32": 4, "i32": 4, "Gauge": 16}


def device_section_fields():
    """[(name, offset, size)] of DeviceSection's fields, Gauge fields expanded as name.current/name.peak."""
    text = LAYOUT_RS.read_text()
    body = re.search(r"pub struct DeviceSection \{(.*?)\n\}", text, re.S).group(1)
    fields, offset = [], 0
    for name, ty in re.findall(r"pub (\w+): ([^,]+),", body):
        ty = ty.strip()
        arr = re.fullmatch(r"\[(\w+); (\d+)\]", ty)
        size = SIZES[arr.group(1)] * int(arr.group(2)) if arr else SIZES[ty]
        align = SIZES[arr.group(1)] if arr else min(SIZES[ty], 8)
        offset = (offset + align - 1) // align * align
        if ty == "Gauge":
            fields += [(f"{name}.current", offset, 8), (f"{name}.peak", offset + 8, 8)]
        else:
            fields.append((name, offset, size))
        offset += size
    return fields, (offset + 7) // 8 * 8
