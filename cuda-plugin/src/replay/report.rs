//! The replay report: poolside's figures beside PyTorch's, as text or JSON.

use super::run::Figures;
use super::snapshot::{Action, DeviceTrace};
use crate::pool::oom::format_size;

/// What PyTorch's allocator did, from the trace: allocated bytes from alloc/free entries,
/// reserved bytes from segment entries, each starting from the state at the start of the
/// recording (the dump-time segments less the trace's net change).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Theirs {
    pub peak_allocated_bytes: u64,
    pub peak_reserved_bytes: u64,
    pub allocs: u64,
    pub segment_allocs: u64,
    pub ooms: u64,
}

impl Theirs {
    pub fn fragmentation(&self) -> f64 {
        if self.peak_reserved_bytes == 0 {
            0.0
        } else {
            1.0 - self.peak_allocated_bytes as f64 / self.peak_reserved_bytes as f64
        }
    }

    /// Allocations that did not need a new segment or mapping.
    pub fn hit_rate(&self) -> f64 {
        if self.allocs == 0 {
            0.0
        } else {
            self.allocs.saturating_sub(self.segment_allocs) as f64 / self.allocs as f64
        }
    }
}

/// PyTorch's figures (peaks are the largest of any device).
pub fn pytorch_figures(traces: &[DeviceTrace]) -> Theirs {
    let mut out = Theirs::default();
    for t in traces {
        let (mut alloc, mut peak_alloc, mut res, mut peak_res) = (0i128, 0i128, 0i128, 0i128);
        let mut sizes = std::collections::HashMap::new();
        let free_on = if t.events.iter().any(|e| e.action == Action::FreeCompleted) {
            Action::FreeCompleted
        } else {
            Action::FreeRequested
        };
        for e in &t.events {
            match e.action {
                Action::Alloc => {
                    alloc += e.size as i128;
                    sizes.insert(e.addr, e.size);
                    out.allocs += 1;
                }
                a if a == free_on => alloc -= e.size as i128,
                Action::SegmentAlloc | Action::SegmentMap => {
                    res += e.size as i128;
                    out.segment_allocs += 1;
                }
                Action::SegmentFree | Action::SegmentUnmap => res -= e.size as i128,
                Action::Oom => out.ooms += 1,
                _ => {}
            }
            peak_alloc = peak_alloc.max(alloc);
            peak_res = peak_res.max(res);
        }
        // The state when recording began: what the dump shows, less the trace's changes.
        let start_alloc = (t.end_allocated as i128 - alloc).max(0);
        let start_res = (t.end_reserved as i128 - res).max(0);
        out.peak_allocated_bytes = out
            .peak_allocated_bytes
            .max((start_alloc + peak_alloc) as u64);
        out.peak_reserved_bytes = out.peak_reserved_bytes.max((start_res + peak_res) as u64);
    }
    out
}

/// `{"poolside": {...}, "pytorch": {...}}`.
pub fn json(ours: &Figures, theirs: &Theirs) -> String {
    format!(
        concat!(
            "{{\"poolside\": {{\"peak_allocated_bytes\": {}, \"peak_reserved_bytes\": {}, ",
            "\"fragmentation\": {:.6}, \"hit_rate\": {:.6}, \"ns_per_op\": {:.1}, ",
            "\"allocs\": {}, \"frees\": {}, \"unknown_frees\": {}, \"alloc_retries\": {}, \"ooms\": {}}}, ",
            "\"pytorch\": {{\"peak_allocated_bytes\": {}, \"peak_reserved_bytes\": {}, ",
            "\"fragmentation\": {:.6}, \"hit_rate\": {:.6}, \"allocs\": {}, \"segment_allocs\": {}, \"ooms\": {}}}}}"
        ),
        ours.peak_allocated_bytes,
        ours.peak_reserved_bytes,
        ours.fragmentation(),
        ours.hit_rate(),
        ours.ns_per_op,
        ours.allocs,
        ours.frees,
        ours.unknown_frees,
        ours.alloc_retries,
        ours.ooms,
        theirs.peak_allocated_bytes,
        theirs.peak_reserved_bytes,
        theirs.fragmentation(),
        theirs.hit_rate(),
        theirs.allocs,
        theirs.segment_allocs,
        theirs.ooms,
    )
}

/// A two-column table.
pub fn text(ours: &Figures, theirs: &Theirs) -> String {
    let mut s = format!("{:<24}{:>18}{:>18}\n", "", "poolside", "pytorch");
    let row = |s: &mut String, name: &str, a: String, b: String| {
        *s += &format!("{name:<24}{a:>18}{b:>18}\n");
    };
    row(
        &mut s,
        "peak allocated",
        format_size(ours.peak_allocated_bytes),
        format_size(theirs.peak_allocated_bytes),
    );
    row(
        &mut s,
        "peak reserved",
        format_size(ours.peak_reserved_bytes),
        format_size(theirs.peak_reserved_bytes),
    );
    row(
        &mut s,
        "fragmentation",
        format!("{:.2}%", 100.0 * ours.fragmentation()),
        format!("{:.2}%", 100.0 * theirs.fragmentation()),
    );
    row(
        &mut s,
        "hit rate",
        format!("{:.2}%", 100.0 * ours.hit_rate()),
        format!("{:.2}%", 100.0 * theirs.hit_rate()),
    );
    row(
        &mut s,
        "ns per operation",
        format!("{:.0}", ours.ns_per_op),
        "-".into(),
    );
    row(
        &mut s,
        "allocations",
        ours.allocs.to_string(),
        theirs.allocs.to_string(),
    );
    row(
        &mut s,
        "out of memory",
        ours.ooms.to_string(),
        theirs.ooms.to_string(),
    );
    s += &format!(
        "{} free(s) of addresses allocated before the recording began were skipped.\n",
        ours.unknown_frees
    );
    s
}
