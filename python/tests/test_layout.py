"""The ctypes DeviceSection must match the Rust struct byte for byte."""

import ctypes
import re
import sys

import pytest

from conftest import PYTHON_DIR, REPO, real_library, run_json
from rust_layout import LAYOUT_RS, device_section_fields

sys.path.insert(0, str(PYTHON_DIR))
from poolside._layout import DEVICE_SECTION_SIZE, DeviceSection, Gauge  # noqa: E402


def ctypes_fields():
    out = []
    for name, ty in DeviceSection._fields_:
        off = getattr(DeviceSection, name).offset
        if ty is Gauge:
            out += [(f"{name}.current", off, 8), (f"{name}.peak", off + 8, 8)]
        else:
            out.append((name, off, ctypes.sizeof(ty)))
    return out


def test_size_matches_hand_computed_rust_size():
    assert DEVICE_SECTION_SIZE == 272
    assert ctypes.sizeof(DeviceSection) == DEVICE_SECTION_SIZE


@pytest.mark.skipif(not LAYOUT_RS.is_file(), reason="not run from a checkout: layout.rs absent")
def test_fields_match_rust_source():
    rust, rust_size = device_section_fields()
    assert ctypes_fields() == rust
    assert rust_size == ctypes.sizeof(DeviceSection)


def test_signedness_of_header_fields():
    s = DeviceSection(present=1, device=-1)
    assert s.device == -1 and s.present == 1


INCLUDE = REPO / "include"
HEADER = INCLUDE / "poolside_cuda.h"


def c_struct_fields(type_name, texts):
    """Field names of C struct ``type_name`` (``struct X {...}`` or ``typedef struct {...} X``)."""
    for text in texts:
        text = re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)
        m = (re.search(r"struct\s+%s\s*\{([^{}]*)\}" % type_name, text)
             or re.search(r"typedef\s+struct\s+\w*\s*\{([^{}]*)\}\s*%s\s*;" % type_name, text))
        if m:
            names = []
            for decl in m.group(1).split(";"):
                pieces = re.sub(r"\[[^\]]*\]", "", decl).strip().split(",")
                if pieces != [""]:
                    names += [re.findall(r"\w+", piece)[-1] for piece in pieces]
            return names
    return None


@pytest.mark.skipif(not HEADER.is_file(), reason="include/poolside_cuda.h not written yet")
def test_c_header_agrees():
    """The struct poolside_cuda.h gives poolside_cuda_memory_stats has our fields, in order."""
    texts = [p.read_text() for p in sorted(INCLUDE.glob("*.h"))]
    decl = re.search(r"\bpoolside_cuda_memory_stats\s*\(\s*(?:const\s+)?int\w*\s+\w+\s*,\s*(?:struct\s+)?(\w+)\s*\*",
                     HEADER.read_text())
    assert decl, "poolside_cuda.h does not declare int poolside_cuda_memory_stats(int, T *)"
    type_name = decl.group(1)
    if type_name == "void":
        pytest.skip("poolside_cuda_memory_stats takes void*: no struct to compare")
    names = c_struct_fields(type_name, texts)
    assert names is not None, f"struct {type_name} not defined in include/*.h"
    ours = [n for n, _ in DeviceSection._fields_]
    assert names == ours, f"header fields {names} != ctypes fields {ours}"


def test_real_library_writes_exactly_one_section(tmp_path):
    """With the real library: it writes within 272 bytes and fills the header fields."""
    path, reason = real_library()
    if path is None:
        pytest.skip(reason)
    code = """
        import ctypes, json
        lib = ctypes.CDLL(%r)
        lib.poolside_cuda_init.argtypes = [ctypes.c_int]
        lib.poolside_cuda_init(1)
        lib.poolside_cuda_malloc.restype = ctypes.c_void_p
        lib.poolside_cuda_malloc.argtypes = [ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
        p = lib.poolside_cuda_malloc(1 << 20, 0, None)
        buf = (ctypes.c_ubyte * 400)(*([0xAB] * 400))
        rc = lib.poolside_cuda_memory_stats(0, buf)
        raw = bytes(buf)
        print(json.dumps({"rc": rc, "tail": raw[272:].hex(), "present": int.from_bytes(raw[8:12], "little"),
                          "device": int.from_bytes(raw[12:16], "little", signed=True), "ptr": bool(p)}))
    """ % str(path)
    out = run_json(code, [], POOLSIDE_CUDA_DRIVER="sim")
    assert out["rc"] == 0 and out["ptr"]
    assert out["tail"] == "ab" * 128, "library wrote past sizeof(DeviceSection)"
    assert out["present"] == 1 and out["device"] == 0


def test_c_struct_parser_itself():
    """The header checker must read comma lists, arrays, comments and both struct spellings."""
    text = """
        typedef struct G { uint64_t current; uint64_t peak; } G;
        /* a comment; with a semicolon */
        typedef struct {
          uint64_t seq; // seqlock; odd while written
          uint32_t present;
          uint64_t total_memory, free_memory;
          G requested_bytes;
          uint64_t _reserved[8];
        } Section;
        struct Other { int a; };
    """
    assert c_struct_fields("Section", [text]) == ["seq", "present", "total_memory", "free_memory",
                                                  "requested_bytes", "_reserved"]
    assert c_struct_fields("Other", [text]) == ["a"]
    assert c_struct_fields("Missing", [text]) is None
