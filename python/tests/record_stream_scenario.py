"""record_stream on a real GPU, as a script: ``python3 record_stream_scenario.py ALLOCATOR``.

ALLOCATOR is ``poolside`` (poolside.torch.enable()) or ``native`` (PyTorch's own caching
allocator, the control). A tensor filled on a busy side stream is freed after
``record_stream(side)``; the next allocation of its size must not get its memory while
the side stream still runs. Prints one JSON line: ``{"skipped": reason}`` without a GPU,
else the outcome that :func:`problems` judges:

- ``side_busy_at_alloc``: ``side.query()`` was False when the next allocation returned
  (if not, the scenario proves nothing: the side stream had finished);
- ``reused``: the new tensor got the freed tensor's address;
- ``new_ok``: after both streams finished, the new tensor holds what the main stream wrote;
- ``side_ok``: what the side stream copied out of the old tensor, after a second sleep, is
  what it wrote there (a reuse would show in one of the two);
- ``held_by_pool`` (poolside): the freed tensor's bytes were still allocated in the pool
  before the next allocation, so record_stream reached the pool;
- ``counters`` (poolside): event_record_failures, event_query_failures, sync_fallbacks;
- ``enable_warnings``: what poolside.torch.enable() warned (a missing hook).

Every kernel is run once and the device synchronized before the scenario: the first launch
of a kernel can load its module and synchronize the context (lazy loading, the default
since CUDA 12.2), which would finish the side stream early. The pytest test runs this in a
subprocess so that it can also fail on any poolside warning in stderr.
"""

import json
import sys
import warnings

SIZE = 32 << 20
TARGET_MS = 300.0  # how long the side stream sleeps, each of two times


def problems(out, allocator):
    """What is wrong with an outcome (empty when the check holds)."""
    if "skipped" in out:
        return [f"skipped: {out['skipped']}"]
    found = []
    if out.get("enable_warnings"):
        found.append(f"enable() warned: {out['enable_warnings']}")
    if not out["side_busy_at_alloc"]:
        found.append("the side stream had finished when the next allocation returned: the check proves nothing")
    elif out["reused"]:
        found.append("the freed block was handed out while its side stream still ran")
    if not out["new_ok"]:
        found.append("the new tensor was overwritten: memory still in use was reused")
    if not out["side_ok"]:
        found.append("the side stream's tensor was overwritten: memory still in use was reused")
    if allocator == "poolside":
        if not out["held_by_pool"]:
            found.append("record_stream did not reach poolside (hook unset or pointer not found)")
        bad = {k: v for k, v in out["counters"].items() if v}
        if bad:
            found.append(f"poolside fell back to synchronizes: {bad}")
    return found


def sleep_cycles(torch):
    """torch.cuda._sleep cycles that take about TARGET_MS on this GPU (measured)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    probe = 20_000_000
    start.record()
    torch.cuda._sleep(probe)
    end.record()
    end.synchronize()
    ms = max(start.elapsed_time(end), 1e-3)
    return int(min(probe * TARGET_MS / ms, 2**62))


def scenario(torch, pt):
    side = torch.cuda.Stream()
    u8 = dict(dtype=torch.uint8, device="cuda")
    # Warm-up: every kernel below, on both streams, then a synchronize.
    w, o = torch.empty(SIZE, **u8), torch.empty(SIZE, **u8)
    w.fill_(0)
    with torch.cuda.stream(side):
        torch.cuda._sleep(1000)
        w.fill_(1)
        o.copy_(w)
    cycles = sleep_cycles(torch)
    torch.cuda.synchronize()
    del w

    out_side = o  # keeps the side stream's copy of x; allocated before, freed after
    x = torch.empty(SIZE, **u8)
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(cycles)
        x.fill_(1)
        torch.cuda._sleep(cycles)
        out_side.copy_(x)
    x.record_stream(side)
    ptr = x.data_ptr()
    del x
    held = pt.pool_stats(0)["active_bytes"]["current"] >= 2 * SIZE if pt else None
    y = torch.empty(SIZE, **u8)
    busy = not side.query()
    reused = y.data_ptr() == ptr
    y.fill_(2)
    torch.cuda.synchronize()
    out = {
        "side_busy_at_alloc": busy,
        "reused": reused,
        "new_ok": bool(y.eq(2).all().item()),
        "side_ok": bool(out_side.eq(1).all().item()),
        "held_by_pool": held,
        "sleep_cycles": cycles,
    }
    if pt:
        s = pt.pool_stats(0)
        out["counters"] = {k: s[k] for k in ("event_record_failures", "event_query_failures", "sync_fallbacks")}
    return out


def main(argv):
    allocator = argv[1] if len(argv) > 1 else ""
    if allocator not in ("poolside", "native"):
        print(json.dumps({"error": f"usage: {argv[0]} poolside|native"}))
        return 2
    import torch

    pt = None
    caught = []
    if allocator == "poolside":
        import poolside.torch as pt

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pt.enable()
    out = {"allocator": allocator, "enable_warnings": [str(w.message) for w in caught]}
    if not torch.cuda.is_available():
        out["skipped"] = "no CUDA GPU is visible"
    else:
        out.update(scenario(torch, pt))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
