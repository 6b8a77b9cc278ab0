//! CUDA graphs' private pools on the simulated driver: routing by filter and stream,
//! frees back to the private pool, nothing of it reaching the general pool before
//! release, shared pools, memory freed after release and the last free, statistics, and
//! no call a capture forbids while one is underway.
//!
//! The simulated device is host memory, so a "replay" here writes the graph's baked-in
//! addresses for real, and ordinary blocks are checked byte for byte afterwards.

use poolside_cuda::config::PluginConfig;
use poolside_cuda::driver::sim::{SimCall, SimDriver};
use poolside_cuda::driver::DevPtr;
use poolside_cuda::pool::graph_pool::Filter;
use poolside_cuda::pool::{AllocError, DevicePool};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const MIB: usize = 1 << 20;
const CAPTURE: u64 = 0x7000;
const OTHER: u64 = 0x8000;
/// Sizes a graph uses: small blocks (up to 1 MiB) and large blocks.
const SIZES: [usize; 6] = [512, 3000, 200_000, 2 * MIB + 4096, 12 * MIB, 700 * 1024];

const CONFS: [&str; 2] = ["", "expandable_segments:false"];

fn setup(capacity_mb: u64, conf: &str) -> (Arc<SimDriver>, DevicePool) {
    let driver = Arc::new(SimDriver::new(1, capacity_mb << 20));
    let mut cfg = PluginConfig::default();
    cfg.apply("TEST", conf, true);
    let pool = DevicePool::new(driver.clone(), 0, &cfg).unwrap();
    (driver, pool)
}

/// PyTorch's capture filter in spirit: "this stream is the one being captured".
fn on_stream(s: u64) -> Filter {
    Filter::new(move |x| x == s)
}

fn fill(p: DevPtr, len: usize, byte: u8) {
    // SAFETY: the simulated device's blocks are host memory, mapped read-write while live.
    unsafe { std::ptr::write_bytes(p as *mut u8, byte, len) }
}

fn holds(p: DevPtr, len: usize, byte: u8) -> bool {
    // SAFETY: as in `fill`.
    let s = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
    s.iter().all(|&b| b == byte)
}

fn overlaps(a: (DevPtr, usize), b: (DevPtr, usize)) -> bool {
    a.0 < b.0 + b.1 as u64 && b.0 < a.0 + a.1 as u64
}

#[test]
fn capture_routes_by_filter_and_stream_and_other_streams_keep_the_general_pool() {
    for conf in CONFS {
        let (_driver, pool) = setup(4096, conf);
        let before = pool.malloc(4096, CAPTURE).unwrap();
        pool.begin_allocate_to_pool((1, 0), on_stream(CAPTURE))
            .map_err(|e| e.0)
            .unwrap();
        assert!(pool.capturing());
        for &size in &SIZES {
            let a = pool.malloc(size, CAPTURE).unwrap();
            assert_eq!(pool.private_pool_of(a), Some((1, 0)), "{conf} {size}");
            let b = pool.malloc(size, OTHER).unwrap();
            assert_eq!(pool.private_pool_of(b), None, "{conf} {size}");
        }
        // Another thread, another stream: the general pool.
        let p = std::thread::scope(|s| s.spawn(|| pool.malloc(5000, 0).unwrap()).join().unwrap());
        assert_eq!(pool.private_pool_of(p), None);
        assert_eq!(pool.private_pool_of(before), None);
        pool.end_allocate_to_pool((1, 0)).unwrap();
        assert!(!pool.capturing());
        // After the end, the capture stream is back on the general pool.
        let after = pool.malloc(3000, CAPTURE).unwrap();
        assert_eq!(pool.private_pool_of(after), None);
        pool.check().unwrap();
    }
}

