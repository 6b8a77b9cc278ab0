#!/usr/bin/env python3
"""Writes PyTorch memory snapshots the way PyTorch writes them, for the replay tests.

`torch.cuda.memory._dump_snapshot` is `pickle.dump(torch.cuda.memory._snapshot(), f)`.
This script builds the same dict (field names and types as torch 2.11's
torch/csrc/cuda/Module.cpp builds them) from a small model of PyTorch's caching
allocator, and pickles it with Python's own `pickle`. As in a real snapshot, the frame
dicts and the frame lists are the SAME objects across trace entries and blocks (PyTorch
symbolizes each distinct frame once), so the pickler memoizes them and the file refers
back to them with BINGET / LONG_BINGET: the case that broke serde-pickle.

The model: requests are rounded up to 512 B; blocks up to 1 MiB come from 2 MiB
segments, larger ones from 20 MiB segments (requests under 10 MiB) or segments rounded up
to 2 MiB; best fit, blocks split when the rest is large enough (512 B in small segments,
over 1 MiB in large ones), free neighbours merge. `empty_cache` returns wholly free
segments. Recording keeps the last `max_entries` entries, so a trace starts mid-run.

Usage: make_snapshots.py OUTDIR [--big MB]
  Writes the files listed in FILES (see there how each is made). With --big, also
  big.pickle: a training run whose snapshot is at least MB megabytes (not kept in git).
"""

import os
import pickle
import random
import sys

KB, MB = 1 << 10, 1 << 20


