//! Writing synthetic PyTorch memory snapshots (pickles in `_dump_snapshot`'s format) for
//! the replay and fragmentation tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

/// A trace being built: addresses are made up, unique per live block, as PyTorch's are.
#[derive(Default)]
pub struct TraceWriter {
    /// action, addr, size, stream.
    entries: Vec<(&'static str, u64, u64, u64)>,
    next_addr: u64,
    pub live: BTreeMap<u64, u64>,
}

/// Protocol 2 pickle writers for the few types a trace needs.
fn put_str(out: &mut Vec<u8>, x: &str) {
    out.push(b'X');
    out.extend((x.len() as u32).to_le_bytes());
    out.extend(x.as_bytes());
}

fn put_int(out: &mut Vec<u8>, i: u64) {
    // LONG1 with 9 bytes: any u64, positive.
    out.extend([0x8a, 9]);
    out.extend(i.to_le_bytes());
    out.push(0);
}

impl TraceWriter {
    fn entry(&mut self, action: &'static str, addr: u64, size: u64, stream: u64) {
        self.entries.push((action, addr, size, stream));
    }

    /// An allocation; returns its address.
    pub fn alloc(&mut self, size: u64, stream: u64) -> u64 {
        self.next_addr += 1 << 40 >> 20; // distinct, 1 MiB apart, never reused
        let a = 0x7f00_0000_0000 + self.next_addr * 512;
        self.entry("alloc", a, size, stream);
        self.live.insert(a, size);
        a
    }

    /// A free as PyTorch records it (requested, then completed).
    pub fn free(&mut self, addr: u64, stream: u64) {
        let size = self.live.remove(&addr).unwrap_or(0);
        self.entry("free_requested", addr, size, stream);
        self.entry("free_completed", addr, size, stream);
    }

    /// A free of an address the trace never allocated (recording began later).
    pub fn stray_free(&mut self, addr: u64) {
        self.entry("free_completed", addr, 4096, 0);
    }

    /// A segment event of PyTorch's own allocator.
    pub fn segment(&mut self, action: &'static str, size: u64) {
        self.entry(action, 0x1000, size, 0);
    }

    /// The pickle (protocol 2, no memo): `{"segments": [], "device_traces": [entries]}`.
    /// Snapshots as Python writes them are in tests/data/snapshots.
    pub fn pickle(self) -> Vec<u8> {
        let mut o = vec![0x80, 2, b'}', b'('];
        put_str(&mut o, "segments");
        o.push(b']');
        put_str(&mut o, "device_traces");
        o.extend([b']', b']', b'(']);
        for (action, addr, size, stream) in self.entries {
            o.extend([b'}', b'(']);
            put_str(&mut o, "action");
            put_str(&mut o, action);
            for (k, v) in [("addr", addr), ("size", size), ("stream", stream)] {
                put_str(&mut o, k);
                put_int(&mut o, v);
            }
            put_str(&mut o, "frames");
            o.extend([b']', b'u']);
        }
        o.extend([b'e', b'a', b'u', b'.']);
        o
    }
}

pub fn rng(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

const MIB: u64 = 1 << 20;

/// A transformer training loop: persistent weights, gradients and optimizer state, then
/// per step a forward pass keeping activations (sizes follow a random sequence length),
/// temporaries freed at once, and a backward pass freeing activations in reverse.
pub fn transformer_training(steps: usize, seed: u64) -> TraceWriter {
    let mut t = TraceWriter::default();
    let mut x = seed;
    let (layers, hidden) = (12u64, 1024u64);
    let mut persistent = Vec::new();
    for _ in 0..layers {
        for size in [
            4 * hidden * hidden * 2,
            4 * hidden * 4 * hidden * 2 / 4,
            hidden * 2,
            hidden * 4 * 2,
        ] {
            persistent.push(t.alloc(size, 0));
        }
    }
    for step in 0..steps {
        let seq = 128 + rng(&mut x) % 1920;
        let batch = 8;
        let tokens = seq * batch;
        let mut acts = Vec::new();
        for _ in 0..layers {
            acts.push(t.alloc(tokens * hidden * 2, 0)); // layer input
            let attn = t.alloc(batch * 16 * seq * seq * 2, 0); // attention scores
            let tmp = t.alloc(tokens * hidden * 4 * 2, 0); // MLP intermediate
            acts.push(t.alloc(tokens * hidden * 4 * 2 / 2, 0)); // kept activation
            t.free(tmp, 0);
            t.free(attn, 0);
            let small = t.alloc(tokens * 4, 0); // layer-norm statistics
            acts.push(small);
        }
        while let Some(a) = acts.pop() {
            let g = t.alloc(t.live[&a], 0); // gradient of the activation
            t.free(a, 0);
            t.free(g, 0);
        }
        if step == 0 {
            // Gradients and Adam state appear after the first backward pass.
            for p in persistent.clone() {
                let size = t.live[&p];
                for _ in 0..3 {
                    t.alloc(size, 0);
                }
            }
        }
    }
    t
}

/// Inference with a growing KV cache: per generated token, each layer's cache is
/// reallocated one token longer (new block, copy, free the old), plus temporaries.
pub fn kv_cache_inference(tokens: usize, seed: u64) -> TraceWriter {
    let mut t = TraceWriter::default();
    let mut x = seed;
    let (layers, kv_per_token) = (24u64, 2 * 8 * 1024 * 2u64); // K and V, 8 sequences, fp16
    for _ in 0..layers {
        t.alloc(24 * MIB, 0); // weights
    }
    let mut caches: Vec<u64> = (0..layers).map(|_| t.alloc(kv_per_token * 64, 0)).collect();
    for n in 65..(65 + tokens as u64) {
        for cache in caches.iter_mut() {
            let new = t.alloc(kv_per_token * n, 0);
            t.free(*cache, 0);
            *cache = new;
            let tmp = t.alloc(8 * 1024 * 2 * (1 + rng(&mut x) % 4), 0);
            t.free(tmp, 0);
        }
    }
    t
}
