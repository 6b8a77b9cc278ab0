//! Host overhead of one allocate + free pair on the simulated driver (no device work is
//! timed: after the first pair every request is served from the cache, as in a training
//! loop). Results go in BENCHMARKS.md, "CUDA plugin (simulated driver)".
//!
//! cargo bench -p poolside-cuda --bench alloc_free

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use poolside_cuda::config::PluginConfig;
use poolside_cuda::driver::sim::SimDriver;
use poolside_cuda::pool::DevicePool;
use std::sync::Arc;

fn pool() -> DevicePool {
    let d = Arc::new(SimDriver::new(1, 16 << 30));
    DevicePool::new(d, 0, &PluginConfig::default()).unwrap()
}

fn pairs(c: &mut Criterion) {
    let p = pool();
    for (name, size) in [
        ("pool 512 B", 512usize),
        ("pool 64 KiB", 64 << 10),
        ("pool 1 MiB", 1 << 20),
        ("pool 8 MiB", 8 << 20),
        ("pool 256 MiB", 256 << 20),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                let x = p.malloc(black_box(size), 0).unwrap();
                p.free(x).unwrap();
            })
        });
    }
    // A mix with other blocks live, so the arena and maps are not trivially small.
    let live: Vec<_> = (0..200)
        .map(|i| p.malloc(1000 + i * 3000, 0).unwrap())
        .collect();
    let big: Vec<_> = (0..50)
        .map(|i| p.malloc((2 << 20) + i * (1 << 20), 0).unwrap())
        .collect();
    c.bench_function("pool 4 KiB, 250 live", |b| {
        b.iter(|| {
            let x = p.malloc(black_box(4096), 0).unwrap();
            p.free(x).unwrap();
        })
    });
    c.bench_function("pool 6 MiB, 250 live", |b| {
        b.iter(|| {
            let x = p.malloc(black_box(6 << 20), 0).unwrap();
            p.free(x).unwrap();
        })
    });
    for x in live.into_iter().chain(big) {
        p.free(x).unwrap();
    }

    // Through the exported C functions (what PyTorch calls), global pool on the sim.
    std::env::set_var("POOLSIDE_CUDA_DRIVER", "sim");
    std::env::set_var("POOLSIDE_CONF", "stats:off");
    let mut err = [0 as std::ffi::c_char; 256];
    c.bench_function("C ABI 4 KiB", |b| {
        b.iter(|| {
            // SAFETY: err is a writable buffer of err.len() bytes.
            let x = unsafe {
                poolside_cuda::abi::exports::poolside_cuda_malloc_impl(
                    black_box(4096),
                    0,
                    std::ptr::null_mut(),
                    err.as_mut_ptr(),
                    err.len(),
                )
            };
            poolside_cuda::abi::exports::poolside_cuda_free(x, 4096, 0, std::ptr::null_mut());
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = pairs
}
criterion_main!(benches);
