//! The counters add up: after N allocations of S bytes, the host section shows exactly N
//! more allocations of S's class, N × class size more live bytes, and hits + misses = N.

use poolside::size_class::{class_of, class_size};
use poolside::stats::layout::LARGE_SLOT;

#[test]
fn counters_match_what_the_thread_did() {
    // A fresh thread with its own heap: nothing else touches its counters.
    std::thread::spawn(|| {
        let (n, size) = (1000usize, 100usize);
        let c = class_of(size);
        poolside::flush_stats();
        let before = poolside::stats_snapshot().classes[c];
        let blocks: Vec<usize> = (0..n).map(|_| poolside::alloc(size, 8) as usize).collect();
        poolside::flush_stats();
        let mid = poolside::stats_snapshot().classes[c];
        assert_eq!(mid.allocs - before.allocs, n as u64);
        assert_eq!(
            mid.live_bytes - before.live_bytes,
            (n * class_size(c)) as u64
        );
        assert_eq!(
            (mid.hits + mid.misses) - (before.hits + before.misses),
            n as u64
        );
        assert!(mid.misses > before.misses, "a fresh heap needs fresh pages");
        assert_eq!(
            mid.requested_bytes - before.requested_bytes,
            (n * size) as u64
        );
        assert!(mid.reserved_bytes >= mid.live_bytes, "{mid:?}");
        for b in blocks {
            // SAFETY: allocated above, freed once.
            unsafe { poolside::free(b as *mut u8) };
        }
        poolside::flush_stats();
        let after = poolside::stats_snapshot().classes[c];
        assert_eq!(after.frees - mid.frees, n as u64);
        assert_eq!(after.live_bytes, before.live_bytes);
    })
    .join()
    .unwrap();
}

#[test]
fn pages_that_fill_and_give_blocks_back_stay_counted() {
    // A fold reads a sum for the full pages instead of walking them (heap::counters):
    // pages go full, get blocks back, and fill again, and every fold must still see
    // each block.
    std::thread::spawn(|| {
        let (n, size) = (6000usize, 200usize);
        let c = class_of(size);
        assert!(c != class_of(100) && c != class_of(300));
        let cs = class_size(c) as u64;
        let check =
            |before: &poolside::stats::layout::ClassCounters, allocs: usize, live: usize| {
                poolside::flush_stats();
                let now = poolside::stats_snapshot().classes[c];
                assert_eq!(now.allocs - before.allocs, allocs as u64, "{now:?}");
                assert_eq!(now.frees - before.frees, (allocs - live) as u64, "{now:?}");
                assert_eq!(
                    now.live_bytes - before.live_bytes,
                    live as u64 * cs,
                    "{now:?}"
                );
            };
        poolside::flush_stats();
        let before = poolside::stats_snapshot().classes[c];
        let mut blocks: Vec<usize> = (0..n).map(|_| poolside::alloc(size, 8) as usize).collect();
        check(&before, n, n);
        // Every second block back: each full page leaves the full list.
        for b in blocks.iter_mut().step_by(2) {
            // SAFETY: allocated above, freed once.
            unsafe { poolside::free(*b as *mut u8) };
        }
        check(&before, n, n / 2);
        // Refilled, the pages go full again.
        for b in blocks.iter_mut().step_by(2) {
            *b = poolside::alloc(size, 8) as usize;
        }
        check(&before, n + n / 2, n);
        for b in blocks {
            // SAFETY: allocated above, freed once.
            unsafe { poolside::free(b as *mut u8) };
        }
        check(&before, n + n / 2, 0);
    })
    .join()
    .unwrap();
}

#[test]
fn requested_bytes_of_mixed_sizes_stay_within_the_class_range() {
    // Requested bytes are sampled at each refill of a page (see heap::counters): with
    // sizes that vary inside one class the figure is an estimate, bounded by the sizes.
    std::thread::spawn(|| {
        let n = 5000usize;
        // Another class than counters_match_what_the_thread_did's (100 B): the harness runs
        // both at once, and class counters are process-wide, so sharing a class let one
        // test's fold land between the other's two snapshots.
        let sizes = [300usize, 301, 302, 303, 304];
        let c = class_of(sizes[0]);
        assert!(sizes.iter().all(|&s| class_of(s) == c));
        assert_ne!(c, class_of(100));
        poolside::flush_stats();
        let before = poolside::stats_snapshot().classes[c];
        let blocks: Vec<usize> = (0..n)
            .map(|i| poolside::alloc(sizes[i % sizes.len()], 8) as usize)
            .collect();
        poolside::flush_stats();
        let mid = poolside::stats_snapshot().classes[c];
        assert_eq!(mid.allocs - before.allocs, n as u64);
        let requested = mid.requested_bytes - before.requested_bytes;
        assert!(
            (n * sizes[0]) as u64 <= requested && requested <= (n * sizes[4]) as u64,
            "{requested}"
        );
        for b in blocks {
            // SAFETY: allocated above, freed once.
            unsafe { poolside::free(b as *mut u8) };
        }
    })
    .join()
    .unwrap();
}

#[test]
fn large_blocks_are_counted_exactly() {
    let before = poolside::stats_snapshot().classes[LARGE_SLOT];
    let p = poolside::alloc(3 << 20, 8);
    let mid = poolside::stats_snapshot().classes[LARGE_SLOT];
    assert_eq!(mid.allocs - before.allocs, 1);
    assert_eq!(mid.requested_bytes - before.requested_bytes, 3 << 20);
    assert_eq!(
        mid.live_bytes - before.live_bytes,
        poolside::usable_size(p) as u64
    );
    // SAFETY: p is live.
    unsafe { poolside::free(p) };
    let after = poolside::stats_snapshot().classes[LARGE_SLOT];
    assert_eq!(after.frees - mid.frees, 1);
}
