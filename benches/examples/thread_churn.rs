//! Starts and ends 100,000 threads (8 at a time), each allocating and freeing, with poolside
//! as the global allocator, and prints RSS and heap counts every 10,000 threads. A steady
//! RSS shows that exiting threads hand their heaps on.
//!
//! Run: `cargo run --release -p poolside-benches --example thread_churn`

use std::thread;

#[global_allocator]
static GLOBAL: poolside::Poolside = poolside::Poolside;

fn rss_kib() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4
}

fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    println!("threads_done,rss_kib,heaps_active,heaps_parked");
    for done in (0..total).step_by(8) {
        let batch: Vec<_> = (0..8)
            .map(|i| {
                thread::spawn(move || {
                    let v: Vec<String> = (0..32).map(|j| format!("{done}-{i}-{j}")).collect();
                    let buf = vec![i as u8; 64 * 1024];
                    v.len() + buf.len()
                })
            })
            .collect();
        for t in batch {
            t.join().unwrap();
        }
        if (done + 8) % 10_000 == 0 {
            let s = poolside::stats_snapshot();
            println!(
                "{},{},{},{}",
                done + 8,
                rss_kib(),
                s.heaps_active,
                s.heaps_abandoned
            );
        }
    }
}
