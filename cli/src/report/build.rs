//! Building reports from snapshots.

use super::derived::{estimated_internal_waste, fragmentation, hit_rate, host_free_split, share};
use super::{ClassReport, DeviceReport, GaugeReport, HostReport, ProcessReport};
use crate::reader::{system, Snapshot};
use poolside::stats::layout::{
    ClassCounters, DeviceSection, Gauge, HostSection, LOCAL_RANK_SET, MAX_CLASSES, RANK_SET,
    WORLD_SIZE_SET,
};

/// The classes of a host section that served at least one allocation.
pub fn classes(h: &HostSection, num_classes: u32) -> Vec<ClassReport> {
    let n = (num_classes as usize).min(MAX_CLASSES - 2);
    h.classes[..n + 2]
        .iter()
        .enumerate()
        .filter(|(_, c)| c.allocs != 0 || c.live_bytes != 0)
        .map(|(slot, c)| class(slot, n, c))
        .collect()
}

fn class(slot: usize, n: usize, c: &ClassCounters) -> ClassReport {
    ClassReport {
        slot,
        kind: if slot < n {
            "small"
        } else if slot == n {
            "large"
        } else {
            "huge"
        },
        block_size: c.block_size,
        allocations: c.allocs,
        frees: c.frees,
        hits: c.hits,
        misses: c.misses,
        live_bytes: c.live_bytes,
        requested_bytes_total: c.requested_bytes,
        allocated_bytes_total: c.allocated_bytes,
        hit_rate: hit_rate(c.hits, c.misses),
    }
}

/// Totals and derived figures of a host section.
pub fn host(h: &HostSection, num_classes: u32) -> HostReport {
    let n = (num_classes as usize).min(MAX_CLASSES - 2);
    let mut r = HostReport {
        reserved_bytes: h.reserved_bytes,
        peak_reserved_bytes: h.peak_reserved_bytes,
        mapped_bytes: h.mapped_bytes,
        purged_bytes: h.purged_bytes,
        segments: h.segments,
        heaps_active: h.heaps_active,
        heaps_abandoned: h.heaps_abandoned,
        ..HostReport::default()
    };
    // Saturating: the counters come from a file any process of this user can write, and
    // absurd values must show as such rather than panic or wrap to small ones.
    for c in &h.classes[..n + 2] {
        r.live_bytes = r.live_bytes.saturating_add(c.live_bytes);
        r.allocations = r.allocations.saturating_add(c.allocs);
        r.frees = r.frees.saturating_add(c.frees);
        r.hits = r.hits.saturating_add(c.hits);
        r.misses = r.misses.saturating_add(c.misses);
        r.requested_bytes_total = r.requested_bytes_total.saturating_add(c.requested_bytes);
        r.allocated_bytes_total = r.allocated_bytes_total.saturating_add(c.allocated_bytes);
        r.internal_waste_bytes = r
            .internal_waste_bytes
            .saturating_add(estimated_internal_waste(
                c.live_bytes,
                c.requested_bytes,
                c.allocated_bytes,
            ));
    }
    r.hit_rate = hit_rate(r.hits, r.misses);
    (r.cached_bytes, r.fragmented_bytes) =
        host_free_split(r.reserved_bytes, r.live_bytes, h.cached_bytes);
    r.fragmentation = fragmentation(r.fragmented_bytes, r.reserved_bytes);
    r
}

fn gauge(g: Gauge) -> GaugeReport {
    GaugeReport {
        current: g.current,
        peak: g.peak,
    }
}

/// A device section with derived figures.
pub fn device(d: &DeviceSection) -> DeviceReport {
    DeviceReport {
        device: d.device,
        name: format!("cuda:{}", d.device),
        total_memory: d.total_memory,
        free_memory: d.free_memory,
        limit_bytes: d.limit_bytes,
        requested_bytes: gauge(d.requested_bytes),
        allocated_bytes: gauge(d.allocated_bytes),
        reserved_bytes: gauge(d.reserved_bytes),
        active_bytes: gauge(d.active_bytes),
        allocations: gauge(d.allocations),
        segments: gauge(d.segments),
        mapped_bytes: d.mapped_bytes,
        cached_bytes: d.cached_bytes,
        fragmented_bytes: gauge(d.fragmented_bytes),
        largest_free_block: d.largest_free_block,
        hits: d.hits,
        misses: d.misses,
        alloc_retries: d.alloc_retries,
        ooms: d.ooms,
        device_allocs: d.device_allocs,
        device_frees: d.device_frees,
        event_record_failures: d.event_record_failures,
        event_query_failures: d.event_query_failures,
        sync_fallbacks: d.sync_fallbacks,
        private_pool_bytes: gauge(d.private_pool_bytes),
        hit_rate: hit_rate(d.hits, d.misses),
        fragmentation: fragmentation(d.fragmented_bytes.current, d.reserved_bytes.current),
        peak_overhead: share(d.reserved_bytes.peak, d.allocated_bytes.peak),
        internal_waste_bytes: d
            .allocated_bytes
            .current
            .saturating_sub(d.requested_bytes.current),
    }
}

/// The report of one process; `with_classes` adds the per-class breakdown.
pub fn process(s: &Snapshot, with_classes: bool) -> ProcessReport {
    let set = |bit: u64, v: u64| (s.host.ranks_set & bit != 0).then_some(v);
    ProcessReport {
        pid: s.pid,
        rank: set(RANK_SET, s.host.rank),
        local_rank: set(LOCAL_RANK_SET, s.host.local_rank),
        world_size: set(WORLD_SIZE_SET, s.host.world_size),
        command: s.command(),
        start_unix_ns: s.start_unix_ns,
        rss_bytes: system::rss_bytes(s.pid),
        anon_huge_bytes: system::anon_huge_bytes(s.pid),
        host: host(&s.host, s.num_classes),
        devices: s.devices.iter().map(device).collect(),
        classes: with_classes.then(|| classes(&s.host, s.num_classes)),
    }
}
