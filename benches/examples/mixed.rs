//! A fixed mixed workload for overhead measurements: a ring of 4096 live blocks where each
//! step frees one block and allocates another of a pseudo-random size (mostly small, some
//! up to 64 KiB), 2 million steps, through poolside directly. Deterministic, so its
//! instruction count (callgrind) compares builds exactly.
//!
//! `mixed STEPS SIZE` instead runs STEPS alloc/free pairs of SIZE bytes, and
//! `mixed STEPS live=N` runs the mixed workload over a ring of N live blocks: with N in the
//! hundreds of thousands the heap holds hundreds of megabytes, which is what a program
//! like a compiler or an interpreter's object graph looks like to the statistics' folds.

use std::time::Instant;

fn main() {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let arg = std::env::args().nth(2);
    let live = match arg.as_deref().and_then(|a| a.strip_prefix("live=")) {
        Some(n) => n.parse().expect("live=N takes a number of blocks"),
        None => 4096,
    };
    if let Some(size) = arg.and_then(|s| s.parse::<usize>().ok()) {
        let t = Instant::now();
        for i in 0..steps {
            let p = poolside::alloc(std::hint::black_box(size), 8);
            assert!(!p.is_null());
            // SAFETY: p is a live block of `size` >= 1 bytes, freed once.
            unsafe {
                p.write(i as u8);
                poolside::free(std::hint::black_box(p));
            }
        }
        eprintln!(
            "{:.2} ns/step",
            t.elapsed().as_nanos() as f64 / steps as f64
        );
        return;
    }
    let mut ring = vec![(std::ptr::null_mut::<u8>(), 0usize); live];
    let mut x = 0x9e3779b97f4a7c15u64;
    let t = Instant::now();
    for i in 0..steps {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = match x % 100 {
            0..=59 => 8 + (x >> 8) as usize % 120,
            60..=89 => 128 + (x >> 8) as usize % 1920,
            90..=98 => 2048 + (x >> 8) as usize % 14336,
            _ => 16384 + (x >> 8) as usize % 49152,
        };
        let slot = &mut ring[i % live];
        // SAFETY: the slot holds null or a live block from poolside::alloc.
        unsafe { poolside::free(slot.0) };
        let p = poolside::alloc(size, 8);
        assert!(!p.is_null());
        // SAFETY: p holds `size` >= 8 bytes.
        unsafe { p.write(i as u8) };
        *slot = (p, size);
    }
    for (p, _) in ring {
        // SAFETY: live blocks.
        unsafe { poolside::free(p) };
    }
    eprintln!(
        "{:.2} ns/step",
        t.elapsed().as_nanos() as f64 / steps as f64
    );
}
