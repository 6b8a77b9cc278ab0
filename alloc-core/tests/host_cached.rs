//! The host pool's free memory split in two: cached (the pool could return it to the OS
//! now: free spans not yet purged, cached huge mappings) and fragmentation (free memory
//! in spans that still hold live blocks). Read from the published section, as
//! `poolside stat` reads it.

use poolside::stats::layout::HostSection;
use std::sync::Mutex;

/// The tests read process-wide figures: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the test and, before the pool's first use, sets a purge delay long enough
/// that nothing freed here is purged behind the test's back (a loaded machine can pause
/// a thread for longer than the default 10 ms).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("POOLSIDE_CONF", "purge_delay_ms:60000");
    g
}

fn live(s: &HostSection) -> u64 {
    s.classes.iter().map(|c| c.live_bytes).sum()
}

/// (cached, fragmented) as `poolside stat` derives them.
fn split(s: &HostSection) -> (u64, u64) {
    let free = s.reserved_bytes.saturating_sub(live(s));
    let cached = s.cached_bytes.min(free);
    (cached, free - cached)
}

#[test]
fn freed_data_is_cached_not_fragmented() {
    let _serial = serial();
    let small: Vec<*mut u8> = (0..4000).map(|_| poolside::alloc(8 << 10, 8)).collect();
    let large: Vec<*mut u8> = (0..3).map(|_| poolside::alloc(3 << 20, 8)).collect();
    let huge = poolside::alloc(40 << 20, 8);
    for &p in small.iter().chain(&large).chain([&huge]) {
        assert!(!p.is_null());
        // SAFETY: each block holds at least 8 KiB.
        unsafe { p.write_bytes(1, 8 << 10) };
    }
    poolside::flush_stats();
    let held = poolside::stats_snapshot();
    let (_, frag_held) = split(&held);
    assert!(live(&held) >= 80 << 20, "{held:?}");
    for &p in small.iter().chain(&large).chain([&huge]) {
        // SAFETY: live blocks of ours.
        unsafe { poolside::free(p) };
    }
    // Empty pages back to the arena (no purge: that waits for the delay).
    poolside::collect(false);
    poolside::flush_stats();
    let s = poolside::stats_snapshot();
    let (cached, fragmented) = split(&s);
    println!(
        "held: reserved {} live {} fragmented {frag_held}; freed: reserved {} live {} cached {cached} fragmented {fragmented}",
        held.reserved_bytes,
        live(&held),
        s.reserved_bytes,
        live(&s)
    );
    assert!(
        cached >= 40 << 20,
        "the huge mapping at least is cached: {cached}"
    );
    assert!(
        (fragmented as f64) < 0.1 * s.reserved_bytes as f64,
        "fragmented {fragmented} of {} reserved",
        s.reserved_bytes
    );
    // And cached means returnable: a forced purge gives it back.
    poolside::collect(true);
    let after = poolside::stats_snapshot();
    assert!(
        after.reserved_bytes + cached * 9 / 10 <= s.reserved_bytes,
        "cached {cached} but reserved only went from {} to {}",
        s.reserved_bytes,
        after.reserved_bytes
    );
    assert!(after.cached_bytes < cached / 10, "{after:?}");
}

#[test]
fn a_live_block_keeps_its_span_free_space_as_fragmentation() {
    let _serial = serial();
    // One live 8 KiB block in each of many spans: the rest of each span is free but
    // cannot be returned.
    let mut keep = Vec::new();
    let mut drop_now = Vec::new();
    for i in 0..8000 {
        let p = poolside::alloc(16 << 10, 8);
        assert!(!p.is_null());
        if i % 4 == 0 {
            keep.push(p);
        } else {
            drop_now.push(p);
        }
    }
    for p in drop_now {
        // SAFETY: live blocks of ours.
        unsafe { poolside::free(p) };
    }
    poolside::collect(false);
    poolside::flush_stats();
    let s = poolside::stats_snapshot();
    let (_, fragmented) = split(&s);
    assert!(
        fragmented >= 64 << 20,
        "three quarters of 128 MiB are free inside spans with live blocks: {fragmented}"
    );
    for p in keep {
        // SAFETY: live blocks of ours.
        unsafe { poolside::free(p) };
    }
}
