//! Prometheus text exposition (format 0.0.4) of every process's pools.
//!
//! Series carry `pid` and `device` labels (`host` or `cuda:N`), and `rank`,
//! `local_rank`, `world_size` for a distributed job's workers; cumulative counts are
//! counters named `*_total`; byte figures end in `_bytes`, ratios in `_ratio`.

use crate::report::ProcessReport;
use std::fmt::Write;

/// Kind and help text of every family, in output order.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "poolside_live_bytes",
        "gauge",
        "Bytes in live blocks, after rounding.",
    ),
    (
        "poolside_reserved_bytes",
        "gauge",
        "Bytes the pool holds (the denominator of fragmentation).",
    ),
    (
        "poolside_peak_reserved_bytes",
        "gauge",
        "Highest reserved_bytes seen.",
    ),
    (
        "poolside_mapped_bytes",
        "gauge",
        "Bytes mapped from the OS or the device.",
    ),
    ("poolside_segments", "gauge", "Segments held."),
    (
        "poolside_hits_total",
        "counter",
        "Allocations served from memory the pool held.",
    ),
    (
        "poolside_misses_total",
        "counter",
        "Allocations that needed fresh memory.",
    ),
    (
        "poolside_internal_waste_bytes",
        "gauge",
        "Rounding waste inside live blocks (estimated on the host).",
    ),
    (
        "poolside_cached_bytes",
        "gauge",
        "Free bytes the pool could return to the OS or the driver now.",
    ),
    (
        "poolside_fragmented_bytes",
        "gauge",
        "Free bytes that cannot be returned: they share a span, page or segment with live blocks.",
    ),
    ("poolside_hit_ratio", "gauge", "hits / (hits + misses)."),
    (
        "poolside_fragmentation_ratio",
        "gauge",
        "fragmented_bytes / reserved_bytes (cached memory is not fragmentation).",
    ),
    (
        "poolside_peak_overhead_ratio",
        "gauge",
        "Peak reserved bytes / peak allocated bytes on a device.",
    ),
    (
        "poolside_allocations_total",
        "counter",
        "Host allocations served.",
    ),
    ("poolside_frees_total", "counter", "Host blocks freed."),
    (
        "poolside_purged_bytes_total",
        "counter",
        "Bytes returned to the OS by purging.",
    ),
    ("poolside_heaps", "gauge", "Thread heaps by state."),
    (
        "poolside_peak_live_bytes",
        "gauge",
        "Highest live bytes on a device.",
    ),
    (
        "poolside_requested_bytes",
        "gauge",
        "Bytes asked for by live device allocations, unrounded.",
    ),
    (
        "poolside_peak_requested_bytes",
        "gauge",
        "Highest requested_bytes.",
    ),
    (
        "poolside_active_bytes",
        "gauge",
        "Device bytes not yet returned to the pool.",
    ),
    (
        "poolside_peak_active_bytes",
        "gauge",
        "Highest active_bytes.",
    ),
    (
        "poolside_live_allocations",
        "gauge",
        "Live device allocations.",
    ),
    (
        "poolside_peak_live_allocations",
        "gauge",
        "Highest live device allocations.",
    ),
    (
        "poolside_peak_segments",
        "gauge",
        "Highest segments held on a device.",
    ),
    (
        "poolside_peak_fragmented_bytes",
        "gauge",
        "Highest fragmented_bytes on a device.",
    ),
    (
        "poolside_largest_free_block_bytes",
        "gauge",
        "Largest free block the device pool holds (no driver call needed).",
    ),
    (
        "poolside_alloc_retries_total",
        "counter",
        "Device allocations retried after freeing cached memory.",
    ),
    (
        "poolside_ooms_total",
        "counter",
        "Device allocations that failed for lack of memory.",
    ),
    (
        "poolside_device_mallocs_total",
        "counter",
        "Driver calls that allocated device memory.",
    ),
    (
        "poolside_device_frees_total",
        "counter",
        "Driver calls that freed device memory.",
    ),
    (
        "poolside_event_record_failures_total",
        "counter",
        "Events for record_stream that could not be created or recorded.",
    ),
    (
        "poolside_event_query_failures_total",
        "counter",
        "Event queries or waits for record_stream that failed.",
    ),
    (
        "poolside_sync_fallbacks_total",
        "counter",
        "Device synchronizes run in place of failed record_stream events.",
    ),
    (
        "poolside_private_pool_bytes",
        "gauge",
        "Device memory held by CUDA graphs' private pools (part of reserved).",
    ),
    (
        "poolside_device_total_memory_bytes",
        "gauge",
        "Device memory in total.",
    ),
    (
        "poolside_device_free_memory_bytes",
        "gauge",
        "Device memory free when last asked.",
    ),
    (
        "poolside_limit_bytes",
        "gauge",
        "Cap on the device pool from the memory fraction.",
    ),
    (
        "poolside_class_allocations_total",
        "counter",
        "Host allocations per size class (block size in bytes, or large/huge).",
    ),
    (
        "poolside_class_hits_total",
        "counter",
        "Host allocation hits per size class.",
    ),
    (
        "poolside_class_misses_total",
        "counter",
        "Host allocation misses per size class.",
    ),
    (
        "poolside_class_live_bytes",
        "gauge",
        "Host live bytes per size class.",
    ),
    (
        "poolside_processes",
        "gauge",
        "Live poolside processes of this user.",
    ),
    (
        "poolside_skipped_files",
        "gauge",
        "Stats files skipped at the last scan (see the exporter's stderr).",
    ),
    (
        "poolside_process_info",
        "gauge",
        "One per process; the command line as a label.",
    ),
    (
        "poolside_process_start_time_seconds",
        "gauge",
        "Start of the process, seconds since the Unix epoch.",
    ),
    (
        "poolside_resident_memory_bytes",
        "gauge",
        "Resident set size from /proc.",
    ),
];

