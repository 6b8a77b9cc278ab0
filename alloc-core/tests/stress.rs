//! Multi-threaded stress with poolside as the global allocator: producer/consumer frees
//! across threads, thread churn, and RSS returning near its starting level afterwards.
//!
//! One #[test] runs the phases in order, so no other test disturbs the RSS readings.

use poolside::Poolside;
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: Poolside = Poolside;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn settle() -> usize {
    poolside::collect(true);
    rss_bytes()
}

fn producer_consumer(rounds: usize) {
    let (tx, rx) = mpsc::sync_channel::<Vec<Box<[u8]>>>(64);
    let producers: Vec<_> = (0..3)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for r in 0..rounds {
                    let batch: Vec<Box<[u8]>> = (0..64)
                        .map(|i| {
                            vec![(t + r + i) as u8; 16 + (i * 37 + r * 101) % 20_000]
                                .into_boxed_slice()
                        })
                        .collect();
                    tx.send(batch).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = thread::spawn(move || {
        let mut n = 0usize;
        for batch in rx {
            for b in &batch {
                assert!(b.iter().all(|&x| x == b[0]), "block corrupted in transit");
            }
            n += batch.len();
        }
        n
    });
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), 3 * rounds * 64);
}

fn thread_churn(threads: usize) {
    let mut handles = Vec::new();
    for i in 0..threads {
        handles.push(thread::spawn(move || {
            let v: Vec<String> = (0..20).map(|j| format!("thread {i} item {j}")).collect();
            let big = vec![i as u8; 100_000];
            v.len() + big.len()
        }));
        if handles.len() == 16 {
            for h in handles.drain(..) {
                assert_eq!(h.join().unwrap(), 100_020);
            }
        }
    }
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn stress_phases_keep_rss_flat() {
    // Warm up: first threads, first segments, the stats file.
    producer_consumer(20);
    thread_churn(64);
    let base = settle();

    producer_consumer(400);
    let after_pc = settle();

    thread_churn(5_000);
    let after_churn = settle();

    let snapshot = poolside::stats_snapshot();
    eprintln!(
        "rss: base {} KiB, after producer/consumer {} KiB, after churn {} KiB; heaps active {} parked {}",
        base / 1024,
        after_pc / 1024,
        after_churn / 1024,
        snapshot.heaps_active,
        snapshot.heaps_abandoned
    );
    let slack = 16 << 20;
    assert!(
        after_pc < base + slack,
        "producer/consumer left {} KiB behind",
        (after_pc - base) / 1024
    );
    assert!(
        after_churn < base + slack,
        "thread churn left {} KiB behind",
        (after_churn - base) / 1024
    );
    // 5,000 threads ran at most 16 at a time: heaps are reused, not piled up.
    assert!(
        snapshot.heaps_active + snapshot.heaps_abandoned <= 64,
        "heaps were not reused"
    );
}
