//! PyTorch's memory snapshot from poolside's own pools: `poolside_cuda_snapshot` (JSON of
//! the dict `torch.cuda.memory._snapshot()` returns, less the stack frames, which the
//! Python side adds as empty lists) and `poolside_cuda_record_history` (the switch
//! `torch.cuda.memory._record_memory_history` turns).
//!
//! JSON rather than a C struct: the snapshot is a tree of variable-length lists, read once
//! by Python's `json` module; every value is an integer, a boolean or a fixed ASCII name,
//! so the writer below needs no escaping.

use super::global::{global, Global};
use crate::pool::history::{self, Action, TraceEntry};
use crate::pool::walk::SegmentInfo;
use crate::pool::DevicePool;
use std::ffi::{c_char, c_int, CString};
use std::fmt::Write;

/// Writes one segment as a JSON object.
fn segment_json(out: &mut String, s: &SegmentInfo) {
    let _ = write!(
        out,
        "{{\"device\":{},\"address\":{},\"total_size\":{},\"allocated_size\":{},\
         \"active_size\":{},\"requested_size\":{},\"stream\":{},\"segment_type\":\"{}\",\
         \"segment_pool_id\":[{},{}],\"is_expandable\":{},\"blocks\":[",
        s.device,
        s.address,
        s.total_size,
        s.allocated_size(),
        s.active_size(),
        s.requested_size(),
        s.stream,
        if s.large { "large" } else { "small" },
        s.pool_id.0,
        s.pool_id.1,
        s.expandable,
    );
    for (i, b) in s.blocks.iter().enumerate() {
        let _ = write!(
            out,
            "{}{{\"address\":{},\"size\":{},\"requested_size\":{},\"state\":\"{}\"}}",
            if i > 0 { "," } else { "" },
            b.address,
            b.size,
            b.requested_size,
            b.state.name(),
        );
    }
    out.push_str("]}");
}

/// Writes one trace entry as a JSON object (`device_free` in place of `addr` for `oom`,
/// as PyTorch does).
fn entry_json(out: &mut String, e: &TraceEntry) {
    let addr_key = if e.action == Action::Oom {
        "device_free"
    } else {
        "addr"
    };
    let _ = write!(
        out,
        "{{\"action\":\"{}\",\"{addr_key}\":{},\"size\":{},\"stream\":{},\"time_us\":{}}}",
        e.action.name(),
        e.addr,
        e.size,
        e.stream,
        e.time_us,
    );
}

/// The snapshot of `pools` (with their device numbers) for a process with `devices`
/// devices: `segments`, `device_traces` (one list per device, empty for a device
/// without a pool), and the allocator settings that shape the segments.
pub fn snapshot_json<'a>(
    pools: impl Iterator<Item = &'a DevicePool>,
    devices: usize,
    max_split_size: usize,
    gc_threshold: f64,
) -> String {
    let mut segments = Vec::new();
    let mut traces: Vec<Vec<TraceEntry>> = vec![Vec::new(); devices];
    let mut expandable = false;
    for p in pools {
        expandable |= p.is_expandable();
        segments.extend(p.segments());
        if let Some(t) = usize::try_from(p.dev).ok().and_then(|d| traces.get_mut(d)) {
            *t = p.history();
        }
    }
    let mut out = String::from("{\"segments\":[");
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        segment_json(&mut out, s);
    }
    out.push_str("],\"device_traces\":[");
    for (d, t) in traces.iter().enumerate() {
        out.push_str(if d > 0 { ",[" } else { "[" });
        for (i, e) in t.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            entry_json(&mut out, e);
        }
        out.push(']');
    }
    let _ = write!(
        out,
        "],\"allocator_settings\":{{\"expandable_segments\":{expandable},\
         \"max_split_size\":{},\"garbage_collection_threshold\":{}}}}}",
        if max_split_size == usize::MAX {
            -1
        } else {
            max_split_size as i64
        },
        if gc_threshold.is_finite() {
            gc_threshold
        } else {
            0.0
        },
    );
    out
}

fn process_snapshot(g: &Global) -> String {
    snapshot_json(
        g.pools(),
        g.device_count(),
        g.cfg.max_split_size,
        g.cfg.gc_threshold,
    )
}

/// The memory snapshot of every device as JSON in `*out` (see python/poolside/torch/
/// _snapshot.py for its shape). Returns 0, 1 when no driver works (`*out` then holds
/// the reason), 2 for a NULL `out`. Release `*out` with [`poolside_cuda_snapshot_free`].
///
/// # Safety
/// `out` is NULL or a valid pointer to write to.
#[no_mangle]
pub unsafe extern "C" fn poolside_cuda_snapshot(out: *mut *mut c_char) -> c_int {
    if out.is_null() {
        return 2;
    }
    let (code, text) = match global() {
        Ok(g) => (0, process_snapshot(g)),
        Err(e) => (1, format!("poolside: {e}")),
    };
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    // SAFETY: out is valid by contract; ownership passes to the caller.
    unsafe { *out = text.into_raw() };
    code
}

/// Releases a string returned by [`poolside_cuda_snapshot`].
///
/// # Safety
/// `s` is null or came from `poolside_cuda_snapshot`, and is released once.
#[no_mangle]
pub unsafe extern "C" fn poolside_cuda_snapshot_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: s came from CString::into_raw in poolside_cuda_snapshot.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// torch.cuda.memory._record_memory_history: `enabled` non-zero records alloc, free and
/// segment events on every device, keeping the newest `max_entries` per device (0 counts
/// as 1); zero stops recording and forgets what was recorded, as PyTorch does.
/// `clear` non-zero forgets what was recorded before enabling. Bit `1 << n` of
/// `skip_actions` leaves out action `n` (0 alloc, 1 free_requested, 2 free_completed,
/// 3 segment_alloc, 4 segment_free, 5 segment_map, 6 segment_unmap, 7 oom). Returns 0,
/// or 1 when no driver works.
#[no_mangle]
pub extern "C" fn poolside_cuda_record_history(
    enabled: c_int,
    max_entries: usize,
    clear: c_int,
    skip_actions: u32,
) -> c_int {
    let Ok(g) = global() else {
        return 1;
    };
    history::set_recording(enabled != 0, max_entries, skip_actions);
    for p in g.pools() {
        if enabled == 0 || clear != 0 {
            p.clear_history();
        } else {
            p.bound_history(max_entries);
        }
    }
    0
}