#[test]
fn a_thread_filter_routes_only_that_threads_allocations() {
    // cudagraph trees' warm-up: beginAllocateCurrentThreadToPool's filter is "this thread".
    let (_driver, pool) = setup(4096, "");
    let me = std::thread::current().id();
    pool.begin_allocate_to_pool(
        (0, 9),
        Filter::new(move |_| std::thread::current().id() == me),
    )
    .map_err(|e| e.0)
    .unwrap();
    let mine = pool.malloc(100_000, 0).unwrap();
    let theirs =
        std::thread::scope(|s| s.spawn(|| pool.malloc(100_000, 0).unwrap()).join().unwrap());
    assert_eq!(pool.private_pool_of(mine), Some((0, 9)));
    assert_eq!(pool.private_pool_of(theirs), None);
    pool.end_allocate_to_pool((0, 9)).unwrap();
    pool.check().unwrap();
}

#[test]
fn private_blocks_never_reach_ordinary_allocations_and_replays_leave_them_intact() {
    for conf in CONFS {
        let (_driver, pool) = setup(4096, conf);
        pool.begin_allocate_to_pool((1, 0), on_stream(CAPTURE))
            .map_err(|e| e.0)
            .unwrap();
        // The graph: intermediates freed during capture (reused within the capture) and
        // after it, and an output kept.
        let mut graph: Vec<(DevPtr, usize)> = Vec::new();
        for round in 0..3 {
            let blocks: Vec<_> = SIZES
                .iter()
                .map(|&s| (pool.malloc(s, CAPTURE).unwrap(), s))
                .collect();
            for &(p, s) in &blocks[..3] {
                pool.free(p).unwrap();
                if round == 0 {
                    graph.push((p, s));
                }
            }
            graph.extend_from_slice(&blocks[3..]);
        }
        let output = graph[graph.len() - 1];
        pool.end_allocate_to_pool((1, 0)).unwrap();
        for &(p, _) in &graph {
            if p != output.0 && pool.private_pool_of(p).is_some() {
                pool.free(p).unwrap();
            }
        }
        // Ordinary tensors, on the capture stream and another one, filled.
        let mut ordinary = Vec::new();
        for i in 0..40 {
            let s = SIZES[i % SIZES.len()];
            let stream = if i % 2 == 0 { CAPTURE } else { OTHER };
            let p = pool.malloc(s, stream).unwrap();
            assert_eq!(pool.private_pool_of(p), None);
            for &g in &graph {
                assert!(
                    !overlaps((p, s), g),
                    "{conf}: ordinary block {p:#x}+{s} inside the graph's {g:?}"
                );
            }
            fill(p, s, 0x5a);
            ordinary.push((p, s));
        }
        // Ten replays write every address the graph baked in.
        for _ in 0..10 {
            for &(p, s) in &graph {
                fill(p, s, 0xa5);
            }
        }
        for &(p, s) in &ordinary {
            assert!(
                holds(p, s, 0x5a),
                "{conf}: ordinary block {p:#x} overwritten"
            );
        }
        assert!(holds(output.0, output.1, 0xa5));
        pool.check().unwrap();
    }
}

#[test]
fn frees_of_private_blocks_go_back_to_the_private_pool() {
    let (_driver, pool) = setup(4096, "");
    pool.begin_allocate_to_pool((1, 0), on_stream(CAPTURE))
        .map_err(|e| e.0)
        .unwrap();
    let a = pool.malloc(3 * MIB, CAPTURE).unwrap();
    pool.free(a).unwrap();
    // Freed during capture: the capture's next request of the size takes it again.
    let b = pool.malloc(3 * MIB, CAPTURE).unwrap();
    assert_eq!(a, b);
    pool.end_allocate_to_pool((1, 0)).unwrap();
    pool.free(b).unwrap();
    // Freed after the end: still the pool's, served to its next capture (shared pool).
    pool.begin_allocate_to_pool((1, 0), on_stream(CAPTURE))
        .map_err(|e| e.0)
        .unwrap();
    let c = pool.malloc(3 * MIB, CAPTURE).unwrap();
    assert_eq!(c, a);
    assert_eq!(pool.private_pool_of(c), Some((1, 0)));
    pool.end_allocate_to_pool((1, 0)).unwrap();
    let pools = pool.private_pools();
    assert_eq!(pools.len(), 1);
    assert_eq!((pools[0].use_count, pools[0].blocks), (2, 1));
    pool.check().unwrap();
}

