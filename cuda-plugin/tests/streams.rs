//! Stream safety on the simulated driver: record_stream, events that are not ready yet,
//! events whose creation, record, query or wait fails, synchronizes that fail, the
//! back-off, the event pool, and which device contexts the pool opens.
//!
//! The oracle is the simulated device itself: work launched on a stream names the bytes
//! it touches until it finishes, so [`SimDriver::in_use_elsewhere`] says whether a block
//! the pool hands out is still used by another stream (the race record_stream prevents).

use poolside_cuda::config::PluginConfig;
use poolside_cuda::driver::sim::{SimCall, SimDriver, CUDA_ERROR_LAUNCH_FAILED};
use poolside_cuda::driver::DevPtr;
use poolside_cuda::pool::pending::MAX_BACKOFF;
use poolside_cuda::pool::DevicePool;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

const MIB: usize = 1 << 20;
const MAIN: u64 = 1;
const SIDE: u64 = 2;
const FAIL: i32 = CUDA_ERROR_LAUNCH_FAILED;

/// Counts this thread's heap allocations, to prove the free path allocates nothing.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// const-initialized thread-local Cell, which neither allocates nor needs a destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract for alloc is passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: p was allocated by System with layout l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: as in dealloc; n is the caller's new size.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

fn setup() -> (Arc<SimDriver>, DevicePool) {
    let driver = Arc::new(SimDriver::new(2, 1 << 30));
    let pool = DevicePool::new(driver.clone(), 0, &PluginConfig::default()).unwrap();
    (driver, pool)
}

/// Allocates on `stream` and checks that no other stream still uses the block.
fn malloc(d: &SimDriver, pool: &DevicePool, size: usize, stream: u64) -> DevPtr {
    let p = pool.malloc(size, stream).unwrap();
    assert!(
        !d.in_use_elsewhere(0, p, size as u64, stream),
        "block {p:#x} handed to stream {stream} while another stream still uses it"
    );
    p
}

/// The GPU test's scenario: a block filled on a busy side stream, record_stream, free.
fn use_on_side_and_free(d: &SimDriver, pool: &DevicePool, size: usize) -> DevPtr {
    let x = malloc(d, pool, size, MAIN);
    d.launch(0, SIDE, 0, 0); // torch.cuda._sleep: the side stream is busy
    d.launch(0, SIDE, x, size as u64); // x.fill_(1) on the side stream
    pool.record_stream(x, SIDE).unwrap();
    pool.free(x).unwrap();
    x
}

#[test]
fn a_block_waits_while_its_side_stream_runs() {
    for size in [4 * MIB, 1000] {
        let (d, pool) = setup();
        let x = use_on_side_and_free(&d, &pool, size);
        assert_eq!(pool.pending(), 1);
        let y = malloc(&d, &pool, size, MAIN);
        assert!(d.busy(0, SIDE), "the side stream is still busy");
        assert_ne!(x, y, "reused while the side stream runs");
        d.advance(0, SIDE, 1); // the sleep ends; the fill still runs
        assert_ne!(x, malloc(&d, &pool, size, MAIN));
        d.advance(0, SIDE, 1);
        assert_eq!(x, malloc(&d, &pool, size, MAIN), "the stream finished");
        assert_eq!(pool.pending(), 0);
        let s = pool.stats();
        assert_eq!(
            (
                s.event_record_failures,
                s.event_query_failures,
                s.sync_fallbacks
            ),
            (0, 0, 0)
        );
        pool.check().unwrap();
        assert_eq!(d.misuse(), 0);
    }
}

#[test]
fn every_stream_that_used_the_block_must_finish() {
    let (d, pool) = setup();
    let a = malloc(&d, &pool, 4 * MIB, MAIN);
    for s in [7, 8] {
        d.launch(0, s, a, 4096);
    }
    pool.record_stream(a, 7).unwrap();
    pool.record_stream(a + 4096, 8).unwrap(); // an interior pointer names the block too
    pool.record_stream(a, MAIN).unwrap(); // its own stream: nothing to wait for
    pool.free(a).unwrap();
    assert_eq!(d.live_events(), 2);
    assert_ne!(a, malloc(&d, &pool, 4 * MIB, MAIN));
    d.complete_stream(7);
    assert_ne!(
        a,
        malloc(&d, &pool, 4 * MIB, MAIN),
        "stream 8 has not finished"
    );
    d.complete_stream(8);
    assert_eq!(a, malloc(&d, &pool, 4 * MIB, MAIN));
    assert_eq!(pool.pooled_events(), 2, "both events back in the pool");
    assert!(pool.record_stream(12345, 1).is_err());
    pool.check().unwrap();
}