/// Samples of each family, by index in `FAMILIES`.
struct Families(Vec<Vec<(String, f64)>>);

/// Escapes a label value.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// `labels` of one process's series, with `rank`, `local_rank` and `world_size` added
/// where the process has them, so that a job's workers can be told apart and grouped.
fn process_labels(p: &ProcessReport, pairs: &[(&str, &str)]) -> String {
    let ranks: Vec<(&str, String)> = [
        ("rank", p.rank),
        ("local_rank", p.local_rank),
        ("world_size", p.world_size),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?.to_string())))
    .collect();
    let mut all = pairs.to_vec();
    all.extend(ranks.iter().map(|(k, v)| (*k, v.as_str())));
    labels(&all)
}

impl Families {
    fn add(&mut self, name: &str, labels: String, v: f64) {
        let i = FAMILIES
            .iter()
            .position(|f| f.0 == name)
            .expect("every family is listed in FAMILIES");
        self.0[i].push((labels, v));
    }
}

fn pool_series(f: &mut Families, pid: &str, p: &ProcessReport) {
    let host = process_labels(p, &[("pid", pid), ("device", "host")]);
    let h = &p.host;
    f.add("poolside_live_bytes", host.clone(), h.live_bytes as f64);
    f.add(
        "poolside_reserved_bytes",
        host.clone(),
        h.reserved_bytes as f64,
    );
    f.add(
        "poolside_peak_reserved_bytes",
        host.clone(),
        h.peak_reserved_bytes as f64,
    );
    f.add("poolside_mapped_bytes", host.clone(), h.mapped_bytes as f64);
    f.add("poolside_segments", host.clone(), h.segments as f64);
    f.add("poolside_hits_total", host.clone(), h.hits as f64);
    f.add("poolside_misses_total", host.clone(), h.misses as f64);
    f.add(
        "poolside_internal_waste_bytes",
        host.clone(),
        h.internal_waste_bytes as f64,
    );
    f.add("poolside_cached_bytes", host.clone(), h.cached_bytes as f64);
    f.add(
        "poolside_fragmented_bytes",
        host.clone(),
        h.fragmented_bytes as f64,
    );
    if let Some(r) = h.hit_rate {
        f.add("poolside_hit_ratio", host.clone(), r);
    }
    if let Some(r) = h.fragmentation {
        f.add("poolside_fragmentation_ratio", host.clone(), r);
    }
    f.add(
        "poolside_allocations_total",
        host.clone(),
        h.allocations as f64,
    );
    f.add("poolside_frees_total", host.clone(), h.frees as f64);
    f.add(
        "poolside_purged_bytes_total",
        host.clone(),
        h.purged_bytes as f64,
    );
    f.add(
        "poolside_heaps",
        process_labels(p, &[("pid", pid), ("device", "host"), ("state", "active")]),
        h.heaps_active as f64,
    );
    f.add(
        "poolside_heaps",
        process_labels(
            p,
            &[("pid", pid), ("device", "host"), ("state", "abandoned")],
        ),
        h.heaps_abandoned as f64,
    );
    for d in &p.devices {
        let l = process_labels(p, &[("pid", pid), ("device", &d.name)]);
        f.add(
            "poolside_live_bytes",
            l.clone(),
            d.allocated_bytes.current as f64,
        );
        f.add(
            "poolside_reserved_bytes",
            l.clone(),
            d.reserved_bytes.current as f64,
        );
        f.add(
            "poolside_peak_reserved_bytes",
            l.clone(),
            d.reserved_bytes.peak as f64,
        );
        f.add("poolside_mapped_bytes", l.clone(), d.mapped_bytes as f64);
        f.add("poolside_segments", l.clone(), d.segments.current as f64);
        f.add("poolside_hits_total", l.clone(), d.hits as f64);
        f.add("poolside_misses_total", l.clone(), d.misses as f64);
        f.add(
            "poolside_internal_waste_bytes",
            l.clone(),
            d.internal_waste_bytes as f64,
        );
        f.add("poolside_cached_bytes", l.clone(), d.cached_bytes as f64);
        f.add(
            "poolside_fragmented_bytes",
            l.clone(),
            d.fragmented_bytes.current as f64,
        );
        if let Some(r) = d.hit_rate {
            f.add("poolside_hit_ratio", l.clone(), r);
        }
        if let Some(r) = d.fragmentation {
            f.add("poolside_fragmentation_ratio", l.clone(), r);
        }
        if let Some(r) = d.peak_overhead {
            f.add("poolside_peak_overhead_ratio", l.clone(), r);
        }
        f.add(
            "poolside_peak_live_bytes",
            l.clone(),
            d.allocated_bytes.peak as f64,
        );
        f.add(
            "poolside_requested_bytes",
            l.clone(),
            d.requested_bytes.current as f64,
        );
        f.add(
            "poolside_peak_requested_bytes",
            l.clone(),
            d.requested_bytes.peak as f64,
        );
        f.add(
            "poolside_active_bytes",
            l.clone(),
            d.active_bytes.current as f64,
        );
        f.add(
            "poolside_peak_active_bytes",
            l.clone(),
            d.active_bytes.peak as f64,
        );
        f.add(
            "poolside_live_allocations",
            l.clone(),
            d.allocations.current as f64,
        );
        f.add(
            "poolside_peak_live_allocations",
            l.clone(),
            d.allocations.peak as f64,
        );
        f.add("poolside_peak_segments", l.clone(), d.segments.peak as f64);
        f.add(
            "poolside_peak_fragmented_bytes",
            l.clone(),
            d.fragmented_bytes.peak as f64,
        );
        f.add(
            "poolside_largest_free_block_bytes",
            l.clone(),
            d.largest_free_block as f64,
        );
        f.add(
            "poolside_alloc_retries_total",
            l.clone(),
            d.alloc_retries as f64,
        );
        f.add("poolside_ooms_total", l.clone(), d.ooms as f64);
        f.add(
            "poolside_device_mallocs_total",
            l.clone(),
            d.device_allocs as f64,
        );
        f.add(
            "poolside_device_frees_total",
            l.clone(),
            d.device_frees as f64,
        );
        f.add(
            "poolside_event_record_failures_total",
            l.clone(),
            d.event_record_failures as f64,
        );
        f.add(
            "poolside_event_query_failures_total",
            l.clone(),
            d.event_query_failures as f64,
        );
        f.add(
            "poolside_sync_fallbacks_total",
            l.clone(),
            d.sync_fallbacks as f64,
        );
        f.add(
            "poolside_private_pool_bytes",
            l.clone(),
            d.private_pool_bytes.current as f64,
        );
        f.add(
            "poolside_device_total_memory_bytes",
            l.clone(),
            d.total_memory as f64,
        );
        f.add(
            "poolside_device_free_memory_bytes",
            l.clone(),
            d.free_memory as f64,
        );
        if d.limit_bytes > 0 {
            f.add("poolside_limit_bytes", l.clone(), d.limit_bytes as f64);
        }
    }
}