class Allocator:
    """PyTorch's caching allocator, reduced to what a snapshot shows."""

    def __init__(self, device, base, frames, max_entries):
        self.device = device
        self.next_addr = base
        self.segments = []  # dicts: address, size, stream, large, blocks (sorted lists)
        self.trace = []
        self.max_entries = max_entries
        self.frames = frames  # shared frame lists
        self.time = 1_700_000_000_000_000
        self.seg_frames = {}

    def record(self, action, addr, size, stream, frames):
        self.time += 7
        self.trace.append(
            {
                "action": action,
                "addr": addr,
                "size": size,
                "stream": stream,
                "time_us": self.time,
                "frames": frames,  # the same list object for every entry of this stack
                "compile_context": "N/A",
                "user_metadata": "",
            }
        )
        if len(self.trace) > self.max_entries:
            del self.trace[0]

    def malloc(self, req, stream, frames):
        size = max(512, (req + 511) // 512 * 512)
        large = size > MB
        best = None
        for seg in self.segments:
            if seg["stream"] != stream or seg["large"] != large:
                continue
            for b in seg["blocks"]:
                if b["state"] == "inactive" and b["size"] >= size:
                    if best is None or b["size"] < best[1]["size"]:
                        best = (seg, b)
        if best is None:
            seg_size = 2 * MB if not large else (20 * MB if size < 10 * MB else (size + 2 * MB - 1) // (2 * MB) * (2 * MB))
            addr = self.next_addr
            self.next_addr += seg_size + 2 * MB
            seg = {"address": addr, "size": seg_size, "stream": stream, "large": large,
                   "blocks": [{"address": addr, "size": seg_size, "requested_size": 0,
                               "state": "inactive", "frames": []}]}
            self.segments.append(seg)
            self.seg_frames[addr] = frames
            self.record("segment_alloc", addr, seg_size, stream, frames)
            best = (seg, seg["blocks"][0])
        seg, b = best
        rest = b["size"] - size
        if rest >= (MB + 1 if large else 512):
            i = seg["blocks"].index(b)
            seg["blocks"].insert(i + 1, {"address": b["address"] + size, "size": rest,
                                         "requested_size": 0, "state": "inactive", "frames": []})
            b["size"] = size
        b["state"] = "active_allocated"
        b["requested_size"] = req
        b["frames"] = frames  # the alloc's frame list, shared with its trace entry
        self.record("alloc", b["address"], req, stream, frames)
        return b["address"]

    def free(self, addr, frames):
        for seg in self.segments:
            for i, b in enumerate(seg["blocks"]):
                if b["address"] == addr and b["state"] != "inactive":
                    req = b["requested_size"]
                    self.record("free_requested", addr, req, seg["stream"], frames)
                    self.record("free_completed", addr, req, seg["stream"], frames)
                    b["state"] = "inactive"
                    b["frames"] = []
                    bl = seg["blocks"]
                    if i + 1 < len(bl) and bl[i + 1]["state"] == "inactive":
                        b["size"] += bl.pop(i + 1)["size"]
                    if i > 0 and bl[i - 1]["state"] == "inactive":
                        bl[i - 1]["size"] += bl.pop(i)["size"]
                    return
        raise KeyError(hex(addr))

    def empty_cache(self):
        keep = []
        for seg in self.segments:
            if len(seg["blocks"]) == 1 and seg["blocks"][0]["state"] == "inactive":
                self.record("segment_free", seg["address"], seg["size"], seg["stream"],
                            self.seg_frames[seg["address"]])
            else:
                keep.append(seg)
        self.segments = keep

    def segment_dicts(self):
        out = []
        for seg in self.segments:
            blocks = [dict(b) for b in seg["blocks"]]
            alloc = sum(b["size"] for b in blocks if b["state"] != "inactive")
            out.append({
                "device": self.device,
                "address": seg["address"],
                "total_size": seg["size"],
                "allocated_size": alloc,
                "active_size": alloc,
                "requested_size": sum(b["requested_size"] for b in blocks if b["state"] != "inactive"),
                "stream": seg["stream"],
                "segment_type": "large" if seg["large"] else "small",
                "segment_pool_id": (0, 0),
                "is_expandable": False,
                "frames": self.seg_frames[seg["address"]],
                "blocks": blocks,
            })
        return out


def make_frames(rng, n_stacks):
    """Distinct frame dicts, and stacks (lists) made of them; both reused everywhere."""
    files = ["/home/user/train.py", "/opt/conda/lib/python3.11/site-packages/torch/nn/modules/module.py",
             "/opt/conda/lib/python3.11/site-packages/torch/nn/functional.py",
             "/home/user/modèle/attention_注意.py", "??"]
    names = ["forward", "_call_impl", "linear", "softmax", "backward", "step", "<module>", "scaled_dot_product"]
    frame_dicts = [{"filename": rng.choice(files), "line": rng.randrange(1, 3000), "name": rng.choice(names)}
                   for _ in range(40)]
    return [[rng.choice(frame_dicts) for _ in range(rng.randrange(3, 12))] for _ in range(n_stacks)]


def training(alloc, rng, steps, hidden, layers, stream=0):
    """Weights, then per step activations kept for backward, temporaries, gradients."""
    st = alloc.frames
    weights = [alloc.malloc(4 * hidden * hidden * 2, stream, st[0]) for _ in range(layers)]
    for step in range(steps):
        seq = rng.choice([128, 256, 384, 512, 1024])
        acts = []
        for _ in range(layers):
            acts.append(alloc.malloc(seq * hidden * 2, stream, st[1]))
            tmp = alloc.malloc(seq * hidden * 8, stream, st[2])
            acts.append(alloc.malloc(seq * hidden * 4 + rng.randrange(0, 4096), stream, st[3]))
            small = alloc.malloc(rng.randrange(4, 64 * KB), stream, st[4])
            alloc.free(tmp, st[5])
            alloc.free(small, st[5])
        while acts:
            a = acts.pop()
            g = alloc.malloc(hidden * 64 + rng.randrange(0, MB), stream, st[6])
            alloc.free(a, st[7 % len(st)])
            alloc.free(g, st[7 % len(st)])
        if step % 7 == 6:
            alloc.empty_cache()
    return weights


def inference(alloc, rng, tokens, layers, stream=0):
    """A KV cache regrown one token at a time, with temporaries between."""
    st = alloc.frames
    caches = [alloc.malloc(64 * 4 * KB, stream, st[0]) for _ in range(layers)]
    for n in range(65, 65 + tokens):
        for i in range(layers):
            new = alloc.malloc(n * 4 * KB, stream, st[1])
            alloc.free(caches[i], st[2])
            caches[i] = new
            t = alloc.malloc(rng.randrange(1, 3 * MB), stream, st[3])
            alloc.free(t, st[4])
    return caches


def snapshot(allocs):
    """The dict `torch.cuda.memory._snapshot()` returns, for one allocator per device."""
    return {
        "segments": [s for a in allocs for s in a.segment_dicts()],
        "device_traces": [a.trace for a in allocs],
        "allocator_settings": {
            "PYTORCH_CUDA_ALLOC_CONF": "",
            "max_split_size": -1,
            "garbage_collection_threshold": 0.0,
            "expandable_segments": False,
            "pinned_num_register_threads": 1,
            "release_lock_on_cudamalloc": False,
            "pinned_use_cuda_host_register": False,
            "roundup_power2_divisions": {str(1 << i): 0 for i in range(16)},
            "graph_capture_record_stream_reuse": False,
        },
        "external_annotations": [],
    }


def train_snapshot(seed, steps, max_entries, devices=1, hidden=512, layers=6):
    rng = random.Random(seed)
    frames = make_frames(rng, 10)
    allocs = []
    for d in range(devices):
        a = Allocator(d, 0x7F0000000000 + d * (1 << 36), frames, max_entries)
        training(a, rng, steps, hidden=hidden + 256 * d, layers=layers)
        allocs.append(a)
    return snapshot(allocs)


def infer_snapshot(seed, tokens, max_entries):
    rng = random.Random(seed)
    a = Allocator(0, 0x7F0000000000, make_frames(rng, 6), max_entries)
    inference(a, rng, tokens, layers=8)
    return snapshot([a])


def dump(obj, path, protocol):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def cut(path, fraction):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * fraction)])


