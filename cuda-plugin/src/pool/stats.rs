//! The device's statistics: kept in a plain [`DeviceSection`] under the pool lock (the
//! exact figures `poolside_cuda_memory_stats` returns), and copied into the shared stats
//! file after each operation under its seqlock, the pool lock being this section's
//! writer lock.

use alloc_core::stats::layout::{DeviceSection, Gauge};
use alloc_core::stats::{seqlock, shm};

/// A section with nothing counted yet.
pub fn empty(device: i32) -> DeviceSection {
    DeviceSection {
        seq: 0,
        present: 1,
        device,
        total_memory: 0,
        free_memory: 0,
        limit_bytes: 0,
        requested_bytes: Gauge::default(),
        allocated_bytes: Gauge::default(),
        reserved_bytes: Gauge::default(),
        active_bytes: Gauge::default(),
        allocations: Gauge::default(),
        segments: Gauge::default(),
        mapped_bytes: 0,
        cached_free_bytes: 0,
        largest_free_block: 0,
        hits: 0,
        misses: 0,
        alloc_retries: 0,
        ooms: 0,
        device_allocs: 0,
        device_frees: 0,
        event_record_failures: 0,
        event_query_failures: 0,
        sync_fallbacks: 0,
        private_pool_bytes: Gauge::default(),
        _reserved: [0; 3],
    }
}

/// Sets a gauge's current value, raising its peak.
#[inline]
pub fn set(g: &mut Gauge, v: u64) {
    g.current = v;
    if v > g.peak {
        g.peak = v;
    }
}

/// Adds `v` to a gauge, raising its peak.
#[inline]
pub fn add(g: &mut Gauge, v: u64) {
    set(g, g.current + v);
}

/// Peaks back to current values.
pub fn reset_peaks(s: &mut DeviceSection) {
    for g in [
        &mut s.requested_bytes,
        &mut s.allocated_bytes,
        &mut s.reserved_bytes,
        &mut s.active_bytes,
        &mut s.allocations,
        &mut s.segments,
        &mut s.private_pool_bytes,
    ] {
        g.peak = g.current;
    }
}

/// Copies the words from `requested_bytes` through `misses` (what a cache hit or an
/// immediate free changes) into the shared section.
#[inline]
pub fn publish_gauges(s: &DeviceSection) {
    let dst = shm::device_section(s.device as usize);
    if dst.is_null() || s.device < 0 {
        return;
    }
    let base = s as *const DeviceSection as usize;
    let first = (core::ptr::addr_of!(s.requested_bytes) as usize - base) / 8;
    let last = (core::ptr::addr_of!(s.misses) as usize - base) / 8;
    let src = s as *const DeviceSection as *const u64;
    let dst = dst as *mut u64;
    // SAFETY: as in `publish`; first..=last are word indexes inside the section.
    unsafe {
        seqlock::begin_write(dst);
        for i in first..=last {
            seqlock::set(dst.add(i), src.add(i).read());
        }
        seqlock::end_write(dst);
    }
}

/// Copies `s` into the shared section of its device (devices past the file's last
/// section are kept in process memory only).
pub fn publish(s: &DeviceSection) {
    let dst = shm::device_section(s.device as usize);
    if dst.is_null() || s.device < 0 {
        return;
    }
    let words = core::mem::size_of::<DeviceSection>() / 8;
    let src = s as *const DeviceSection as *const u64;
    let dst = dst as *mut u64;
    // SAFETY: dst is this device's section in the stats file, valid for the life of the
    // process; the caller holds the device's pool lock, which is the section's only writer
    // lock; word 0 is the sequence number, which begin/end_write manage.
    unsafe {
        seqlock::begin_write(dst);
        for i in 1..words {
            seqlock::set(dst.add(i), src.add(i).read());
        }
        seqlock::end_write(dst);
    }
}