#[test]
fn shared_pool_memory_is_freed_after_the_last_release_and_the_last_free() {
    for conf in CONFS {
        let (driver, pool) = setup(4096, conf);
        let base = driver.used(0);
        for _ in 0..2 {
            pool.begin_allocate_to_pool((3, 0), on_stream(CAPTURE))
                .map_err(|e| e.0)
                .unwrap();
            let t = pool.malloc(8 * MIB, CAPTURE).unwrap();
            pool.free(t).unwrap();
            pool.end_allocate_to_pool((3, 0)).unwrap();
        }
        pool.begin_allocate_to_pool((3, 0), on_stream(CAPTURE))
            .map_err(|e| e.0)
            .unwrap();
        let out = pool.malloc(100_000, CAPTURE).unwrap();
        pool.end_allocate_to_pool((3, 0)).unwrap();
        let held = pool.stats().private_pool_bytes.current;
        assert!(held >= 8 * MIB as u64, "{conf}: {held}");
        assert_eq!(driver.used(0) - base, pool.stats().reserved_bytes.current);
        // Three graphs use the pool; each release drops one use.
        pool.release_pool((3, 0)).unwrap();
        pool.release_pool((3, 0)).unwrap();
        pool.empty_cache();
        assert_eq!(
            pool.stats().private_pool_bytes.current,
            held,
            "{conf}: freed while used"
        );
        pool.release_pool((3, 0)).unwrap();
        // The output is still alive: the memory stays until it is freed.
        assert!(pool.stats().private_pool_bytes.current > 0);
        assert_eq!(pool.private_pool_of(out), Some((3, 0)));
        pool.check().unwrap();
        pool.free(out).unwrap();
        let s = pool.stats();
        assert_eq!(s.private_pool_bytes.current, 0, "{conf}");
        assert_eq!(s.private_pool_bytes.peak, held);
        assert!(pool.private_pools().is_empty());
        assert_eq!(driver.used(0), base, "{conf}: device memory not returned");
        assert!(pool.release_pool((3, 0)).is_err());
        pool.check().unwrap();
        assert_eq!(driver.misuse(), 0);
    }
}

#[test]
fn a_freed_pools_stream_pools_serve_the_next_private_pool() {
    let (driver, pool) = setup(4096, "");
    for id in 1..=4u64 {
        pool.begin_allocate_to_pool((id, 0), on_stream(CAPTURE))
            .map_err(|e| e.0)
            .unwrap();
        let p = pool.malloc(4 * MIB, CAPTURE).unwrap();
        assert_eq!(pool.private_pool_of(p), Some((id, 0)));
        pool.end_allocate_to_pool((id, 0)).unwrap();
        pool.free(p).unwrap();
        pool.release_pool((id, 0)).unwrap();
        assert_eq!(pool.stats().private_pool_bytes.current, 0);
    }
    // One reservation for the one stream pool the four pools took in turn (expandable
    // mode: the stream's arena's reservation, small blocks included).
    assert_eq!(driver.calls(SimCall::Reserve), 1);
    pool.check().unwrap();
}