# name -> how it is made. Every trace keeps its last max_entries entries, so it starts
# mid-run: frees of blocks it never saw allocated, segments older than its first entry.
FILES = {
    "train_p2.pickle": "training, 1 device, 30 steps, last 2000 entries, protocol 2",
    "train_p3.pickle": "the same snapshot, protocol 3 (not kept: the test makes it)",
    "train_p4.pickle": "the same snapshot, protocol 4 (pickle.dump's default, FRAME + MEMOIZE)",
    "train_p5.pickle": "the same snapshot, protocol 5 (not kept: the test makes it)",
    "multi_gpu_p4.pickle": "training on 2 devices (different sizes), 16 steps, last 1000 entries each, protocol 4",
    "train_large_p4.pickle": "training at a larger scale (hidden 4096, 8 layers: GiBs), 30 steps, last 2000 entries, protocol 4",
    "infer_p4.pickle": "inference with a growing KV cache, 60 tokens, last 2000 entries, protocol 4",
    "cut_short_p4.pickle": "train_p4.pickle cut at 60% of its bytes (a dump that did not finish)",
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    train = train_snapshot(seed=1, steps=30, max_entries=2000)
    for p in (2, 3, 4, 5):
        dump(train, os.path.join(out, f"train_p{p}.pickle"), p)
    dump(train_snapshot(seed=2, steps=16, max_entries=1000, devices=2), os.path.join(out, "multi_gpu_p4.pickle"), 4)
    dump(train_snapshot(seed=5, steps=30, max_entries=2000, hidden=4096, layers=8), os.path.join(out, "train_large_p4.pickle"), 4)
    dump(infer_snapshot(seed=3, tokens=60, max_entries=2000), os.path.join(out, "infer_p4.pickle"), 4)
    dump(train, os.path.join(out, "cut_short_p4.pickle"), 4)
    cut(os.path.join(out, "cut_short_p4.pickle"), 0.6)
    if "--big" in sys.argv:
        want = int(sys.argv[sys.argv.index("--big") + 1]) * MB
        steps = 40
        while True:
            big = train_snapshot(seed=4, steps=steps, max_entries=10**9)
            path = os.path.join(out, "big.pickle")
            dump(big, path, 4)
            if os.path.getsize(path) >= want:
                break
            steps = int(steps * want / os.path.getsize(path) * 1.1) + 1


if __name__ == "__main__":
    main()
