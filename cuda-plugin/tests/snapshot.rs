//! PyTorch's memory snapshot from the pool, on the simulated driver: the segment walk
//! (blocks tile their segments; the sums are the pool's statistics) and the history
//! (replaying the recorded entries from an empty pool rebuilds exactly the blocks and the
//! device memory the walk lists; the ring keeps the newest `max_entries`; recording off
//! records nothing).
//!
//! Recording is process-wide, so the tests here take one lock.

use poolside_cuda::config::PluginConfig;
use poolside_cuda::driver::sim::SimDriver;
use poolside_cuda::pool::history::{set_recording, Action, TraceEntry};
use poolside_cuda::pool::walk::{BlockState, SegmentInfo};
use poolside_cuda::pool::DevicePool;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

const MIB: usize = 1 << 20;
const SIDE: u64 = 9;
static RECORDING: Mutex<()> = Mutex::new(());

fn setup(conf: &str) -> (Arc<SimDriver>, DevicePool) {
    let driver = Arc::new(SimDriver::new(1, 8 << 30));
    let mut cfg = PluginConfig::default();
    cfg.apply("TEST", conf, true);
    let pool = DevicePool::new(driver.clone(), 0, &cfg).unwrap();
    (driver, pool)
}

fn rng(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Allocations and frees of all sizes on three streams, record_stream on a busy side
/// stream (blocks left pending), and one partial release of cached memory. Returns the
/// live blocks: address -> requested bytes.
fn workload(driver: &SimDriver, pool: &DevicePool, seed: u64) -> HashMap<u64, u64> {
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut x = seed;
    driver.launch(0, SIDE, 0, 0); // the side stream stays busy: its events never complete
    for i in 0..1500 {
        if i == 900 {
            pool.empty_cache(); // waits for pending frees, releases every cached byte
            driver.launch(0, SIDE, 0, 0);
        }
        if !rng(&mut x).is_multiple_of(3) || live.is_empty() {
            let size = match rng(&mut x) % 4 {
                0 => (rng(&mut x) % 4096) + 1,
                1 => (rng(&mut x) % MIB as u64) + 1,
                _ => (rng(&mut x) % (24 * MIB as u64)) + MIB as u64 + 1,
            };
            let p = pool.malloc(size as usize, rng(&mut x) % 3).unwrap();
            live.push((p, size));
        } else {
            let k = (rng(&mut x) as usize) % live.len();
            let (p, _) = live.swap_remove(k);
            if rng(&mut x).is_multiple_of(7) {
                pool.record_stream(p, SIDE).unwrap();
            }
            pool.free(p).unwrap();
        }
    }
    live.into_iter().collect()
}

/// Checks the walk against the pool's statistics and the caller's live blocks.
fn check_walk(pool: &DevicePool, segs: &[SegmentInfo], live: &HashMap<u64, u64>) {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut allocated = HashMap::new();
    let (mut pending, mut pending_req) = (0u64, 0u64);
    for s in segs {
        assert!(s.total_size > 0 && !s.blocks.is_empty(), "{s:?}");
        let mut at = s.address;
        for b in &s.blocks {
            assert_eq!(b.address, at, "blocks tile the segment");
            assert!(b.size > 0);
            at += b.size;
            match b.state {
                BlockState::ActiveAllocated => {
                    assert!(b.requested_size <= b.size);
                    allocated.insert(b.address, b.requested_size);
                }
                BlockState::ActivePendingFree => {
                    pending += b.size;
                    pending_req += b.requested_size;
                }
                BlockState::Inactive => assert_eq!(b.requested_size, 0),
            }
        }
        assert_eq!(at, s.address + s.total_size);
        assert!(s.active_size() >= s.allocated_size());
        ranges.push((s.address, s.total_size));
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "segments overlap: {w:?}");
    }
    assert_eq!(
        &allocated, live,
        "active_allocated blocks are the live blocks"
    );
    let st = pool.stats();
    let total: u64 = segs.iter().map(|s| s.total_size).sum();
    assert_eq!(
        total, st.reserved_bytes.current,
        "segments add up to reserved"
    );
    // As in PyTorch: blocks pending free (record_stream) are active, not allocated.
    let active: u64 = segs.iter().map(|s| s.active_size()).sum();
    assert_eq!(
        active, st.active_bytes.current,
        "active blocks add up to active"
    );
    let requested: u64 = segs.iter().map(|s| s.requested_size()).sum();
    assert_eq!(requested, st.requested_bytes.current + pending_req);
    assert_eq!(
        segs.iter().map(|s| s.allocated_size()).sum::<u64>(),
        st.allocated_bytes.current,
        "allocated blocks add up to allocated"
    );
    assert_eq!(
        segs.iter().map(|s| s.allocated_size()).sum::<u64>() + pending,
        active
    );
}

