//! Quick check of alloc/free pair cost: the minimum and the median over many short runs.
//! The minimum tolerates a busy machine (preemption only ever adds time) but can hide a
//! cost that only some runs avoid; a median far above the minimum on a quiet machine
//! means the loop is bimodal. Not a substitute for `cargo bench`.
use poolside_benches::{base_subjects, free, must_alloc, Subject};
use std::hint::black_box;
use std::time::Instant;

static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut subjects = base_subjects();
    subjects.push(Subject {
        name: "mimalloc",
        alloc: &MIMALLOC,
    });
    println!("size: allocator=min/median ns per pair");
    for size in [16usize, 64, 256, 1024, 4096, 65536, 1 << 20] {
        let mut line = format!("{size:>8}");
        for s in &subjects {
            let mut runs = Vec::with_capacity(200);
            for _ in 0..200 {
                let n = 20_000;
                let t = Instant::now();
                for _ in 0..n {
                    let p = must_alloc(s.alloc, black_box(size));
                    // SAFETY: p came from must_alloc with this size.
                    unsafe {
                        p.write(1);
                        free(s.alloc, black_box(p), size);
                    }
                }
                runs.push(t.elapsed().as_nanos() as f64 / n as f64);
            }
            runs.sort_by(f64::total_cmp);
            line += &format!("  {}={:.2}/{:.2}ns", s.name, runs[0], runs[runs.len() / 2]);
        }
        println!("{line}");
    }
    let mut line = "producer/consumer ns/block".to_string();
    for s in &subjects {
        line += &format!("  {}={:.2}", s.name, producer_consumer_min(s.alloc));
    }
    println!("{line}");
}

/// Producer/consumer: one thread allocates 64 batches of 256 blocks, another frees them.
#[allow(dead_code)]
pub fn producer_consumer_min(a: &'static (dyn std::alloc::GlobalAlloc + Sync)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..40 {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<usize>>(8);
        let t = Instant::now();
        let consumer = std::thread::spawn(move || {
            for batch in rx {
                for p in batch {
                    // SAFETY: allocated by the producer with size 16 + (p & 7) * 48.
                    unsafe { free(a, (p & !7) as *mut u8, 16 + (p & 7) * 48) };
                }
            }
        });
        for r in 0..64 {
            let batch: Vec<usize> = (0..256)
                .map(|i| must_alloc(a, 16 + ((i + r) % 7) * 48) as usize | ((i + r) % 7))
                .collect();
            tx.send(batch).unwrap();
        }
        drop(tx);
        consumer.join().unwrap();
        best = best.min(t.elapsed().as_nanos() as f64 / (64.0 * 256.0));
    }
    best
}
