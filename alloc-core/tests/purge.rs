//! Freed memory goes back to the OS after the purge delay (10 ms by default), and not
//! before.

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
    let size = 8 << 20; // a large span from the arena
    let p = alloc_core::alloc(size, 8);
    assert!(!p.is_null());
    // SAFETY: p holds `size` bytes.
    unsafe { p.write_bytes(1, size) };
    alloc_core::flush_stats();
    let held = alloc_core::stats_snapshot();
    let rss_held = rss_bytes();
    // SAFETY: p is live.
    unsafe { alloc_core::free(p) };
    alloc_core::flush_stats();
    let freed = alloc_core::stats_snapshot();
    // Right after the free the span is still reserved: reuse within the delay is free.
    assert_eq!(
        freed.reserved_bytes, held.reserved_bytes,
        "purged before the delay"
    );
    std::thread::sleep(Duration::from_millis(60));
    alloc_core::collect(false);
    let later = alloc_core::stats_snapshot();
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
    let size = 40 << 20;
    let p = alloc_core::alloc(size, 8);
    // SAFETY: p holds `size` bytes.
    unsafe {
        p.write_bytes(1, size);
        alloc_core::free(p);
    }
    // Reuse within the delay gets the same mapping back, already faulted in.
    let q = alloc_core::alloc(size - 4096, 8);
    assert_eq!(q, p, "cached huge mapping not reused");
    // SAFETY: q is live.
    unsafe { alloc_core::free(q) };
    std::thread::sleep(Duration::from_millis(60));
    alloc_core::collect(false);
    assert!(!alloc_core::owns(q));
    assert_eq!(alloc_core::usable_size(q), 0);
}
