"""One measured run of one workload under one allocator, in its own process.

compare.py starts this script once per (workload, allocator, batch): PyTorch's allocator
can be chosen only once per process, and every run must start from an empty pool. The
allocator is picked by the environment compare.py sets (PYTORCH_CUDA_ALLOC_CONF) or, for
poolside, by poolside.torch.enable() before any CUDA work. The last stdout line is
``RESULT <json>``.
"""

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent.parent / "python"))


def is_oom(exc):
    """torch's OOM, poolside's OOM RuntimeError, or a library (cuBLAS/cuDNN) failing for lack of memory."""
    import torch

    text = str(exc)
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower() or "ALLOC_FAILED" in text


class DriverPeak:
    """Highest device memory in use (driver view) minus the use before the run.

    Sampled with cudaMemGetInfo after every step and, when torch.cuda.device_memory_used
    works (it needs pynvml), by a thread every 2 ms so that memory released inside a step
    is seen too. Device-wide: other processes on the GPU inflate it.
    """

    def __init__(self, torch):
        self.torch = torch
        free, total = torch.cuda.mem_get_info(0)
        self.baseline = total - free
        self.peak = 0
        self.stop = threading.Event()
        self.thread = None
        try:
            nvml_base = torch.cuda.device_memory_used(0)
            self.nvml_offset = self.baseline - nvml_base
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        except Exception:  # noqa: BLE001 - no pynvml or older torch: step samples only
            self.thread = None

    def _poll(self):
        while not self.stop.wait(0.002):
            used = self.torch.cuda.device_memory_used(0) + self.nvml_offset
            self.peak = max(self.peak, used - self.baseline)

    def sample(self):
        free, total = self.torch.cuda.mem_get_info(0)
        self.peak = max(self.peak, total - free - self.baseline)

    def finish(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        return self.peak


def allocator_stats(torch, allocator):
    """(peak allocated, peak reserved) as the allocator itself reports them, or None."""
    try:
        if allocator == "poolside":
            import poolside.torch as pt

            return pt.max_memory_allocated(0), pt.max_memory_reserved(0)
        return torch.cuda.max_memory_allocated(0), torch.cuda.max_memory_reserved(0)
    except Exception:  # noqa: BLE001 - a backend without these stats
        return None, None


def fraction_honoured(torch, fraction):
    """Whether the allocator keeps to ``set_per_process_memory_fraction(fraction)``: a block
    of half the cap fits, and one of the cap plus 256 MiB is refused with an OOM. None when
    the device has too little free memory to tell (the larger block would fail anyway)."""
    free, total = torch.cuda.mem_get_info(0)
    cap = int(fraction * total)
    over = cap + (256 << 20)
    if over >= free:
        return None
    half = torch.empty(cap // 2, dtype=torch.uint8, device="cuda")
    del half
    try:
        block = torch.empty(over, dtype=torch.uint8, device="cuda")
    except Exception as exc:  # noqa: BLE001
        if is_oom(exc):
            return True
        raise
    del block
    return False


def run(args):
    import torch

    if args.allocator == "poolside":
        import poolside.torch as pt

        pt.enable(path=args.poolside_lib)
    if not torch.cuda.is_available():
        return {"error": "no CUDA GPU visible"}
    import workloads

    device = torch.device("cuda", 0)
    torch.cuda.synchronize()  # creates the context, so the baseline includes it
    if args.memory_fraction:
        torch.cuda.set_per_process_memory_fraction(args.memory_fraction, 0)
        if args.check_fraction:
            return {"fraction_honoured": fraction_honoured(torch, args.memory_fraction)}
    peak = DriverPeak(torch)
    times, result = [], {"oom": False}
    try:
        step, cover = workloads.make(args.workload, args.batch, device)
        total = cover if args.probe else args.warmup + args.steps
        for i in range(total):
            t0 = time.perf_counter()
            step()
            torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
            peak.sample()
    except Exception as exc:  # noqa: BLE001
        if not is_oom(exc):
            raise
        result["oom"] = True
        result["oom_message"] = str(exc).splitlines()[0][:200]
    result["peak_driver_bytes"] = peak.finish()
    result["median_step_ms"] = statistics.median(times) * 1e3 if times and not result["oom"] else None
    result["peak_allocated_bytes"], result["peak_reserved_bytes"] = allocator_stats(torch, args.allocator)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workload", required=True)
    p.add_argument("--allocator", required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--probe", action="store_true", help="only check that every shape fits")
    p.add_argument("--poolside-lib", default=None)
    p.add_argument("--memory-fraction", type=float, default=None,
                   help="torch.cuda.set_per_process_memory_fraction(F) before the workload")
    p.add_argument("--check-fraction", action="store_true",
                   help="only check that the allocator keeps to --memory-fraction")
    args = p.parse_args()
    print("RESULT " + json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