#[test]
fn only_work_queued_before_the_free_is_waited_for() {
    let (d, pool) = setup();
    // An idle stream: its event is complete at once, and so is the block.
    let a = malloc(&d, &pool, 4 * MIB, MAIN);
    pool.record_stream(a, SIDE).unwrap();
    pool.free(a).unwrap();
    assert_eq!(a, malloc(&d, &pool, 4 * MIB, MAIN));
    // Work launched after the free does not hold the block.
    let b = malloc(&d, &pool, 4 * MIB, MAIN);
    d.launch(0, SIDE, b, 64);
    pool.record_stream(b, SIDE).unwrap();
    pool.free(b).unwrap();
    d.launch(0, SIDE, 0, 0);
    d.advance(0, SIDE, 1);
    assert!(d.busy(0, SIDE));
    assert_eq!(b, malloc(&d, &pool, 4 * MIB, MAIN));
}

#[test]
fn the_free_path_reuses_events_and_allocates_nothing_once_warm() {
    let (d, pool) = setup();
    let cycle = |check: bool| {
        let x = malloc(&d, &pool, 4 * MIB, MAIN);
        d.launch(0, SIDE, x, 64);
        let before = allocs();
        pool.record_stream(x, SIDE).unwrap();
        pool.free(x).unwrap();
        let y = pool.malloc(4 * MIB, MAIN).unwrap(); // polls the pending block
        if check {
            assert_eq!(allocs(), before, "record_stream, free and malloc allocated");
        }
        d.complete_stream(SIDE);
        pool.free(y).unwrap();
    };
    for _ in 0..8 {
        cycle(false);
    }
    let created = d.events_created();
    for _ in 0..200 {
        cycle(true);
    }
    assert_eq!(
        d.events_created(),
        created,
        "events are reused, not created per free"
    );
    assert!(
        created <= 2,
        "{created} events for one block in flight at a time"
    );
    assert_eq!(d.calls(SimCall::Synchronize), 0);
    pool.check().unwrap();
}

#[test]
fn record_failure_then_synchronize_failure_keeps_the_block_out() {
    for call in [SimCall::RecordEvent, SimCall::CreateEvent] {
        let (d, pool) = setup();
        let a = malloc(&d, &pool, 4 * MIB, MAIN);
        d.launch(0, SIDE, a, 4 * MIB as u64);
        pool.record_stream(a, SIDE).unwrap();
        d.inject(call, 0, 1, FAIL);
        d.inject(SimCall::Synchronize, 0, u64::MAX, FAIL);
        pool.free(a).unwrap();
        assert_eq!(pool.pending(), 1, "{call:?}: no event and no synchronize");
        for _ in 0..70 {
            let b = malloc(&d, &pool, 4 * MIB, MAIN);
            assert_ne!(a, b, "{call:?}: handed out without any wait");
            pool.free(b).unwrap();
        }
        pool.empty_cache(); // waits, so it tries again, and fails again
        assert_eq!(pool.pending(), 1);
        pool.check().unwrap();
        let s = pool.stats();
        assert_eq!(s.event_record_failures, 1);
        // One at the free, then backed off: far fewer than one per malloc.
        let syncs = d.calls(SimCall::Synchronize);
        assert_eq!(
            s.sync_fallbacks,
            1 + 6 + 1,
            "at the free; at mallocs 1, 3, 7, 15, 31, 63; at empty_cache"
        );
        assert!(syncs >= s.sync_fallbacks);
        d.clear_faults();
        pool.empty_cache();
        assert_eq!(pool.pending(), 0, "a synchronize that works releases it");
        assert!(!d.busy(0, SIDE));
        assert_eq!(a, malloc(&d, &pool, 4 * MIB, MAIN));
        pool.check().unwrap();
        assert_eq!(d.misuse(), 0);
    }
}

