//! The device's statistics: kept in a plain [`DeviceSection`] under the pool lock (the
//! exact figures `poolside_cuda_memory_stats` returns), and copied into the shared stats
//! file after each operation under its seqlock, the pool lock being this section's
//! writer lock.

use super::graph_pool::Owner;
use super::{DevicePool, State};
use poolside::stats::layout::{DeviceSection, Gauge};
use poolside::stats::{seqlock, shm};
use std::time::{Duration, Instant};

/// Least time between two questions to the driver about free device memory.
pub const FREE_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// The driver's free device memory as last asked, and the pool's reserved bytes then.
/// Between two questions the pool's own changes are applied to it, so `free_memory`
/// follows every map and unmap at once; what other processes do shows at the next
/// question (at most every [`FREE_PROBE_INTERVAL`] while the pool maps or unmaps, and
/// on every out-of-memory and `empty_cache`).
#[derive(Debug, Default)]
pub struct FreeProbe {
    free: u64,
    reserved: u64,
    at: Option<Instant>,
}

impl FreeProbe {
    /// Records an answer of the driver.
    pub fn answer(&mut self, free: u64, reserved: u64) {
        self.free = free;
        self.reserved = reserved;
        self.at = Some(Instant::now());
    }

    /// Whether the last answer is older than the interval (or there is none).
    pub fn stale(&self) -> bool {
        self.at.is_none_or(|t| t.elapsed() >= FREE_PROBE_INTERVAL)
    }

    /// Free device memory now that the pool holds `reserved` bytes.
    pub fn estimate(&self, reserved: u64, total: u64) -> u64 {
        (self.free + self.reserved)
            .saturating_sub(reserved)
            .min(total)
    }
}

impl DevicePool {
    /// Asks the driver for free memory when `force` or the last answer is stale (not
    /// during a capture: only the estimate then), and sets `free_memory`.
    pub(super) fn refresh_free_memory(&self, st: &mut State, force: bool) {
        let reserved = st.budget.reserved();
        if (force || st.free_probe.stale()) && !st.graph.capturing() {
            if let Ok((free, _)) = self.driver.mem_info(self.dev) {
                st.free_probe.answer(free, reserved);
            }
        }
        st.stats.free_memory = st.free_probe.estimate(reserved, self.total);
    }

    /// Sets the figures derived from the pool's structures: free, cached and fragmented
    /// bytes, and the largest free block. Each stream pool keeps its own up to date
    /// (`StreamPool::figures`), so this costs O(streams), whatever the pool holds. Call with `reserved_bytes` current.
    pub(super) fn refresh_figures(st: &mut State) {
        let mut cached = 0;
        let mut largest = 0;
        for p in &st.streams {
            let general = p.owner == Owner::General;
            let counted = !st.graph.keeps(p.owner);
            if !general && !counted {
                continue;
            }
            let (c, l) = p.figures();
            if general {
                // Only the general pools serve ordinary requests.
                largest = largest.max(l);
            }
            if counted {
                cached += c;
            }
        }
        let s = &mut st.stats;
        let free = s
            .reserved_bytes
            .current
            .saturating_sub(s.active_bytes.current);
        s.cached_free_bytes = free;
        s.cached_bytes = cached.min(free);
        set(&mut s.fragmented_bytes, free - s.cached_bytes);
        s.largest_free_block = largest;
    }
}

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
        cached_bytes: 0,
        fragmented_bytes: Gauge::default(),
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
        &mut s.fragmented_bytes,
    ] {
        g.peak = g.current;
    }
}

/// Copies what an operation that changed only blocks (a cache hit, an immediate free)
/// can change into the shared section: the words from `requested_bytes` through `misses`,
/// and `cached_bytes` with `fragmented_bytes`.
#[inline]
pub fn publish_gauges(s: &DeviceSection) {
    let dst = shm::device_section(s.device as usize);
    if dst.is_null() || s.device < 0 {
        return;
    }
    let base = s as *const DeviceSection as usize;
    let word = |p: *const u64| (p as usize - base) / 8;
    // Two plain ranges, not a chained iterator: the chain's per-word state checks cost
    // more than the copy itself (callgrind: ~120 instructions per pair).
    let (g0, g1) = (
        word(core::ptr::addr_of!(s.requested_bytes.current)),
        word(core::ptr::addr_of!(s.misses)) + 1,
    );
    let (t0, t1) = (
        word(core::ptr::addr_of!(s.cached_bytes)),
        core::mem::size_of::<DeviceSection>() / 8,
    );
    let src = s as *const DeviceSection as *const u64;
    let dst = dst as *mut u64;
    // SAFETY: as in `publish`; both ranges are word indexes inside the section, past
    // word 0 (the sequence number).
    unsafe {
        seqlock::begin_write(dst);
        for i in g0..g1 {
            seqlock::set(dst.add(i), src.add(i).read());
        }
        for i in t0..t1 {
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

impl DevicePool {
    /// The published figures against a walk over every range and page (for `check`):
    /// cached bytes, the largest free block, and free = cached + fragmented.
    pub(super) fn check_figures(&self, st: &State) -> Result<(), String> {
        let (mut cached, mut largest) = (0, 0);
        for p in &st.streams {
            let (c, l) = p.figures_by_walk();
            let (kc, kl) = p.figures();
            if (c, l) != (kc, kl) {
                return Err(format!(
                    "stream {:#x}: cached {kc} and largest free {kl} kept, {c} and {l} by walk",
                    p.stream
                ));
            }
            if p.owner == Owner::General {
                largest = largest.max(l);
            }
            if !st.graph.keeps(p.owner) {
                cached += c;
            }
        }
        let s = &st.stats;
        let free = s
            .reserved_bytes
            .current
            .saturating_sub(s.active_bytes.current);
        if (s.cached_bytes, s.largest_free_block) != (cached.min(free), largest) {
            return Err(format!(
                "published cached {} and largest free block {}, the pool has {cached} and {largest}",
                s.cached_bytes, s.largest_free_block
            ));
        }
        if s.cached_free_bytes != free || s.cached_bytes + s.fragmented_bytes.current != free {
            return Err(format!(
                "free {free}: published {} = {} cached + {} fragmented",
                s.cached_free_bytes, s.cached_bytes, s.fragmented_bytes.current
            ));
        }
        Ok(())
    }
}

impl DevicePool {
    /// `(cached_bytes, largest_free_block)` computed the slow way, by walking every range
    /// and page of the pool: what the published figures must equal. For tests.
    pub fn figures_by_walk(&self) -> (u64, u64) {
        let st = self.state.lock();
        let (mut cached, mut largest) = (0, 0);
        for p in &st.streams {
            let (c, l) = p.figures_by_walk();
            if p.owner == Owner::General {
                largest = largest.max(l);
            }
            if !st.graph.keeps(p.owner) {
                cached += c;
            }
        }
        (cached, largest)
    }
}