/// Replays `trace` from an empty pool: device memory (address -> (end, how it was
/// obtained)) and blocks (address -> requested), checking that each entry makes sense
/// where it happens (a block lies in device memory; a free names a live block; a segment
/// released holds no block).
fn replay(trace: &[TraceEntry]) -> (BTreeMap<u64, u64>, HashMap<u64, u64>) {
    let mut mem: BTreeMap<u64, u64> = BTreeMap::new(); // start -> end, contiguous runs merged
    let mut blocks: HashMap<u64, u64> = HashMap::new();
    let mut requested: HashMap<u64, u64> = HashMap::new();
    let covered = |mem: &BTreeMap<u64, u64>, a: u64, n: u64| {
        mem.range(..=a)
            .next_back()
            .is_some_and(|(_, &e)| a + n <= e)
    };
    for e in trace {
        match e.action {
            Action::SegmentAlloc | Action::SegmentMap => {
                assert!(!covered(&mem, e.addr, 1), "{e:?} maps mapped memory");
                mem.insert(e.addr, e.addr + e.size);
                // Merge with neighbours so that a block spanning two maps is covered.
                let runs: Vec<(u64, u64)> = mem.iter().map(|(&a, &b)| (a, b)).collect();
                mem.clear();
                for (a, b) in runs {
                    match mem.iter_mut().next_back() {
                        Some((_, end)) if *end == a => *end = b,
                        _ => {
                            mem.insert(a, b);
                        }
                    }
                }
            }
            Action::SegmentFree | Action::SegmentUnmap => {
                let (&start, &end) = mem.range(..=e.addr).next_back().expect("unmap of unmapped");
                assert!(e.addr + e.size <= end, "{e:?} releases unmapped memory");
                assert!(
                    !blocks.keys().any(|&b| b < e.addr + e.size && b >= e.addr),
                    "{e:?} releases memory under a live block"
                );
                mem.remove(&start);
                if start < e.addr {
                    mem.insert(start, e.addr);
                }
                if e.addr + e.size < end {
                    mem.insert(e.addr + e.size, end);
                }
            }
            Action::Alloc => {
                assert!(covered(&mem, e.addr, 1), "{e:?} outside device memory");
                assert!(blocks.insert(e.addr, e.size).is_none(), "{e:?} twice");
                requested.insert(e.addr, e.size);
            }
            Action::FreeRequested => {
                assert_eq!(requested.remove(&e.addr), Some(e.size), "{e:?}");
            }
            Action::FreeCompleted => {
                assert_eq!(blocks.remove(&e.addr), Some(e.size), "{e:?}");
            }
            Action::Oom => {}
        }
    }
    (mem, requested)
}

#[test]
fn the_walk_lists_every_block_and_adds_up_to_the_statistics() {
    let _g = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
    for conf in ["", "expandable_segments:false"] {
        let (driver, pool) = setup(conf);
        let live = workload(&driver, &pool, 7);
        let segs = pool.segments();
        check_walk(&pool, &segs, &live);
        let expandable = conf.is_empty();
        assert!(segs
            .iter()
            .all(|s| s.expandable == expandable && s.device == 0));
        // Small blocks share the stream's expandable segment with large ones; cuMemAlloc
        // mode gives them 2 MiB segments of their own, listed as PyTorch's small pool.
        assert!(segs.iter().any(|s| s.large));
        assert_eq!(segs.iter().any(|s| !s.large), !expandable);
        assert!(
            segs.iter()
                .flat_map(|s| &s.blocks)
                .any(|b| b.state == BlockState::ActivePendingFree),
            "record_stream on a busy stream leaves blocks pending"
        );
        assert_eq!(
            segs.iter()
                .map(|s| s.stream)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            3
        );
        // Everything freed and released: no segment is left.
        driver.complete_events();
        for p in live.keys() {
            pool.free(*p).unwrap();
        }
        pool.empty_cache();
        assert_eq!(pool.segments(), []);
    }
}

#[test]
fn the_history_replays_to_the_state_the_walk_lists() {
    let _g = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
    for conf in ["", "expandable_segments:false"] {
        let (driver, pool) = setup(conf);
        set_recording(true, usize::MAX, 0);
        let live = workload(&driver, &pool, 11);
        // An out-of-memory is recorded with the free memory and the request.
        assert!(pool.malloc(64 << 30, 0).is_err());
        let trace = pool.history();
        set_recording(false, 0, 0);
        pool.clear_history();
        for a in [
            Action::Alloc,
            Action::FreeRequested,
            Action::FreeCompleted,
            Action::Oom,
        ] {
            assert!(trace.iter().any(|e| e.action == a), "no {a:?}");
        }
        let (seg_new, seg_gone) = if conf.is_empty() {
            (Action::SegmentMap, Action::SegmentUnmap)
        } else {
            (Action::SegmentAlloc, Action::SegmentFree)
        };
        assert!(trace.iter().any(|e| e.action == seg_new));
        assert!(
            trace.iter().any(|e| e.action == seg_gone),
            "empty_cache releases"
        );
        let oom = trace.iter().find(|e| e.action == Action::Oom).unwrap();
        assert_eq!(oom.size, 64 << 30);
        assert_eq!(oom.addr, pool.stats().free_memory);
        assert!(trace.windows(2).all(|w| w[0].time_us <= w[1].time_us));

        let (mem, requested) = replay(&trace);
        assert_eq!(&requested, &live, "replayed live blocks are the pool's");
        // The device memory the entries leave is the memory the segments cover.
        let mut segs: Vec<(u64, u64)> = pool
            .segments()
            .iter()
            .map(|s| (s.address, s.address + s.total_size))
            .collect();
        segs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (a, b) in segs {
            match merged.last_mut() {
                Some((_, end)) if *end == a => *end = b,
                _ => merged.push((a, b)),
            }
        }
        assert_eq!(mem.into_iter().collect::<Vec<_>>(), merged);
        // Nothing is recorded while recording is off.
        let p = pool.malloc(MIB, 0).unwrap();
        pool.free(p).unwrap();
        assert!(pool.history().is_empty());
    }
}

