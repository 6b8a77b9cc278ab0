//! A workload written the way Rust programs allocate, for `benches/rust_workload.sh`: more
//! threads than cores fill std `HashMap`s with `format!` keys and `Vec`s of small byte
//! buffers, grow `Vec`s by pushing, and hand each finished map to the next thread in a
//! ring, which reads it and drops it (values freed on another thread). Every round frees
//! all of a thread's data and builds it anew, as batch and request-driven programs do.
//!
//! The allocator is whatever `#[global_allocator]` the calling binary sets
//! (`examples/rust_workload_{poolside,mimalloc,system}.rs`).

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;
use std::time::Instant;

/// The sizes of one run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub threads: usize,
    pub rounds: usize,
    /// Map entries a thread builds per round.
    pub entries: usize,
}

impl Params {
    /// Defaults (8 threads, 10 rounds, 10,000 entries: about 100 MB at peak),
    /// overridden by the arguments `THREADS ROUNDS ENTRIES`.
    pub fn from_args() -> Params {
        let mut p = Params {
            threads: 8,
            rounds: 10,
            entries: 10_000,
        };
        let args: Vec<usize> = std::env::args()
            .skip(1)
            .map(|a| a.parse().expect("arguments: THREADS ROUNDS ENTRIES"))
            .collect();
        if let Some(&v) = args.first() {
            p.threads = v.max(1);
        }
        if let Some(&v) = args.get(1) {
            p.rounds = v;
        }
        if let Some(&v) = args.get(2) {
            p.entries = v;
        }
        p
    }
}

type Map = HashMap<String, Vec<Vec<u8>>>;

/// xorshift64: deterministic sizes without a dependency.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// One thread's map for one round: `entries` keys made with `format!`, each holding 1-8
/// byte buffers of 8-263 bytes, pushed one by one (the value `Vec` grows).
fn build(t: usize, round: usize, entries: usize, x: &mut u64) -> Map {
    let mut m = HashMap::new();
    for i in 0..entries {
        let key = format!("thread-{t}-round-{round}-key-{i}");
        let n = 1 + (next(x) % 8) as usize;
        let mut v = Vec::new();
        for j in 0..n {
            let len = 8 + (next(x) % 256) as usize;
            v.push(vec![(i + j) as u8; len]);
        }
        m.insert(key, v);
    }
    m
}

/// Reads a map another thread built: looks some keys up with temporary `format!` strings,
/// collects a summary into a `Vec` grown by pushing, and returns a checksum.
fn consume(m: &Map, from: usize, round: usize, entries: usize) -> u64 {
    let mut lines = Vec::new();
    let mut sum = 0u64;
    for i in (0..entries).step_by(4) {
        let key = format!("thread-{from}-round-{round}-key-{i}");
        if let Some(v) = m.get(&key) {
            sum += v.iter().map(|b| b.len() as u64 + b[0] as u64).sum::<u64>();
            lines.push(format!("{key}={}", v.len()));
        }
    }
    sum + lines.iter().map(|l| l.len() as u64).sum::<u64>()
}

fn worker(
    t: usize,
    p: Params,
    tx: SyncSender<(usize, usize, Map)>,
    rx: Receiver<(usize, usize, Map)>,
) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut sum = 0;
    for round in 0..p.rounds {
        let m = build(t, round, p.entries, &mut x);
        tx.send((t, round, m)).expect("next thread gone");
        let (from, r, theirs) = rx.recv().expect("previous thread gone");
        sum += consume(&theirs, from, r, p.entries);
        drop(theirs); // built by another thread, freed here
    }
    sum
}

/// Runs the workload; prints the checksum and the wall time (GNU time measures the rest).
pub fn run() {
    let p = Params::from_args();
    let start = Instant::now();
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..p.threads {
        let (tx, rx) = sync_channel(1);
        senders.push(tx);
        receivers.push(Some(rx));
    }
    // Thread t sends to thread t + 1, and receives from thread t - 1.
    let handles: Vec<_> = (0..p.threads)
        .map(|t| {
            let tx = senders[(t + 1) % p.threads].clone();
            let rx = receivers[t].take().unwrap();
            thread::spawn(move || worker(t, p, tx, rx))
        })
        .collect();
    drop(senders);
    let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!(
        "{:?}: checksum {sum}, {:.3} s",
        p,
        start.elapsed().as_secs_f64()
    );
}
