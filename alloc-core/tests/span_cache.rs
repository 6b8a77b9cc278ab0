//! The heap span cache (`host::heap::spans`): a thread whose pages empty and refill gets and
//! returns spans without the arena lock; what it keeps is bounded, counted as cached, and
//! handed back when the thread exits or forces a collect.
//!
//! The tests count the process-wide arena lock and cache: run them one at a time.

use poolside::host::arena::ARENA;
use poolside::host::heap::spans::{CACHED, CACHE_BYTES};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

const BLOCK: usize = 8 << 10;
/// 8 KiB blocks in 8 one-unit spans: two spans' worth past the current page.
const BLOCKS: usize = 64;

fn fill_and_free() {
    let blocks: Vec<*mut u8> = (0..BLOCKS).map(|_| poolside::alloc(BLOCK, 8)).collect();
    for &p in &blocks {
        assert!(!p.is_null());
        // SAFETY: a live block of BLOCK bytes.
        unsafe { p.write_bytes(7, BLOCK) };
    }
    for p in blocks {
        // SAFETY: live blocks of ours, freed once.
        unsafe { poolside::free(p) };
    }
}

#[test]
fn pages_that_empty_and_refill_take_no_arena_lock() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::spawn(|| {
        fill_and_free();
        let (before, _) = ARENA.counts();
        for _ in 0..200 {
            fill_and_free();
        }
        let (after, _) = ARENA.counts();
        // Each round empties 7 spans and takes 7 back: 2,800 acquisitions without the
        // cache. A fold may find the cache unused and flush it, once per fold interval.
        assert!(
            after - before < 40,
            "200 rounds took the arena lock {} times",
            after - before
        );
    })
    .join()
    .unwrap();
}

#[test]
fn the_cache_is_bounded_and_returned_at_exit_and_collect() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let start = CACHED.load(Ordering::Relaxed);
    std::thread::spawn(move || {
        // 32 MiB of 8 KiB blocks freed at once: far beyond the bound.
        let blocks: Vec<*mut u8> = (0..4096).map(|_| poolside::alloc(BLOCK, 8)).collect();
        for p in blocks {
            assert!(!p.is_null());
            // SAFETY: live blocks of ours, freed once.
            unsafe { poolside::free(p) };
        }
        let kept = CACHED.load(Ordering::Relaxed) - start;
        assert!(kept > 0, "nothing cached");
        assert!(
            kept <= CACHE_BYTES,
            "{kept} bytes cached, bound {CACHE_BYTES}"
        );
        // Published as cached memory (returnable), not as fragmentation.
        poolside::flush_stats();
        let s = poolside::stats_snapshot();
        assert!(s.cached_bytes as usize >= kept, "{s:?}");
    })
    .join()
    .unwrap();
    assert_eq!(
        CACHED.load(Ordering::Relaxed),
        start,
        "an exited thread's heap keeps no span"
    );

    fill_and_free();
    let kept = CACHED.load(Ordering::Relaxed);
    assert!(kept > start);
    // An unforced collect keeps the cache (as it keeps current pages); a forced one
    // returns it.
    poolside::collect(false);
    assert_eq!(CACHED.load(Ordering::Relaxed), kept);
    poolside::collect(true);
    assert_eq!(
        CACHED.load(Ordering::Relaxed),
        0,
        "a forced collect returns the cache"
    );
}