#[test]
fn the_ring_keeps_the_newest_max_entries() {
    let _g = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
    let run = |max: usize| {
        let (driver, pool) = setup("");
        set_recording(true, max, 0);
        let ptrs: Vec<u64> = (0..50)
            .map(|i| pool.malloc(512 * (i + 1), 0).unwrap())
            .collect();
        (driver, pool, ptrs)
    };
    let key = |t: &[TraceEntry]| t.iter().map(|e| (e.action, e.size)).collect::<Vec<_>>();
    let (_d, all, _) = run(usize::MAX);
    let full = all.history();
    all.clear_history();
    assert!(full.len() > 50, "allocs and the pages they mapped");
    let (_driver, pool, ptrs) = run(10);
    let trace = pool.history();
    assert_eq!(key(&trace), key(&full[full.len() - 10..]));
    assert_eq!(trace[9].addr, ptrs[49]);
    // A lower bound keeps the newest; skipped actions are not recorded.
    pool.bound_history(4);
    assert_eq!(pool.history().len(), 4);
    assert_eq!(pool.history()[3].addr, ptrs[49]);
    set_recording(true, 4, 1 << Action::FreeRequested as u32);
    pool.free(ptrs[0]).unwrap();
    let t = pool.history();
    assert_eq!(t.len(), 4);
    assert_eq!(t[3].action, Action::FreeCompleted);
    assert!(t.iter().all(|e| e.action != Action::FreeRequested));
    set_recording(false, 0, 0);
    pool.clear_history();
    assert!(pool.history().is_empty());
}

/// Not a test: prints the host cost of an allocate + free pair (served from the cache)
/// with recording off and on. Run with
/// `cargo test --release -p poolside-cuda --test snapshot -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_recording_cost() {
    let _g = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
    let (_driver, pool) = setup("");
    let pairs = 2_000_000u32;
    for size in [512usize, 8 << 20] {
        for (on, name) in [(false, "off"), (true, "on (max_entries 100000)")] {
            set_recording(on, 100_000, 0);
            let t = std::time::Instant::now();
            for _ in 0..pairs {
                let p = pool.malloc(std::hint::black_box(size), 0).unwrap();
                pool.free(p).unwrap();
            }
            let ns = t.elapsed().as_nanos() as f64 / pairs as f64;
            println!("{size} B: recording {name}: {ns:.1} ns per pair");
            set_recording(false, 0, 0);
            pool.clear_history();
        }
    }
}

#[test]
fn a_released_graph_pool_is_traced_and_listed_with_its_id() {
    let _g = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
    for conf in ["", "expandable_segments:false"] {
        let (_driver, pool) = setup(conf);
        set_recording(true, usize::MAX, 0);
        let filter = poolside_cuda::pool::graph_pool::Filter::new(|s| s == 0x7000);
        assert!(pool.begin_allocate_to_pool((3, 4), filter).is_ok());
        let graph: Vec<u64> = [512usize, 200_000, 12 * MIB]
            .iter()
            .map(|&n| pool.malloc(n, 0x7000).unwrap())
            .collect();
        pool.end_allocate_to_pool((3, 4)).unwrap();
        let other = pool.malloc(3 * MIB, 1).unwrap();
        let segs = pool.segments();
        let private: Vec<_> = segs.iter().filter(|s| s.pool_id == (3, 4)).collect();
        assert!(!private.is_empty() && private.iter().all(|s| s.stream == 0x7000));
        assert!(segs.iter().any(|s| s.pool_id == (0, 0) && s.stream == 1));
        pool.release_pool((3, 4)).unwrap();
        for p in graph {
            pool.free(p).unwrap(); // the last free lets the pool's memory go
        }
        let trace = pool.history();
        set_recording(false, 0, 0);
        pool.clear_history();
        let (mem, requested) = replay(&trace);
        assert_eq!(requested, HashMap::from([(other, 3 * MIB as u64)]));
        let segs = pool.segments();
        assert!(segs.iter().all(|s| s.pool_id == (0, 0)), "{segs:?}");
        let reserved: u64 = mem.iter().map(|(a, b)| b - a).sum();
        assert_eq!(reserved, pool.stats().reserved_bytes.current);
        assert_eq!(reserved, segs.iter().map(|s| s.total_size).sum::<u64>());
    }
}
