//! What a device's trace says on its own, whatever allocator replays it: the blocks live
//! when recording began, the peak allocated bytes, PyTorch's reserved bytes as recorded,
//! and the capacity the simulated device gets.
//!
//! Units: allocated bytes are the trace's requested sizes each rounded up to 512 B
//! (PyTorch's block granularity, `kMinBlockSize`), the same figure for both allocators.
//! Reserved bytes are what each allocator took from the device.

use super::snapshot::{Action, DeviceTrace};
use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// PyTorch's smallest block and rounding step.
pub const BLOCK_ROUND: u64 = 512;

/// `size` rounded up to [`BLOCK_ROUND`].
pub fn round(size: u64) -> u64 {
    size.div_ceil(BLOCK_ROUND).saturating_mul(BLOCK_ROUND)
}

/// A block live when recording began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartBlock {
    pub addr: u64,
    /// Requested bytes.
    pub size: u64,
    pub stream: u64,
}

/// Where the simulated device's capacity came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacitySource {
    /// `device_capacity_mb` in POOLSIDE_CONF.
    Setting,
    /// An `oom` entry: PyTorch's reserved bytes then plus the free memory the driver reported.
    OomEntry,
    /// The snapshot records no device total: PyTorch's own peak reserved, i.e. the
    /// smallest device on which PyTorch ran this trace as recorded.
    PytorchPeak,
    /// No segment information at all: the configured default.
    Default,
}

impl CapacitySource {
    pub fn describe(self) -> &'static str {
        match self {
            CapacitySource::Setting => "device_capacity_mb setting",
            CapacitySource::OomEntry => "PyTorch's reserved bytes plus the driver's free bytes at an oom entry",
            CapacitySource::PytorchPeak => "PyTorch's peak reserved: the snapshot records no device total; POOLSIDE_CONF=device_capacity_mb:N sets the real one",
            CapacitySource::Default => "default (the snapshot has no segment information)",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            CapacitySource::Setting => "setting",
            CapacitySource::OomEntry => "oom_entry",
            CapacitySource::PytorchPeak => "pytorch_peak_reserved",
            CapacitySource::Default => "default",
        }
    }
}

/// The allocator-independent reading of one device's trace.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Frees come from `free_completed`, or from `free_requested` when a trace has none.
    pub free_on: Option<Action>,
    /// Blocks live when recording began, to allocate before the trace.
    pub start: Vec<StartBlock>,
    pub start_bytes: u64,
    /// Peak of live bytes (rounded, start blocks included).
    pub peak_allocated_bytes: u64,
    /// Reserved bytes as PyTorch recorded them: at the start (the dump's segments less the
    /// trace's net segment change) and at the peak.
    pub pytorch_start_reserved_bytes: u64,
    pub pytorch_peak_reserved_bytes: u64,
    pub pytorch_segment_allocs: u64,
    /// The trace's reserved bytes went below zero before the start was added back: the
    /// dump's segments do not match the trace (the trace stopped before the dump).
    pub reserved_mismatch: bool,
    pub entries: u64,
    pub allocs: u64,
    pub frees: u64,
    pub recorded_ooms: u64,
    /// Capacity an `oom` entry shows (reserved then + free), the largest.
    pub oom_capacity: Option<u64>,
    /// Frees of an address already freed with no alloc between: not replayable.
    pub repeated_frees: u64,
    /// Blocks the trace leaves live that the dump does not show (the trace stopped before
    /// the dump, or the dump lost them).
    pub live_not_in_dump: u64,
    /// The file was cut short: the dump's segments (written before the traces) describe
    /// the end of a trace that is not all there, so the start comes from the trace alone
    /// and PyTorch's reserved bytes are the least the trace implies.
    pub trace_only: bool,
}

