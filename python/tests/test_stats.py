"""memory_stats and friends: DeviceSection fields land under torch's key names.

The fake library fills word i of the section with 1000 * (device + 1) + i (+ 100000 per
peak reset); expected values are computed from offsets parsed out of the Rust source.
"""

import pytest

from conftest import FAKE_TORCH, PYTHON_DIR, run_json, run_py
from rust_layout import LAYOUT_RS, device_section_fields

pytestmark = pytest.mark.skipif(not LAYOUT_RS.is_file(), reason="not run from a checkout: layout.rs absent")

# torch.cuda.memory_stats key -> Rust DeviceSection field (written independently of poolside's table).
TORCH_KEYS = {
    "allocated_bytes.all.current": "allocated_bytes.current",
    "allocated_bytes.all.peak": "allocated_bytes.peak",
    "reserved_bytes.all.current": "reserved_bytes.current",
    "reserved_bytes.all.peak": "reserved_bytes.peak",
    "active_bytes.all.current": "active_bytes.current",
    "active_bytes.all.peak": "active_bytes.peak",
    "requested_bytes.all.current": "requested_bytes.current",
    "requested_bytes.all.peak": "requested_bytes.peak",
    "allocation.all.current": "allocations.current",
    "allocation.all.peak": "allocations.peak",
    "segment.all.current": "segments.current",
    "segment.all.peak": "segments.peak",
    "inactive_split_bytes.all.current": "fragmented_bytes.current",
    "inactive_split_bytes.all.peak": "fragmented_bytes.peak",
    "num_alloc_retries": "alloc_retries",
    "num_ooms": "ooms",
    "num_device_alloc": "device_allocs",
    "num_device_free": "device_frees",
}


def expected(field, device, resets=0):
    offsets = {name: off for name, off, _ in device_section_fields()[0]}
    return 1000 * (device + 1) + offsets[field] // 8 + 100000 * resets


def stats(code, fake_lib, pythonpath=(PYTHON_DIR,), **env):
    prelude = "import json, poolside.torch as pt\n"
    return run_json(prelude + code, list(pythonpath), POOLSIDE_CUDA_LIB=fake_lib, **env)


def test_every_torch_key_maps_to_its_field(fake_lib):
    got = stats("print(json.dumps(pt.memory_stats(3)))", fake_lib)
    assert set(got) == set(TORCH_KEYS)
    for key, field in TORCH_KEYS.items():
        assert got[key] == expected(field, 3), key
    assert list(got) == sorted(got), "torch returns keys sorted"


def test_scalar_functions(fake_lib):
    got = stats(
        "print(json.dumps([pt.memory_allocated(1), pt.max_memory_allocated(1),"
        " pt.memory_reserved(1), pt.max_memory_reserved(1)]))",
        fake_lib,
    )
    fields = ["allocated_bytes.current", "allocated_bytes.peak", "reserved_bytes.current", "reserved_bytes.peak"]
    assert got == [expected(f, 1) for f in fields]


def test_reset_peak_reaches_the_library_for_that_device(fake_lib):
    got = stats("pt.reset_peak_memory_stats('cuda:2'); print(json.dumps([pt.memory_allocated(2), pt.memory_allocated(1)]))", fake_lib)
    assert got == [expected("allocated_bytes.current", 2, resets=1), expected("allocated_bytes.current", 1)]


@pytest.mark.parametrize("arg,device", [("None", 0), ("0", 0), ("4", 4), ("'cuda:5'", 5), ("'cuda'", 0)])
def test_device_argument_without_torch(fake_lib, arg, device):
    got = stats(f"import sys; r = pt.memory_allocated({arg}); print(json.dumps([r, 'torch' in sys.modules]))", fake_lib)
    assert got == [expected("allocated_bytes.current", device), False]


def test_none_means_torch_current_device_once_cuda_is_up(fake_lib):
    code = "import torch; torch.cuda.init(); print(json.dumps(pt.memory_allocated()))"
    got = stats(code, fake_lib, pythonpath=(PYTHON_DIR, FAKE_TORCH), FAKE_TORCH_CURRENT_DEVICE=6)
    assert got == expected("allocated_bytes.current", 6)


def test_zeros_before_torch_initializes_cuda(fake_lib):
    """Like torch: nothing is allocated before CUDA init, and the library may have no pool yet."""
    code = ("import torch; print(json.dumps([pt.memory_allocated(2), sum(pt.memory_stats(2).values()), "
            "pt.reset_peak_memory_stats(2), torch.cuda.is_initialized()]))")
    assert stats(code, fake_lib, pythonpath=(PYTHON_DIR, FAKE_TORCH)) == [0, 0, None, False]


def test_none_does_not_initialize_cuda(fake_lib):
    code = "import torch; pt.memory_stats(); print(json.dumps(torch.cuda.is_initialized()))"
    assert stats(code, fake_lib, pythonpath=(PYTHON_DIR, FAKE_TORCH), FAKE_TORCH_CURRENT_DEVICE=6) is False


@pytest.mark.parametrize("arg,needle", [("'cpu'", "expected a CUDA device"), ("-1", "ordinals are >= 0"),
                                        ("'cuda:x'", "invalid device"), ("1.5", "invalid device"),
                                        ("7 + 2", "failed with code 22")])
def test_bad_devices_raise_poolside_error(fake_lib, arg, needle):
    code = f"""
        try:
            pt.memory_stats({arg})
        except pt.PoolsideError as e:
            print(json.dumps([isinstance(e, RuntimeError), str(e)]))
    """
    import textwrap

    is_rt, msg = stats(textwrap.dedent(code), fake_lib)
    assert is_rt and needle in msg


def test_pool_stats_has_every_field(fake_lib):
    got = stats("print(json.dumps(pt.pool_stats(2)))", fake_lib)
    assert got["present"] == 1 and got["device"] == 2
    assert got["largest_free_block"] == expected("largest_free_block", 2)
    assert got["segments"] == {"current": expected("segments.current", 2), "peak": expected("segments.peak", 2)}
    assert "seq" not in got and "_reserved" not in got
    assert got["cached_bytes"] == expected("cached_bytes", 2)
    assert got["fragmented_bytes"]["current"] == expected("fragmented_bytes.current", 2)
    # The figures poolside stat --json derives, under its names and formulas.
    reserved = expected("reserved_bytes.current", 2)
    assert got["fragmentation"] == min(expected("fragmented_bytes.current", 2) / reserved, 1.0)
    assert got["peak_overhead"] == expected("reserved_bytes.peak", 2) / expected("allocated_bytes.peak", 2)


def test_summary_shows_current_and_peak(fake_lib):
    proc = run_py("import poolside.torch as pt; print(pt.memory_summary(0))", [PYTHON_DIR], POOLSIDE_CUDA_LIB=fake_lib)
    line = next(l for l in proc.stdout.splitlines() if "Allocations" in l)
    assert str(expected("allocations.current", 0)) in line and str(expected("allocations.peak", 0)) in line
    assert "device ID 0" in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if "Stream event failures" in l)
    assert f'{expected("event_record_failures", 0)} record / {expected("event_query_failures", 0)} query' in line
    line = next(l for l in proc.stdout.splitlines() if "Synchronize fallbacks" in l)
    assert str(expected("sync_fallbacks", 0)) in line


def test_missing_library_is_a_clear_error(tmp_path):
    proc = run_py("import poolside.torch as pt; pt.memory_stats(0)", [PYTHON_DIR], check=False,
                  POOLSIDE_CUDA_LIB=tmp_path / "nope.so")
    assert proc.returncode != 0
    assert "PoolsideError" in proc.stderr and "does not name a file" in proc.stderr
