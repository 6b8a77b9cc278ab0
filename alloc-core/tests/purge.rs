//! Freed memory goes back to the OS after the purge delay (10 ms by default), and not
//! before. Each test starts with a forced collect, which also sets back a delay that
//! refaults in an earlier test lengthened (`purge_adapt.rs`).

use std::sync::Mutex;
use std::time::Duration;

/// The tests read process-wide figures: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4096
}

#[test]
fn freed_spans_are_purged_after_the_delay() {
    let _serial = SERIAL.lock().unwrap();
    poolside::collect(true);
    let size = 8 << 20; // a large span from the arena
    let p = poolside::alloc(size, 8);
    assert!(!p.is_null());
    // SAFETY: p holds `size` bytes.
    unsafe { p.write_bytes(1, size) };
    poolside::flush_stats();
    let held = poolside::stats_snapshot();
    let rss_held = rss_bytes();
    // SAFETY: p is live.
    unsafe { poolside::free(p) };
    poolside::flush_stats();
    let freed = poolside::stats_snapshot();
    // Right after the free the span is still reserved: reuse within the delay is free.
    assert_eq!(
        freed.reserved_bytes, held.reserved_bytes,
        "purged before the delay"
    );
    std::thread::sleep(Duration::from_millis(60));
    poolside::collect(false);
    let later = poolside::stats_snapshot();
    assert!(
        later.reserved_bytes + size as u64 <= held.reserved_bytes,
        "span not purged: {later:?}"
    );
    assert!(later.purged_bytes >= freed.purged_bytes + size as u64);
    assert!(rss_bytes() + size / 2 < rss_held, "RSS did not drop");
}

#[test]
fn huge_blocks_are_cached_then_unmapped() {
    let _serial = SERIAL.lock().unwrap();
    poolside::collect(true);
    let size = 40 << 20;
    let p = poolside::alloc(size, 8);
    // SAFETY: p holds `size` bytes.
    unsafe {
        p.write_bytes(1, size);
        poolside::free(p);
    }
    // Reuse within the delay gets the same mapping back, already faulted in.
    let q = poolside::alloc(size - 4096, 8);
    assert_eq!(q, p, "cached huge mapping not reused");
    // SAFETY: q is live.
    unsafe { poolside::free(q) };
    std::thread::sleep(Duration::from_millis(60));
    poolside::collect(false);
    assert!(!poolside::owns(q));
    assert_eq!(poolside::usable_size(q), 0);
}

#[test]
fn free_parts_of_huge_pages_are_purged_after_a_longer_wait() {
    let _serial = SERIAL.lock().unwrap();
    poolside::collect(true);
    // 1.5 MiB blocks side by side (large spans of 24 units): freeing every other one
    // leaves 2 MiB chunks partly used. Where huge pages back segments, the purge delay
    // returns only whole free chunks, and the rest after a second, longer wait (1 s);
    // without huge pages all of it goes at the first. Either way it all goes.
    let size = 3 << 19;
    let blocks: Vec<*mut u8> = (0..20).map(|_| poolside::alloc(size, 8)).collect();
    for &p in &blocks {
        assert!(!p.is_null());
        // SAFETY: p holds `size` bytes.
        unsafe { p.write_bytes(1, size) };
    }
    poolside::flush_stats();
    let held = poolside::stats_snapshot();
    for &p in blocks.iter().step_by(2) {
        // SAFETY: live blocks, freed once.
        unsafe { poolside::free(p) };
    }
    let freed = 10 * size as u64;
    std::thread::sleep(Duration::from_millis(60));
    poolside::collect(false);
    let first = poolside::stats_snapshot();
    std::thread::sleep(Duration::from_millis(1100));
    poolside::collect(false);
    let later = poolside::stats_snapshot();
    println!(
        "reserved: held {}, after the delay {}, after 1.1 s more {}",
        held.reserved_bytes, first.reserved_bytes, later.reserved_bytes
    );
    assert!(
        later.reserved_bytes + freed <= held.reserved_bytes,
        "free parts of partly used chunks not purged: reserved {} of {} held, {} freed",
        later.reserved_bytes,
        held.reserved_bytes,
        freed
    );
    for &p in blocks.iter().skip(1).step_by(2) {
        // SAFETY: the live half.
        unsafe { poolside::free(p) };
    }
    // Leave nothing pending for the next test's figures.
    poolside::collect(true);
}
