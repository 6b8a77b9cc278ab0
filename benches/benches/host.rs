//! Host allocator benchmarks: poolside against std's System allocator (glibc) and the
//! mimalloc crate, in the same run. Each allocator is called through its GlobalAlloc
//! methods directly; the harness itself runs on the default global allocator.
//!
//! Run: `cargo bench -p poolside-benches --bench host`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use poolside_benches::{base_subjects, free, must_alloc, Subject};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn subjects() -> Vec<Subject> {
    let mut v = base_subjects();
    v.push(Subject {
        name: "mimalloc",
        alloc: &MIMALLOC,
    });
    v
}

/// alloc/free pairs of one size, 16 B to 1 MiB.
fn pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair");
    for size in [
        16usize,
        64,
        256,
        1024,
        4096,
        16 << 10,
        64 << 10,
        256 << 10,
        1 << 20,
    ] {
        g.throughput(Throughput::Elements(1));
        for s in subjects() {
            g.bench_with_input(BenchmarkId::new(s.name, size), &size, |b, &size| {
                b.iter(|| {
                    let p = must_alloc(s.alloc, black_box(size));
                    // SAFETY: p came from must_alloc with this size.
                    unsafe {
                        p.write(1);
                        free(s.alloc, black_box(p), size);
                    }
                })
            });
        }
    }
    g.finish();
}

/// Allocate 1,000 blocks of mixed small sizes, then free them all.
fn batch(c: &mut Criterion) {
    let sizes: Vec<usize> = (0..1000).map(|i| 16 + (i * 7919) % 1009).collect();
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(sizes.len() as u64));
    for s in subjects() {
        let mut ptrs = Vec::with_capacity(sizes.len());
        g.bench_function(BenchmarkId::new(s.name, "1000-mixed"), |b| {
            b.iter(|| {
                for &n in &sizes {
                    ptrs.push(must_alloc(s.alloc, n));
                }
                for (p, &n) in ptrs.drain(..).zip(&sizes) {
                    // SAFETY: allocated just above with size n.
                    unsafe { free(s.alloc, p, n) };
                }
            })
        });
    }
    g.finish();
}

/// One thread allocates blocks, another frees them (sent in batches of 256 pointers).
fn producer_consumer(c: &mut Criterion) {
    const BATCH: usize = 256;
    let mut g = c.benchmark_group("producer_consumer");
    g.throughput(Throughput::Elements(BATCH as u64 * 64));
    g.measurement_time(Duration::from_secs(4));
    for s in subjects() {
        let a: &'static (dyn GlobalAlloc + Sync) = s.alloc;
        g.bench_function(BenchmarkId::new(s.name, "64x256"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (tx, rx) = mpsc::sync_channel::<Vec<usize>>(8);
                    let start = Instant::now();
                    let consumer = std::thread::spawn(move || {
                        for batch in rx {
                            for p in batch {
                                let size = 16 + p % 7 * 48;
                                // SAFETY: the producer allocated p with this size (encoded below).
                                unsafe { free(a, (p & !7) as *mut u8, size) };
                            }
                        }
                    });
                    for r in 0..64 {
                        let batch: Vec<usize> = (0..BATCH)
                            .map(|i| {
                                let k = (i + r) % 7;
                                must_alloc(a, 16 + k * 48) as usize | k
                            })
                            .collect();
                        tx.send(batch).unwrap();
                    }
                    drop(tx);
                    consumer.join().unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

/// Grow one block by realloc: from 16 B to 4 MiB 1.5x at a time (a growing Vec), and from
/// 1 KiB to 2 MiB by an eighth at a time (CPython's lists and string builders).
fn realloc_growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("realloc_growth");
    for s in subjects() {
        for (id, from, to, div) in [
            ("16B-4MiB", 16, 4 << 20, 2),
            ("1KiB-2MiB-by-8th", 1024, 2 << 20, 8),
        ] {
            g.bench_function(BenchmarkId::new(s.name, id), |b| {
                b.iter(|| {
                    let mut size: usize = from;
                    let mut p = must_alloc(s.alloc, size);
                    while size < to {
                        let next = size + size / div;
                        // SAFETY: p is live with `size` bytes and align 8.
                        p = unsafe {
                            s.alloc
                                .realloc(p, Layout::from_size_align_unchecked(size, 8), next)
                        };
                        assert!(!p.is_null());
                        // SAFETY: the block now holds `next` bytes.
                        unsafe { p.add(next - 1).write(1) };
                        size = next;
                    }
                    // SAFETY: p is live with `size` bytes.
                    unsafe { free(s.alloc, p, size) };
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = host;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(30);
    targets = pairs, batch, producer_consumer, realloc_growth
}
criterion_main!(host);
