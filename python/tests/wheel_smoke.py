"""Smoke test of an installed poolside wheel, run by .ci/test with the Python of a fresh
virtual environment the wheel was installed into (``venv/bin/python wheel_smoke.py``),
from outside the checkout.

Checks that everything comes from the installed files, not from a checkout:
- ``import poolside`` and ``poolside._library.find_library()`` resolve inside the venv;
- ``<venv>/bin/poolside run`` preloads ``<venv>/lib/libpoolside.so``, names
  ``<venv>/lib/libpoolside_cuda.so`` and puts the installed hook on PYTHONPATH, and
  ``poolside stat --json`` sees the program's host pool from outside;
- with PyTorch importable (a venv made with --system-site-packages), an unchanged script
  under ``poolside run`` gets PyTorch's pluggable allocator backend (the hook ran
  ``poolside.torch.enable()`` from the installed package);
- the C headers are installed, and a C program links against ``-lpoolside`` with them.

Not collected by pytest (no ``test_`` prefix): it needs the installed wheel. Exits non-zero
with a message on the first failure.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

MIB = 1 << 20
VENV = Path(sys.prefix).resolve()
BIN = VENV / "bin"
CHILD = textwrap.dedent("""\
    import json, os, sys
    held = [bytearray(1 << 20) for _ in range(32)]
    print(json.dumps({k: os.environ.get(k) for k in ("LD_PRELOAD", "POOLSIDE_CUDA_LIB", "PYTHONPATH")}),
          flush=True)
    sys.stdin.readline()
""")


def check(cond, what):
    if not cond:
        sys.exit(f"wheel smoke test failed: {what}")
    print(f"ok: {what.split(':')[0]}")


def under_venv(p):
    return Path(p).resolve().is_relative_to(VENV)


def main():
    check(sys.prefix != sys.base_prefix, f"runs inside a virtual environment: {sys.prefix}")
    import poolside
    from poolside._library import find_library

    check(under_venv(poolside.__file__), f"poolside imported from the venv: {poolside.__file__}")
    check(Path(find_library()) == VENV / "lib" / "libpoolside_cuda.so",
          f"libpoolside_cuda.so found in the venv's lib: {find_library()}")
    exe = shutil.which("poolside", path=str(BIN))
    check(exe is not None, f"poolside command installed in {BIN}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POOLSIDE_", "PYTHON", "LD_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory() as stats:
        env["POOLSIDE_CONF"] = f"stats_dir:{stats}"
        child = subprocess.Popen([exe, "run", "--", str(BIN / "python"), "-c", CHILD], env=env, cwd="/",
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline()
            check(line, f"poolside run started the program: {child.stderr.read() if not line else ''}")
            seen = json.loads(line)
            report = json.loads(subprocess.run([exe, "stat", "--json", "--stats-dir", stats], env=env,
                                               capture_output=True, text=True, check=True).stdout)
        finally:
            child.communicate("\n", timeout=60)
        check(child.returncode == 0, f"the program exited cleanly: {child.returncode}")
    check(seen["LD_PRELOAD"] == str(VENV / "lib" / "libpoolside.so"), f"preloads the installed library: {seen}")
    check(seen["POOLSIDE_CUDA_LIB"] == str(VENV / "lib" / "libpoolside_cuda.so"),
          f"names the installed CUDA plugin: {seen}")
    check((seen["PYTHONPATH"] or "").split(":")[0] == str(VENV / "share" / "poolside" / "python-hook"),
          f"puts the installed hook first on PYTHONPATH: {seen}")
    # The stats directory is this run's own; `poolside run` itself holds no pool.
    [entry] = [p for p in report if "bytearray(1 << 20)" in p["command"]] or [None]
    check(entry is not None and entry["host"]["live_bytes"] >= 32 * MIB,
          f"poolside stat sees the program's host pool: {report}")

    probe = subprocess.run([str(BIN / "python"), "-c", "import torch"], capture_output=True, env=env)
    if probe.returncode == 0:
        out = subprocess.run([exe, "run", "--", str(BIN / "python"), "-c",
                              "import torch; print(torch.cuda.memory.get_allocator_backend())"],
                             capture_output=True, text=True, env=env, cwd="/", timeout=300)
        check(out.stdout.strip().splitlines()[-1:] == ["pluggable"] and "not enabled" not in out.stderr,
              f"torch under poolside run uses the pluggable allocator: {out.stdout!r} {out.stderr[-2000:]!r}")
    else:
        print("skipped: PyTorch is not importable in this venv (make it with --system-site-packages)")

    readelf = shutil.which("readelf")
    if readelf:
        dynamic = subprocess.run([readelf, "-d", "-W", str(VENV / "lib" / "libpoolside.so")], capture_output=True,
                                 text=True, check=True).stdout
        needed = [l.split("[")[-1].rstrip("]") for l in dynamic.splitlines() if "(NEEDED)" in l]
        check(set(needed) <= {"libc.so.6"}, f"the installed libpoolside.so needs libc only: {needed}")

    for h in ("poolside.h", "poolside_cuda.h", "poolside_stats.h"):
        check((VENV / "include" / h).is_file(), f"{h} installed in {VENV / 'include'}")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        print("skipped: no C compiler to link a program against the installed library")
        return
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "use.c"
        src.write_text('#include <poolside.h>\n#include <stdlib.h>\n#include <stdio.h>\n'
                       'int main(void) { void *p = malloc(1000); printf("%d\\n", poolside_owns(p)); '
                       'free(p); return 0; }\n')
        prog = Path(d) / "use"
        subprocess.run([cc, f"-I{VENV / 'include'}", str(src), f"-L{VENV / 'lib'}", "-lpoolside",
                        f"-Wl,-rpath,{VENV / 'lib'}", "-o", str(prog)], check=True)
        out = subprocess.run([str(prog)], capture_output=True, text=True, check=True).stdout.strip()
        check(out == "1", f"a C program linked with -lpoolside gets poolside's malloc: {out!r}")


if __name__ == "__main__":
    main()
