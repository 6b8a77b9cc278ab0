"""Issue 6's GPU proof: real PyTorch workloads under four allocators, one table.

    python3 benches/gpu/compare.py                 # all workloads, all allocators
    python3 benches/gpu/compare.py --workloads gpt --no-oom-search

Allocators: PyTorch's native caching allocator, the same with expandable_segments:True,
backend:cudaMallocAsync, and poolside (libpoolside_cuda through CUDAPluggableAllocator).
Workloads (workloads.py): GPT training with shapes that change every step, torchvision
ResNet-50 training (skipped when torchvision is missing), and generation with a growing
KV cache. Each measurement runs in a fresh process (child.py). Reported: median step
time, peak device memory seen by the driver above the CUDA context, peak allocated and
peak reserved as the allocator reports them, and the largest batch that still fits
(bisection, one fresh process per probe).

Step times move between runs on a shared GPU (generate by about 20% on the H200), so the
timed run is repeated (--repeats, default 3) with the allocators alternating, each round
in a rotated order, and the table gives the median of the runs' median step times with
their min and max. --memory-fraction F caps every allocator with
torch.cuda.set_per_process_memory_fraction(F) so that the largest-batch probes are small
and quick; before measuring, one process per allocator checks that it keeps to the cap (a
block of half the cap fits, one of the cap plus 256 MiB gets an OOM), and the script
refuses to go on for an allocator that does not.

Needs a CUDA GPU and a CUDA build of PyTorch; exits with status 2 and says so otherwise.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ALLOCATORS = {
    "native": None,
    "expandable": "expandable_segments:True",
    "cudaMallocAsync": "backend:cudaMallocAsync",
    "poolside": None,
}
# workload -> (base batch, warmup steps, timed steps); base batches as in workloads.WORKLOADS.
PLAN = {"gpt": (16, 8, 32), "resnet50": (64, 3, 20), "generate": (32, 16, 1024)}


def fail(msg):
    sys.stderr.write(f"compare.py: {msg}\n")
    sys.exit(2)


def preflight(args):
    """Refuse clearly when there is nothing to measure on; return the workloads to run."""
    try:
        import torch
    except ImportError:
        fail("PyTorch is not installed; this benchmark needs a CUDA build of torch and a GPU")
    if not torch.cuda.is_available():
        fail("no CUDA GPU is visible (torch.cuda.is_available() is False); this benchmark needs one")
    if "poolside" in args.allocators:
        sys.path.insert(0, str(REPO / "python"))
        from poolside._library import find_library
        from poolside.errors import PoolsideError

        try:
            args.poolside_lib = args.poolside_lib or find_library()
        except PoolsideError as exc:
            fail(f"{exc} (or leave poolside out with --allocators)")
    workloads = list(args.workloads)
    if "resnet50" in workloads:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            print("resnet50: skipped, torchvision is not installed (pip install torchvision)", file=sys.stderr)
            workloads.remove("resnet50")
    return workloads


def child(args, workload, allocator, batch, probe):
    """Run child.py once; return its RESULT dict (raises on a crash that is not an OOM)."""
    env = dict(os.environ)
    env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
    env["POOLSIDE_TORCH"] = "0"  # a `poolside run` around us must not swap the baselines' allocator
    if ALLOCATORS[allocator]:
        env["PYTORCH_CUDA_ALLOC_CONF"] = ALLOCATORS[allocator]
    _, warmup, steps = PLAN[workload]
    cmd = [sys.executable, str(HERE / "child.py"), "--workload", workload, "--allocator", allocator, "--batch", str(batch)]
    if probe == "fraction":
        cmd += ["--check-fraction"]
    else:
        cmd += ["--probe"] if probe else ["--warmup", str(warmup), "--steps", str(steps)]
    if args.memory_fraction:
        cmd += ["--memory-fraction", str(args.memory_fraction)]
    if allocator == "poolside":
        cmd += ["--poolside-lib", args.poolside_lib]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        raise RuntimeError(f"{workload}/{allocator}/batch {batch} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len("RESULT "):])
    if "error" in result:
        fail(result["error"])
    return result


def max_batch(fits, base, cap):
    """Largest batch b <= cap with fits(b), assuming fitting is monotone; (b, hit_cap)."""
    lo, hi = 0, None
    if fits(base):
        lo = base
        while hi is None:
            if lo * 2 > cap:
                return lo, True
            if fits(lo * 2):
                lo *= 2
            else:
                hi = lo * 2
    else:
        hi = base
    while hi - lo > max(1, lo // 32):
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, False


def mib(n):
    return "n/a" if n is None else f"{n / 2**20:,.0f}"


def check_fraction(args, allocators):
    """Every allocator keeps to --memory-fraction, or the script stops."""
    for allocator in allocators:
        honoured = child(args, "gpt", allocator, 1, probe="fraction")["fraction_honoured"]
        if honoured is None:
            fail(f"--memory-fraction {args.memory_fraction}: the device has too little free memory to check the cap")
        if not honoured:
            fail(f"{allocator} does not keep to set_per_process_memory_fraction({args.memory_fraction}): "
                 "its largest batch would not be comparable")
        print(f"{allocator}: keeps to memory fraction {args.memory_fraction}", file=sys.stderr, flush=True)


def rounds(allocators, repeats):
    """The timed runs' order: every allocator once per round, each round rotated by one,
    so that no allocator always runs first or right after the same one."""
    n = len(allocators)
    return [[allocators[(r + i) % n] for i in range(n)] for r in range(repeats)]


def spread(values, fmt):
    """'median (min-max)' of the values, or the one value."""
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def summarize(runs):
    """One table row from the timed runs of one allocator on one workload."""
    ok = [r for r in runs if not r["oom"]]
    if not ok:
        return {"step": "OOM", "driver": "n/a", "allocated": "n/a", "reserved": "n/a"}
    peaks = lambda key: [r[key] for r in ok if r[key] is not None]
    row = {"step": spread([r["median_step_ms"] for r in ok], lambda v: f"{v:.2f}")}
    for col, key in (("driver", "peak_driver_bytes"), ("allocated", "peak_allocated_bytes"),
                     ("reserved", "peak_reserved_bytes")):
        row[col] = spread(peaks(key), mib) if peaks(key) else "n/a"
    if len(ok) < len(runs):
        row["step"] += f", OOM in {len(runs) - len(ok)} of {len(runs)}"
    return row


def measure(args, workload, allocators):
    """Rows of one workload, allocator -> row."""
    base = PLAN[workload][0]
    runs = {a: [] for a in allocators}
    for order in rounds(allocators, args.repeats):
        for allocator in order:
            runs[allocator].append(child(args, workload, allocator, base, probe=False))
    rows = {a: summarize(runs[a]) for a in allocators}
    for allocator in allocators:
        rows[allocator]["max_batch"] = "-"
        if args.oom_search:
            best, capped = max_batch(lambda b: not child(args, workload, allocator, b, probe=True)["oom"], base,
                                     base * args.max_batch_factor)
            rows[allocator]["max_batch"] = f">= {best}" if capped else str(best)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", nargs="+", default=list(PLAN), choices=list(PLAN))
    p.add_argument("--allocators", nargs="+", default=list(ALLOCATORS), choices=list(ALLOCATORS))
    p.add_argument("--no-oom-search", dest="oom_search", action="store_false", help="skip the largest-batch bisection")
    p.add_argument("--max-batch-factor", type=int, default=64, help="stop the search at base batch times this")
    p.add_argument("--poolside-lib", default=None, help="libpoolside_cuda.so to use (default: discovery)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per child process")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per allocator, alternating (default 3)")
    p.add_argument("--memory-fraction", type=float, default=None,
                   help="cap every allocator at this share of the device (checked first)")
    args = p.parse_args()
    if args.repeats < 1:
        fail("--repeats must be at least 1")
    if args.memory_fraction is not None and not 0 < args.memory_fraction <= 1:
        fail("--memory-fraction must be in (0, 1]")
    workloads = preflight(args)
    if args.memory_fraction:
        check_fraction(args, args.allocators)
    cap = f", memory fraction {args.memory_fraction}" if args.memory_fraction else ""
    print(f"Step times: median (min-max) of {args.repeats} alternating runs{cap}.")
    print()
    print("| workload | allocator | median step (ms) | peak driver (MiB) | peak allocated (MiB) "
          "| peak reserved (MiB) | largest batch |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for workload in workloads:
        rows = measure(args, workload, args.allocators)
        for allocator, r in rows.items():
            print(f"| {workload} | {allocator} | {r['step']} | {r['driver']} | {r['allocated']} | {r['reserved']} "
                  f"| {r['max_batch']} |", flush=True)


if __name__ == "__main__":
    main()
