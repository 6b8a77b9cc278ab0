//! Instructions per allocate + free pair, for callgrind (load-independent, unlike the
//! criterion timings of `alloc_free`): the same pool and sequences as `alloc_free`, run
//! `N` times without criterion.
//!
//!     cargo bench -p poolside-cuda --bench pair_count --no-run
//!     valgrind --tool=callgrind --callgrind-out-file=/dev/null BIN CASE N
//!
//! Instructions per pair = (count at N) - (count at 0), divided by N. CASE is one of
//! `512`, `64k`, `1m`, `8m`, `256m`, `4k-live`, `6m-live`.

use poolside_cuda::config::PluginConfig;
use poolside_cuda::driver::sim::SimDriver;
use poolside_cuda::pool::DevicePool;
use std::hint::black_box;
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map_or("512", |s| s.as_str());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50_000);
    let d = Arc::new(SimDriver::new(1, 16 << 30));
    let p = DevicePool::new(d, 0, &PluginConfig::default()).unwrap();
    let (size, live) = match case {
        "512" => (512, false),
        "64k" => (64 << 10, false),
        "1m" => (1 << 20, false),
        "8m" => (8 << 20, false),
        "256m" => (256 << 20, false),
        "4k-live" => (4096, true),
        "6m-live" => (6 << 20, true),
        _ => panic!("unknown case {case}"),
    };
    let mut held = Vec::new();
    if live {
        held.extend((0..200).map(|i| p.malloc(1000 + i * 3000, 0).unwrap()));
        held.extend((0..50).map(|i| p.malloc((2 << 20) + i * (1 << 20), 0).unwrap()));
    }
    // One pair outside the count's difference either way: the first maps memory.
    let x = p.malloc(size, 0).unwrap();
    p.free(x).unwrap();
    for _ in 0..n {
        let x = p.malloc(black_box(size), 0).unwrap();
        p.free(x).unwrap();
    }
    for x in held {
        p.free(x).unwrap();
    }
}