impl Plan {
    /// Reads `t`; `cut`: the snapshot file was cut short (see [`Plan::trace_only`]).
    pub fn of(t: &DeviceTrace, cut: bool) -> Plan {
        let mut p = Plan {
            entries: t.events.len() as u64,
            trace_only: cut,
            ..Default::default()
        };
        let has_completed = t.events.iter().any(|e| e.action == Action::FreeCompleted);
        let free_on = if has_completed {
            Action::FreeCompleted
        } else {
            Action::FreeRequested
        };
        p.free_on = Some(free_on);
        let is_free = |a: Action| a == Action::FreeCompleted || a == Action::FreeRequested;

        // The start: addresses whose first alloc/free entry is a free, and blocks the dump
        // shows live at addresses the trace never touches.
        let mut seen: HashMap<u64, bool> = HashMap::new();
        for e in &t.events {
            if e.action == Action::Alloc || is_free(e.action) {
                if let Entry::Vacant(v) = seen.entry(e.addr) {
                    v.insert(true);
                    if is_free(e.action) {
                        p.start.push(StartBlock {
                            addr: e.addr,
                            size: e.size,
                            stream: e.stream,
                        });
                    }
                }
            }
        }
        for s in t.segments.iter().filter(|_| !cut) {
            for b in s.blocks.iter().filter(|b| b.live) {
                if let Entry::Vacant(v) = seen.entry(b.address) {
                    v.insert(true);
                    p.start.push(StartBlock {
                        addr: b.address,
                        size: b.requested_size.max(1),
                        stream: s.stream,
                    });
                }
            }
        }
        p.start_bytes = p
            .start
            .iter()
            .fold(0u64, |t, b| t.saturating_add(round(b.size)));

        // Live and reserved bytes along the trace.
        let mut live: HashMap<u64, u64> = p.start.iter().map(|b| (b.addr, round(b.size))).collect();
        let (mut alloc, mut peak_alloc) = (p.start_bytes, p.start_bytes);
        let (mut res, mut low_res, mut peak_res) = (0i128, 0i128, 0i128);
        let mut oom_at: Vec<(i128, u64)> = Vec::new();
        for e in &t.events {
            match e.action {
                Action::Alloc => {
                    p.allocs += 1;
                    if let Some(old) = live.insert(e.addr, round(e.size)) {
                        alloc = alloc.saturating_sub(old);
                    }
                    alloc = alloc.saturating_add(round(e.size));
                    peak_alloc = peak_alloc.max(alloc);
                }
                a if a == free_on => {
                    p.frees += 1;
                    match live.remove(&e.addr) {
                        Some(s) => alloc = alloc.saturating_sub(s),
                        None => p.repeated_frees += 1,
                    }
                }
                Action::SegmentAlloc | Action::SegmentMap => {
                    p.pytorch_segment_allocs += 1;
                    res += e.size as i128;
                    peak_res = peak_res.max(res);
                }
                Action::SegmentFree | Action::SegmentUnmap => {
                    res -= e.size as i128;
                    low_res = low_res.min(res);
                }
                Action::Oom => {
                    p.recorded_ooms += 1;
                    oom_at.push((res, e.addr));
                }
                _ => {}
            }
        }
        p.peak_allocated_bytes = peak_alloc;
        let mut start_res = if cut {
            -low_res
        } else {
            t.end_reserved() as i128 - res
        };
        if start_res + low_res < 0 {
            // More freed than the dump and the trace account for.
            p.reserved_mismatch = true;
            start_res = -low_res;
        }
        p.pytorch_start_reserved_bytes = start_res.max(0) as u64;
        p.pytorch_peak_reserved_bytes = (start_res + peak_res).max(0) as u64;
        p.oom_capacity = oom_at
            .iter()
            .map(|&(r, free)| ((start_res + r).max(0) as u64).saturating_add(free))
            .max();
        let dump_live: std::collections::HashSet<u64> = t
            .segments
            .iter()
            .flat_map(|s| s.blocks.iter().filter(|b| b.live).map(|b| b.address))
            .collect();
        if !t.segments.is_empty() && !cut {
            p.live_not_in_dump = live.keys().filter(|a| !dump_live.contains(a)).count() as u64;
        }
        p
    }

    /// The simulated device's capacity: the setting when given, else what the snapshot
    /// shows, else `default`. Never below the trace's own peak.
    pub fn capacity(&self, setting: Option<u64>, default: u64) -> (u64, CapacitySource) {
        let (c, src) = if let Some(c) = setting {
            (c, CapacitySource::Setting)
        } else if let Some(c) = self.oom_capacity {
            (c, CapacitySource::OomEntry)
        } else if self.pytorch_peak_reserved_bytes > 0 {
            (
                self.pytorch_peak_reserved_bytes,
                CapacitySource::PytorchPeak,
            )
        } else {
            (default, CapacitySource::Default)
        };
        if src == CapacitySource::Setting {
            return (c, src);
        }
        let granule = 2u64 << 20;
        let c = c.max(self.peak_allocated_bytes);
        (c.div_ceil(granule).saturating_mul(granule), src)
    }
}