#[test]
fn record_failure_with_a_working_synchronize_releases_at_once() {
    let (d, pool) = setup();
    let a = malloc(&d, &pool, 4 * MIB, MAIN);
    d.launch(0, SIDE, a, 64);
    pool.record_stream(a, SIDE).unwrap();
    pool.record_stream(a, 9).unwrap();
    d.inject(SimCall::RecordEvent, 1, 1, FAIL); // the second stream's record fails
    pool.free(a).unwrap();
    assert_eq!(pool.pending(), 0);
    assert!(
        !d.busy(0, SIDE),
        "the synchronize waited for the side stream"
    );
    let s = pool.stats();
    assert_eq!((s.event_record_failures, s.sync_fallbacks), (1, 1));
    assert_eq!(pool.pooled_events(), 1, "the event that recorded is kept");
    assert_eq!(a, malloc(&d, &pool, 4 * MIB, MAIN));
    pool.check().unwrap();
    assert_eq!(d.misuse(), 0);
}

#[test]
fn a_failing_query_backs_off_instead_of_synchronizing_every_malloc() {
    // Room for the blocks that wait between synchronizes, so that no out-of-memory
    // retry (which always waits) muddles the count.
    let d = Arc::new(SimDriver::new(1, 64 << 30));
    let pool = DevicePool::new(d.clone(), 0, &PluginConfig::default()).unwrap();
    d.inject(SimCall::QueryEvent, 0, u64::MAX, FAIL);
    let n = 3000;
    for _ in 0..n {
        use_on_side_and_free(&d, &pool, 4 * MIB);
        let y = malloc(&d, &pool, 4 * MIB, MAIN);
        pool.free(y).unwrap();
    }
    let s = pool.stats();
    assert_eq!(s.event_query_failures, d.calls(SimCall::QueryEvent));
    assert!(s.event_query_failures > 0);
    assert_eq!(s.sync_fallbacks, d.calls(SimCall::Synchronize));
    // At most one process_pending per malloc (2n); doubling to MAX_BACKOFF gives
    // log2(MAX_BACKOFF) + 2n / MAX_BACKOFF synchronizes, plus the first.
    assert_eq!(pool.stats().alloc_retries, 0);
    let bound = 12 + 2 * n / MAX_BACKOFF;
    assert!(
        s.sync_fallbacks <= bound,
        "{} synchronizes for {n} mallocs",
        s.sync_fallbacks
    );
    pool.empty_cache();
    assert_eq!(pool.pending(), 0);
    pool.check().unwrap();
    assert_eq!(d.misuse(), 0);
}

#[test]
fn one_query_failure_synchronizes_once_then_events_work_again() {
    let (d, pool) = setup();
    d.inject(SimCall::QueryEvent, 0, 1, FAIL);
    let x = use_on_side_and_free(&d, &pool, 4 * MIB);
    let y = malloc(&d, &pool, 4 * MIB, MAIN); // the query fails: synchronize at once
    assert_eq!(
        x, y,
        "the synchronize finished the side stream; the block is back"
    );
    assert_eq!(pool.pending(), 0);
    pool.free(y).unwrap();
    // Queries work from here: blocks come back through their events only.
    for _ in 0..20 {
        let x = use_on_side_and_free(&d, &pool, 4 * MIB);
        assert_ne!(x, malloc(&d, &pool, 4 * MIB, MAIN));
        d.complete_stream(SIDE);
    }
    let s = pool.stats();
    assert_eq!((s.event_query_failures, s.sync_fallbacks), (1, 1));
    assert_eq!(d.calls(SimCall::Synchronize), 1);
    pool.check().unwrap();
}

#[test]
fn a_failing_wait_in_empty_cache_or_oom_falls_back_to_synchronize() {
    let (d, pool) = setup();
    use_on_side_and_free(&d, &pool, 60 * MIB);
    d.inject(SimCall::SyncEvent, 0, 1, FAIL);
    pool.empty_cache();
    assert_eq!(pool.pending(), 0);
    let s = pool.stats();
    assert_eq!((s.event_query_failures, s.sync_fallbacks), (1, 1));
    assert_eq!(pool.stats().reserved_bytes.current, 0);
    pool.check().unwrap();
    assert_eq!(d.misuse(), 0);
}