#[test]
fn private_pool_bytes_count_apart_from_the_general_pool() {
    let (_driver, pool) = setup(4096, "");
    let g = pool.malloc(30 * MIB, OTHER).unwrap();
    let general = pool.stats().reserved_bytes.current;
    assert_eq!(pool.stats().private_pool_bytes.current, 0);
    pool.begin_allocate_to_pool((1, 0), on_stream(CAPTURE))
        .map_err(|e| e.0)
        .unwrap();
    let p = pool.malloc(50 * MIB, CAPTURE).unwrap();
    let q = pool.malloc(1000, CAPTURE).unwrap();
    pool.end_allocate_to_pool((1, 0)).unwrap();
    let s = pool.stats();
    assert!(s.private_pool_bytes.current >= 50 * MIB as u64);
    assert_eq!(
        s.reserved_bytes.current,
        general + s.private_pool_bytes.current
    );
    for x in [g, p, q] {
        pool.free(x).unwrap();
    }
    pool.check().unwrap();
}

#[test]
fn out_of_memory_does_not_take_a_graphs_free_memory_until_it_is_released() {
    for conf in CONFS {
        let (_driver, pool) = setup(256, conf);
        pool.begin_allocate_to_pool((1, 0), on_stream(CAPTURE))
            .map_err(|e| e.0)
            .unwrap();
        let t = pool.malloc(150 * MIB, CAPTURE).unwrap();
        pool.free(t).unwrap();
        pool.end_allocate_to_pool((1, 0)).unwrap();
        // The graph's 150 MiB are free in its pool, but a replay writes them.
        match pool.malloc(150 * MIB, OTHER) {
            Err(AllocError::OutOfMemory(_)) => {}
            r => panic!("{conf}: {r:?}"),
        }
        pool.check().unwrap();
        pool.release_pool((1, 0)).unwrap();
        let p = pool.malloc(150 * MIB, OTHER).unwrap();
        assert_eq!(pool.private_pool_of(p), None);
        pool.free(p).unwrap();
        pool.check().unwrap();
    }
}

#[test]
fn nothing_a_capture_forbids_happens_while_one_is_underway() {
    for conf in CONFS {
        let (driver, pool) = setup(256, conf);
        // A block used on another stream and freed before the capture: pending, its
        // event not complete yet.
        let early = pool.malloc(64 * 1024, OTHER).unwrap();
        pool.record_stream(early, 0x9000).unwrap();
        driver.launch(0, 0x9000, early, 64 * 1024);
        pool.free(early).unwrap();
        assert_eq!(pool.pending(), 1);
        // Another used elsewhere, freed during the capture.
        let shared = pool.malloc(64 * 1024, CAPTURE).unwrap();
        pool.record_stream(shared, 0x9000).unwrap();

        pool.begin_allocate_to_pool((1, 0), on_stream(CAPTURE))
            .map_err(|e| e.0)
            .unwrap();
        driver.set_capturing(true);
        let syncs = driver.calls(SimCall::Synchronize);
        // New memory mid-capture (mapped with the thread's capture mode relaxed).
        let mut graph = Vec::new();
        for &size in &SIZES {
            graph.push(pool.malloc(size, CAPTURE).unwrap());
            graph.push(pool.malloc(size, OTHER).unwrap());
        }
        pool.free(shared).unwrap();
        // An out-of-memory during capture fails at once instead of synchronizing.
        assert!(matches!(
            pool.malloc(1 << 40, CAPTURE),
            Err(AllocError::OutOfMemory(_))
        ));
        assert!(matches!(
            pool.malloc(240 * MIB, OTHER),
            Err(AllocError::OutOfMemory(_))
        ));
        pool.empty_cache();
        assert_eq!(driver.capture_violations(), 0, "{conf}");
        assert_eq!(driver.calls(SimCall::Synchronize), syncs);
        pool.check().unwrap();
        // PyTorch ends the stream capture, then tells the allocator.
        driver.set_capturing(false);
        pool.end_allocate_to_pool((1, 0)).unwrap();
        // The deferred free got its event now; both pending blocks come back once the
        // other stream's work is done.
        assert_eq!(pool.pending(), 2, "{conf}");
        driver.complete_events();
        let _ = pool.malloc(512, OTHER).unwrap();
        assert_eq!(pool.pending(), 0, "{conf}");
        for p in graph {
            pool.free(p).unwrap();
        }
        pool.release_pool((1, 0)).unwrap();
        pool.check().unwrap();
        assert_eq!(driver.misuse(), 0);
    }
}

