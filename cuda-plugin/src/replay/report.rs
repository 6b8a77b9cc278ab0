//! The replay report, per device: peak allocated; peak reserved under PyTorch as
//! recorded, under poolside, and under poolside with `expandable_segments:false`; what
//! the replay could not do and why. As text or JSON.

use super::run::DeviceRun;
use super::trace::{CapacitySource, Plan};
use crate::pool::oom::format_size;
use std::fmt::Write;

/// poolside's peak reserved may be at most this times the peak allocated.
pub const TARGET_RATIO: f64 = 1.05;

/// One device's figures.
#[derive(Clone, Debug)]
pub struct DeviceReport {
    pub device: i32,
    pub plan: Plan,
    pub unreadable: u64,
    pub capacity_source: CapacitySource,
    /// Expandable segments on (poolside's default).
    pub ours: DeviceRun,
    /// `expandable_segments:false`: cuMemAlloc segments.
    pub ours_fixed: DeviceRun,
}

impl DeviceReport {
    /// Trace entries (allocs and frees) the main replay could not carry out.
    pub fn not_replayed(&self) -> u64 {
        let r = &self.ours;
        r.ooms + r.failed + r.unknown_frees + self.unreadable
    }

    /// poolside's peak reserved over the peak allocated.
    pub fn ratio(&self) -> f64 {
        ratio(
            self.ours.peak_reserved_bytes,
            self.plan.peak_allocated_bytes,
        )
    }

    /// Within [`TARGET_RATIO`] of the peak allocated and not above PyTorch's peak reserved
    /// (when the snapshot shows PyTorch's).
    pub fn target_met(&self) -> bool {
        let pt = self.plan.pytorch_peak_reserved_bytes;
        self.ours.ooms == 0
            && self.ratio() <= TARGET_RATIO
            && (pt == 0 || self.ours.peak_reserved_bytes <= pt)
    }
}

/// The whole report.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub devices: Vec<DeviceReport>,
    pub bytes: usize,
    pub cut_at: Option<usize>,
    pub alloc_conf: Option<String>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn run_json(r: &DeviceRun, peak_alloc: u64) -> String {
    format!(
        concat!(
            "{{\"peak_reserved_bytes\": {}, \"reserved_over_allocated\": {:.6}, ",
            "\"pool_peak_allocated_bytes\": {}, \"allocs\": {}, \"frees\": {}, ",
            "\"hit_rate\": {:.6}, \"alloc_retries\": {}, \"ooms\": {}, \"failed\": {}, ",
            "\"start_failed\": {}, \"unknown_frees\": {}, \"alloc_over_live\": {}, ",
            "\"ns_per_op\": {:.1}}}"
        ),
        r.peak_reserved_bytes,
        ratio(r.peak_reserved_bytes, peak_alloc),
        r.peak_allocated_bytes,
        r.allocs,
        r.frees,
        ratio(r.hits, r.hits + r.misses),
        r.alloc_retries,
        r.ooms,
        r.failed,
        r.start_failed,
        r.unknown_frees,
        r.alloc_over_live,
        r.ns_per_op,
    )
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o += "\\\"",
            '\\' => o += "\\\\",
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o + "\""
}

fn opt(v: Option<usize>) -> String {
    v.map_or("null".into(), |v| v.to_string())
}

/// The report as one JSON object.
pub fn json(rep: &Report) -> String {
    let mut s = format!(
        concat!(
            "{{\"snapshot\": {{\"bytes\": {}, \"cut_short_at_byte\": {}, \"allocator_conf\": {}}}, ",
            "\"units\": \"allocated: requested sizes rounded up to 512 B; reserved: device bytes\", ",
            "\"target_ratio\": {}, \"devices\": ["
        ),
        rep.bytes,
        opt(rep.cut_at),
        rep.alloc_conf.as_deref().map_or("null".into(), json_str),
        TARGET_RATIO,
    );
    for (i, d) in rep.devices.iter().enumerate() {
        let p = &d.plan;
        if i > 0 {
            s += ", ";
        }
        let _ = write!(
            s,
            concat!(
                "{{\"device\": {}, \"capacity_bytes\": {}, \"capacity_source\": \"{}\", ",
                "\"peak_allocated_bytes\": {}, ",
                "\"trace\": {{\"entries\": {}, \"allocs\": {}, \"frees\": {}, \"unreadable\": {}, ",
                "\"starts_mid_run\": {}, \"start_blocks\": {}, \"start_bytes\": {}, ",
                "\"repeated_frees\": {}, \"live_not_in_dump\": {}, \"recorded_ooms\": {}, ",
                "\"start_from_trace_only\": {}}}, ",
                "\"pytorch\": {{\"peak_reserved_bytes\": {}, \"reserved_over_allocated\": {:.6}, ",
                "\"start_reserved_bytes\": {}, \"segment_allocs\": {}, \"matches_dump\": {}}}, ",
                "\"poolside\": {}, \"poolside_expandable_false\": {}, ",
                "\"not_replayed\": {}, \"target_met\": {}}}"
            ),
            d.device,
            d.ours.capacity_bytes,
            d.capacity_source.key(),
            p.peak_allocated_bytes,
            p.entries,
            p.allocs,
            p.frees,
            d.unreadable,
            !p.start.is_empty(),
            p.start.len(),
            p.start_bytes,
            p.repeated_frees,
            p.live_not_in_dump,
            p.recorded_ooms,
            p.trace_only,
            p.pytorch_peak_reserved_bytes,
            ratio(p.pytorch_peak_reserved_bytes, p.peak_allocated_bytes),
            p.pytorch_start_reserved_bytes,
            p.pytorch_segment_allocs,
            !p.reserved_mismatch,
            run_json(&d.ours, p.peak_allocated_bytes),
            run_json(&d.ours_fixed, p.peak_allocated_bytes),
            d.not_replayed(),
            d.target_met(),
        );
    }
    s += "]}\n";
    s
}