#[test]
fn oom_waits_for_pending_frees_in_step_two() {
    let driver = Arc::new(SimDriver::new(1, 100 << 20));
    let pool = DevicePool::new(driver.clone(), 0, &PluginConfig::default()).unwrap();
    let a = use_on_side_and_free(&driver, &pool, 60 * MIB);
    assert_eq!(pool.pending(), 1);
    // Step 1 cannot use the pending block; step 2 waits for its event.
    let b = malloc(&driver, &pool, 80 * MIB, MAIN);
    assert_eq!(pool.pending(), 0);
    assert_eq!(pool.stats().alloc_retries, 2);
    assert_eq!(pool.stats().sync_fallbacks, 0, "the event wait worked");
    assert!(b != a || !driver.busy(0, SIDE));
    pool.free(b).unwrap();
    pool.check().unwrap();
}

#[test]
fn random_streams_and_failures_never_hand_out_a_block_in_use() {
    let faults = [
        None,
        Some(SimCall::QueryEvent),
        Some(SimCall::RecordEvent),
        Some(SimCall::CreateEvent),
        Some(SimCall::SyncEvent),
        Some(SimCall::Synchronize),
    ];
    for fault in faults {
        let (d, pool) = setup();
        let mut x = 0x9E37_79B9u64;
        let mut rng = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut live: Vec<(DevPtr, usize, u64)> = Vec::new();
        for i in 0..3000 {
            if let Some(call) = fault {
                if i % 100 == 0 {
                    d.inject(call, rng() % 5, 1 + rng() % 20, FAIL);
                }
            }
            match rng() % 6 {
                0 | 1 if live.len() < 40 => {
                    let size = if rng() % 2 == 0 {
                        (rng() % 100_000) as usize + 1
                    } else {
                        (rng() % (8 * MIB as u64)) as usize + MIB + 1
                    };
                    let stream = 1 + rng() % 3;
                    // An injected synchronize failure can leave too little to release.
                    if let Ok(p) = pool.malloc(size, stream) {
                        assert!(
                            !d.in_use_elsewhere(0, p, size as u64, stream),
                            "{fault:?} at {i}: {p:#x} handed out while another stream uses it"
                        );
                        live.push((p, size, stream));
                    }
                }
                2 if !live.is_empty() => {
                    // A kernel on another stream uses a block: record_stream first.
                    let (p, size, own) = live[(rng() as usize) % live.len()];
                    let other = 1 + (own + rng() % 2) % 3;
                    if pool.record_stream(p + (rng() % size as u64), other).is_ok() {
                        d.launch(0, other, p, size as u64);
                    }
                }
                0 | 1 | 3 if !live.is_empty() => {
                    let k = (rng() as usize) % live.len();
                    pool.free(live.swap_remove(k).0).unwrap();
                }
                4 => d.advance(0, 1 + rng() % 3, 1 + rng() % 3),
                _ => {}
            }
            if i % 300 == 299 {
                pool.empty_cache(); // waits for events: sync_event
            }
            if i % 250 == 0 {
                pool.check()
                    .unwrap_or_else(|e| panic!("{fault:?} at {i}: {e}"));
            }
        }
        d.clear_faults();
        for (p, _, _) in live {
            pool.free(p).unwrap();
        }
        pool.empty_cache();
        assert_eq!(pool.pending(), 0, "{fault:?}");
        assert_eq!(pool.stats().reserved_bytes.current, 0, "{fault:?}");
        pool.check().unwrap();
        assert_eq!(d.misuse(), 0, "{fault:?}");
        let s = pool.stats();
        if fault.is_some_and(|f| f != SimCall::Synchronize) {
            assert!(
                s.event_record_failures + s.event_query_failures > 0,
                "{fault:?}: the injection never hit"
            );
        }
    }
}

#[test]
fn a_pool_opens_only_its_own_device() {
    let d = Arc::new(SimDriver::new(3, 1 << 30));
    assert!(!(0..3).any(|i| d.opened(i)));
    let pool = DevicePool::new(d.clone(), 1, &PluginConfig::default()).unwrap();
    let p = pool.malloc(MIB, 0).unwrap();
    pool.free(p).unwrap();
    assert_eq!(
        [d.opened(0), d.opened(1), d.opened(2)],
        [false, true, false]
    );
    assert_eq!(d.misuse(), 0, "no call named a device before opening it");
}