#[test]
fn the_simulated_capture_catches_a_pool_that_would_misbehave() {
    // The check above can fail: a general-pool allocation during a capture that needs
    // new memory, made without relaxing the capture mode, is a violation.
    let (driver, pool) = setup(256, "");
    driver.set_capturing(true);
    assert!(pool.malloc(4 * MIB, OTHER).is_err());
    assert!(driver.capture_violations() > 0);
}

#[test]
fn misuse_is_refused_as_pytorch_refuses_it() {
    let (_driver, pool) = setup(256, "");
    pool.begin_allocate_to_pool((1, 0), on_stream(CAPTURE))
        .map_err(|e| e.0)
        .unwrap();
    let (msg, _filter) = pool
        .begin_allocate_to_pool((1, 0), on_stream(OTHER))
        .unwrap_err();
    assert!(msg.contains("already allocating to pool (1, 0)"), "{msg}");
    assert!(pool
        .end_allocate_to_pool((2, 0))
        .unwrap_err()
        .contains("not allocating to pool (2, 0)"));
    assert!(pool
        .release_pool((5, 5))
        .unwrap_err()
        .contains("no pool (5, 5)"));
    pool.end_allocate_to_pool((1, 0)).unwrap();
    pool.release_pool((1, 0)).unwrap();
    pool.check().unwrap();
}

#[test]
fn a_failing_filter_fails_the_allocation_with_its_message() {
    let (_driver, pool) = setup(256, "");
    unsafe extern "C" fn call(
        _: *mut std::ffi::c_void,
        _: *mut std::ffi::c_void,
        e: *mut std::ffi::c_char,
        _: usize,
    ) -> std::ffi::c_int {
        let m = b"capture info unavailable\0";
        // SAFETY: the pool passes a buffer of 256 bytes.
        unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), e as *mut u8, m.len()) };
        -1
    }
    unsafe extern "C" fn nothing(_: *mut std::ffi::c_void) {}
    // SAFETY: neither function unwinds; the context is unused.
    let f = unsafe { Filter::from_c(call, std::ptr::null_mut(), nothing) };
    pool.begin_allocate_to_pool((1, 0), f)
        .map_err(|e| e.0)
        .unwrap();
    match pool.malloc(4096, CAPTURE) {
        Err(AllocError::Driver(m)) => assert!(m.contains("capture info unavailable"), "{m}"),
        r => panic!("{r:?}"),
    }
    pool.end_allocate_to_pool((1, 0)).unwrap();
    pool.check().unwrap();
}

#[test]
fn concurrent_threads_during_a_capture_stay_consistent() {
    let (_driver, pool) = setup(8192, "");
    let calls = AtomicU64::new(0);
    pool.begin_allocate_to_pool((1, 0), on_stream(CAPTURE))
        .map_err(|e| e.0)
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let pool = &pool;
            let calls = &calls;
            s.spawn(move || {
                let stream = if t == 0 { CAPTURE } else { OTHER + t };
                let mut live = Vec::new();
                for i in 0..300usize {
                    let size = SIZES[(i + t as usize) % SIZES.len()];
                    let p = pool.malloc(size, stream).unwrap();
                    assert_eq!(pool.private_pool_of(p).is_some(), t == 0);
                    live.push(p);
                    if i % 3 == 0 {
                        pool.free(live.swap_remove(i % live.len())).unwrap();
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                for p in live {
                    pool.free(p).unwrap();
                }
            });
        }
    });
    pool.end_allocate_to_pool((1, 0)).unwrap();
    pool.check().unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 1200);
    pool.release_pool((1, 0)).unwrap();
    assert_eq!(pool.stats().private_pool_bytes.current, 0);
    pool.check().unwrap();
}