fn class_series(f: &mut Families, pid: &str, p: &ProcessReport) {
    for c in p.classes.iter().flatten() {
        let class = if c.block_size == 0 {
            c.kind.to_string()
        } else {
            c.block_size.to_string()
        };
        let l = process_labels(p, &[("pid", pid), ("device", "host"), ("class", &class)]);
        f.add(
            "poolside_class_allocations_total",
            l.clone(),
            c.allocations as f64,
        );
        f.add("poolside_class_hits_total", l.clone(), c.hits as f64);
        f.add("poolside_class_misses_total", l.clone(), c.misses as f64);
        f.add("poolside_class_live_bytes", l, c.live_bytes as f64);
    }
}

/// The exposition of `ps` (reports built with their classes), plus the count of files
/// skipped while scanning.
pub fn render(ps: &[ProcessReport], skipped: usize) -> String {
    let mut f = Families(vec![Vec::new(); FAMILIES.len()]);
    f.add("poolside_processes", String::new(), ps.len() as f64);
    f.add("poolside_skipped_files", String::new(), skipped as f64);
    for p in ps {
        let pid = p.pid.to_string();
        f.add(
            "poolside_process_info",
            process_labels(p, &[("pid", &pid), ("command", &p.command)]),
            1.0,
        );
        f.add(
            "poolside_process_start_time_seconds",
            process_labels(p, &[("pid", &pid)]),
            p.start_unix_ns as f64 / 1e9,
        );
        if let Some(rss) = p.rss_bytes {
            f.add(
                "poolside_resident_memory_bytes",
                process_labels(p, &[("pid", &pid)]),
                rss as f64,
            );
        }
        pool_series(&mut f, &pid, p);
        class_series(&mut f, &pid, p);
    }
    let mut out = String::new();
    for ((name, kind, help), samples) in FAMILIES.iter().zip(f.0) {
        if samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (l, v) in samples {
            let _ = writeln!(out, "{name}{l} {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::build;
    use poolside::stats::layout::{DeviceSection, Gauge};

    /// Prometheus's naming conventions: base units in the name, `_total` for counters
    /// and only for them, ratios as `_ratio`, snake case under the `poolside_` prefix.
    #[test]
    fn family_names_follow_prometheus_conventions() {
        for (name, kind, help) in FAMILIES {
            assert!(
                name.starts_with("poolside_")
                    && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
            assert_eq!(*kind == "counter", name.ends_with("_total"), "{name}");
            assert!(matches!(*kind, "counter" | "gauge"), "{name}");
            if name.contains("bytes") {
                assert!(
                    name.ends_with("_bytes") || name.ends_with("_bytes_total"),
                    "{name}: the unit goes last"
                );
            }
            for word in ["fragmentation", "overhead", "hit_"] {
                if name.contains(word) {
                    assert!(name.ends_with("_ratio"), "{name}");
                }
            }
            assert!(!help.is_empty(), "{name}");
        }
    }

    /// The H200 case of issue 11: 27 GiB of cached free memory after a healthy run is
    /// cached, not fragmentation.
    #[test]
    fn a_healthy_cache_exports_no_fragmentation() {
        const GIB: u64 = 1 << 30;
        let g = |current, peak| Gauge { current, peak };
        // SAFETY: DeviceSection is repr(C) plain integers, for which all zeros is valid.
        let mut d: DeviceSection = unsafe { std::mem::zeroed() };
        d.present = 1;
        d.total_memory = 141 * GIB;
        d.allocated_bytes = g(2 * GIB, 28 * GIB);
        d.active_bytes = g(2 * GIB, 28 * GIB);
        d.reserved_bytes = g(29 * GIB, 29 * GIB);
        d.cached_bytes = 27 * GIB;
        d.largest_free_block = 20 * GIB;
        let report = ProcessReport {
            pid: 1,
            rank: None,
            local_rank: None,
            world_size: None,
            command: "train".into(),
            start_unix_ns: 0,
            rss_bytes: None,
            anon_huge_bytes: None,
            host: Default::default(),
            devices: vec![build::device(&d)],
            classes: None,
        };
        let text = render(&[report], 0);
        let line = |m: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{m}{{pid=\"1\",device=\"cuda:0\"}}")))
                .unwrap_or_else(|| panic!("{m} missing:\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        assert_eq!(line("poolside_fragmentation_ratio"), 0.0);
        assert_eq!(line("poolside_cached_bytes"), (27 * GIB) as f64);
        assert_eq!(line("poolside_largest_free_block_bytes"), (20 * GIB) as f64);
        assert_eq!(line("poolside_peak_overhead_ratio"), 29.0 / 28.0);
    }
}