/// The report as text: a table per device, then what was not replayed.
pub fn text(rep: &Report) -> String {
    let mut s = String::new();
    if let Some(at) = rep.cut_at {
        let _ = writeln!(
            s,
            "The snapshot is cut short: the pickle stops at byte {at} of {} before its end. \
             The trace entries it holds were replayed; what followed is unknown.",
            rep.bytes
        );
    }
    if rep.devices.is_empty() {
        s += "The snapshot holds no trace and no segments: nothing to replay.\n";
    }
    for d in &rep.devices {
        let p = &d.plan;
        let _ = writeln!(
            s,
            "device {}: {} trace entries ({} allocs, {} frees); simulated device {} ({})",
            d.device,
            p.entries,
            p.allocs,
            p.frees,
            format_size(d.ours.capacity_bytes),
            d.capacity_source.describe()
        );
        if !p.start.is_empty() {
            let _ = writeln!(
                s,
                "  recording began mid-run: {} block(s), {}, live at its start were allocated first, for both allocators",
                p.start.len(),
                format_size(p.start_bytes)
            );
        }
        let _ = writeln!(
            s,
            "  {:<24}{:>14}{:>14}{:>30}",
            "", "pytorch", "poolside", "poolside (expandable:false)"
        );
        let row = |s: &mut String, name: &str, a: String, b: String, c: String| {
            let _ = writeln!(s, "  {name:<24}{a:>14}{b:>14}{c:>30}");
        };
        let pa = p.peak_allocated_bytes;
        row(
            &mut s,
            "peak allocated (512 B)",
            format_size(pa),
            format_size(pa),
            format_size(pa),
        );
        let pt = if p.pytorch_peak_reserved_bytes == 0 {
            "-".to_string()
        } else {
            format_size(p.pytorch_peak_reserved_bytes)
        };
        row(
            &mut s,
            "peak reserved",
            pt,
            format_size(d.ours.peak_reserved_bytes),
            format_size(d.ours_fixed.peak_reserved_bytes),
        );
        let r = |x: u64| {
            if x == 0 || pa == 0 {
                "-".to_string()
            } else {
                format!("{:.3}x", ratio(x, pa))
            }
        };
        row(
            &mut s,
            "reserved / allocated",
            r(p.pytorch_peak_reserved_bytes),
            r(d.ours.peak_reserved_bytes),
            r(d.ours_fixed.peak_reserved_bytes),
        );
        row(
            &mut s,
            "out of memory",
            p.recorded_ooms.to_string(),
            d.ours.ooms.to_string(),
            d.ours_fixed.ooms.to_string(),
        );
        row(
            &mut s,
            "alloc retries",
            "-".into(),
            d.ours.alloc_retries.to_string(),
            d.ours_fixed.alloc_retries.to_string(),
        );
        row(
            &mut s,
            "ns per operation",
            "-".into(),
            format!("{:.0}", d.ours.ns_per_op),
            format!("{:.0}", d.ours_fixed.ns_per_op),
        );
        let _ = writeln!(
            s,
            "  target (poolside reserved <= {TARGET_RATIO} x allocated, and <= pytorch's): {}",
            if d.target_met() {
                "met".to_string()
            } else {
                format!("missed (ratio {:.3}x)", d.ratio())
            }
        );
        let o = &d.ours;
        if o.alloc_retries > 0 && o.peak_reserved_bytes >= o.capacity_bytes {
            let _ = writeln!(
                s,
                "  poolside filled the simulated device and stayed within it by releasing cache \
                 {} time(s) (a device synchronize each on a GPU); a larger device_capacity_mb \
                 shows its own footprint",
                o.alloc_retries
            );
        }
        let n = d.not_replayed();
        if n == 0 {
            s += "  every alloc and free of the trace was replayed\n";
        } else {
            let _ = write!(s, "  not replayed: {n} entries:");
            for (count, why) in [
                (
                    o.ooms,
                    "alloc(s) out of memory on the simulated device (their frees skipped)",
                ),
                (o.failed, "alloc(s) failed in the driver"),
                (o.unknown_frees, "free(s) of an address already freed"),
                (d.unreadable, "unreadable entr(ies)"),
            ] {
                if count > 0 {
                    let _ = write!(s, " {count} {why};");
                }
            }
            s += "\n";
        }
        let f = &d.ours_fixed;
        if f.ooms + f.failed + f.unknown_frees > 0 {
            let _ = writeln!(
                s,
                "  with expandable_segments:false, {} alloc(s) ran out of memory and {} failed",
                f.ooms, f.failed
            );
        }
        if p.trace_only {
            s += "  the start state and PyTorch's reserved bytes come from the trace alone (the dump's segments describe a later point)\n";
        }
        if o.start_failed > 0 {
            let _ = writeln!(
                s,
                "  {} block(s) live at the start did not fit on the simulated device",
                o.start_failed
            );
        }
        if p.reserved_mismatch || p.live_not_in_dump > 0 {
            let _ = writeln!(
                s,
                "  the trace does not end where the dump's segments are ({} block(s) it leaves live are not in the dump): it stops before the dump",
                p.live_not_in_dump
            );
        }
    }
    s
}
