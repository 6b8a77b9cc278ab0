//! Reading a PyTorch memory snapshot (`torch.cuda.memory._dump_snapshot`: `pickle.dump` of
//! the dict `torch.cuda.memory._snapshot()` returns) into per-device traces and segments.
//!
//! The dict, as torch 2.11 builds it (torch/csrc/cuda/Module.cpp, `_snapshot`'s docstring):
//! - `segments`: one dict per segment: `device`, `address`, `total_size`,
//!   `allocated_size`, `active_size`, `requested_size`, `stream`, `segment_type`,
//!   `segment_pool_id` (a tuple), `is_expandable`, `frames`, and `blocks`: dicts with
//!   `address` (absent before torch 2.1: blocks then follow each other from the segment's
//!   address), `size`, `requested_size`, `state` (`active_allocated`,
//!   `active_pending_free`, `inactive`) and `frames`.
//! - `device_traces`: one list per device of entries: `action`, `addr` (`device_free`
//!   for `oom`), `size`, `stream`, `time_us`, `frames`, `compile_context`,
//!   `user_metadata`.
//! - `allocator_settings` (`PYTORCH_CUDA_ALLOC_CONF`, `expandable_segments`, ...),
//!   `external_annotations`: not needed to replay.
//!
//! The snapshot records no device total: the replay derives a capacity (see `run`).
//! Frames (shared between entries through the pickle memo) are never looked at.

use super::pickle::{decode_salvage, Arena, V};

/// One trace entry that matters to the replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub action: Action,
    /// Block address, or for `oom` the free device memory the driver reported.
    pub addr: u64,
    /// Requested bytes for alloc / free entries, mapped bytes for segment entries.
    pub size: u64,
    pub stream: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Alloc,
    FreeRequested,
    FreeCompleted,
    SegmentAlloc,
    SegmentFree,
    SegmentMap,
    SegmentUnmap,
    Oom,
    Snapshot,
    Other,
}

/// A block of a segment at dump time.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub address: u64,
    pub size: u64,
    pub requested_size: u64,
    /// `active_allocated` or `active_pending_free`: a tensor still holds it.
    pub live: bool,
}

/// A segment at dump time.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub address: u64,
    pub total_size: u64,
    pub stream: u64,
    pub blocks: Vec<Block>,
}

/// One device's trace, and its segments when the snapshot was taken.
#[derive(Clone, Debug, Default)]
pub struct DeviceTrace {
    pub device: i32,
    pub events: Vec<Event>,
    pub segments: Vec<Segment>,
    /// Trace entries that could not be read (not a dict, no known action, ...).
    pub unreadable: u64,
}

impl DeviceTrace {
    /// Reserved bytes at dump time.
    pub fn end_reserved(&self) -> u64 {
        self.segments
            .iter()
            .fold(0u64, |t, s| t.saturating_add(s.total_size))
    }
}

/// A whole snapshot.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// One per device that has a trace or a segment, in device order.
    pub devices: Vec<DeviceTrace>,
    /// `allocator_settings["PYTORCH_CUDA_ALLOC_CONF"]`, when recorded.
    pub alloc_conf: Option<String>,
    /// The input ended at this byte, before the pickle's end: what it held was read.
    pub cut_at: Option<usize>,
}

fn uint(a: &Arena, v: Option<V>) -> Option<u64> {
    // Streams are pointers and may come back negative through int64_t: keep the bits.
    a.int(v?).and_then(|i| {
        i64::try_from(i)
            .map(|i| i as u64)
            .ok()
            .or(u64::try_from(i).ok())
    })
}

fn action(s: &str) -> Action {
    match s {
        "alloc" => Action::Alloc,
        "free_requested" => Action::FreeRequested,
        "free_completed" => Action::FreeCompleted,
        "segment_alloc" => Action::SegmentAlloc,
        "segment_free" => Action::SegmentFree,
        "segment_map" => Action::SegmentMap,
        "segment_unmap" => Action::SegmentUnmap,
        "oom" => Action::Oom,
        "snapshot" => Action::Snapshot,
        _ => Action::Other,
    }
}

/// Entry, segment and block dicts have about ten keys; a bigger one is not read (its
/// keys are searched one by one, and one shared dict can be referenced by every entry).
const MAX_KEYS: usize = 64;

fn small_dict(a: &Arena, v: V) -> bool {
    a.dict(v).is_some_and(|d| d.len() <= MAX_KEYS)
}

fn event(a: &Arena, e: V) -> Option<Event> {
    if !small_dict(a, e) {
        return None;
    }
    let act = action(a.str(a.get(e, "action")?)?);
    let addr_key = if act == Action::Oom {
        "device_free"
    } else {
        "addr"
    };
    Some(Event {
        action: act,
        addr: uint(a, a.get(e, addr_key)).unwrap_or(0),
        size: uint(a, a.get(e, "size"))?,
        stream: uint(a, a.get(e, "stream")).unwrap_or(0),
    })
}

fn segment(a: &Arena, s: V, budget: &mut Budget) -> Result<Option<(usize, Segment)>, String> {
    if !small_dict(a, s) {
        return Ok(None);
    }
    let Some(address) = uint(a, a.get(s, "address")) else {
        return Ok(None);
    };
    let Some(total_size) = uint(a, a.get(s, "total_size")) else {
        return Ok(None);
    };
    let device = uint(a, a.get(s, "device")).unwrap_or(0) as usize;
    let mut seg = Segment {
        address,
        total_size,
        stream: uint(a, a.get(s, "stream")).unwrap_or(0),
        blocks: Vec::new(),
    };
    let mut next = address;
    for &b in a.get(s, "blocks").and_then(|b| a.seq(b)).unwrap_or(&[]) {
        budget.spend()?;
        let Some(size) = uint(a, a.get(b, "size")).filter(|_| small_dict(a, b)) else {
            continue;
        };
        let address = uint(a, a.get(b, "address")).unwrap_or(next);
        next = address.saturating_add(size);
        let state = a.get(b, "state").and_then(|s| a.str(s)).unwrap_or("");
        seg.blocks.push(Block {
            address,
            size,
            requested_size: uint(a, a.get(b, "requested_size")).unwrap_or(size),
            live: state.starts_with("active"),
        });
    }
    Ok(Some((device, seg)))
}

/// Entries, segments and blocks read, against what the input's size allows: each costs
/// the pickle a dozen bytes or more, but a memoized list can be referenced again for one
/// byte, and a forged file could make the reader walk one huge list over and over.
struct Budget {
    left: usize,
}

impl Budget {
    fn spend(&mut self) -> Result<(), String> {
        self.left = self.left.checked_sub(1).ok_or(
            "not a PyTorch memory snapshot: it lists the same entries over and over \
             (more entries than its size allows)",
        )?;
        Ok(())
    }
}

/// Devices beyond this index are refused (a forged device number must not size a table).
const MAX_DEVICES: usize = 4096;

/// Decodes a snapshot from its bytes. A file cut short gives what it held, with
/// [`Snapshot::cut_at`] set.
pub fn parse(bytes: &[u8]) -> Result<Snapshot, String> {
    let d = decode_salvage(bytes)
        .map_err(|e| format!("not a PyTorch memory snapshot (pickle of builtins): {e}"))?;
    let a = &d.arena;
    if a.dict(d.root).is_none() {
        return Err("not a PyTorch memory snapshot: the top level is not a dict".into());
    }
    let traces = a.get(d.root, "device_traces").and_then(|t| a.seq(t));
    let segments = a.get(d.root, "segments").and_then(|s| a.seq(s));
    if traces.is_none() && segments.is_none() && d.cut_at.is_none() {
        return Err("not a PyTorch memory snapshot: no 'device_traces' or 'segments' list".into());
    }
    let mut devices: Vec<DeviceTrace> = Vec::new();
    let slot = |devices: &mut Vec<DeviceTrace>, dev: usize| -> Result<usize, String> {
        if dev >= MAX_DEVICES {
            return Err(format!("not a PyTorch memory snapshot: device {dev}"));
        }
        while devices.len() <= dev {
            let device = devices.len() as i32;
            devices.push(DeviceTrace {
                device,
                ..Default::default()
            });
        }
        Ok(dev)
    };
    let mut budget = Budget {
        left: bytes.len() + 1024,
    };
    for (dev, &trace) in traces.unwrap_or(&[]).iter().enumerate() {
        let i = slot(&mut devices, dev)?;
        for &e in a.seq(trace).unwrap_or(&[]) {
            budget.spend()?;
            match event(a, e) {
                Some(ev) => devices[i].events.push(ev),
                None => devices[i].unreadable += 1,
            }
        }
    }
    for &s in segments.unwrap_or(&[]) {
        budget.spend()?;
        if let Some((dev, seg)) = segment(a, s, &mut budget)? {
            let i = slot(&mut devices, dev)?;
            devices[i].segments.push(seg);
        }
    }
    let alloc_conf = a
        .get(d.root, "allocator_settings")
        .and_then(|s| a.get(s, "PYTORCH_CUDA_ALLOC_CONF"))
        .and_then(|s| a.str(s))
        .map(str::to_string);
    // Devices with neither events nor segments (an idle GPU's empty trace) are dropped.
    devices.retain(|t| !t.events.is_empty() || !t.segments.is_empty() || t.unreadable > 0);
    Ok(Snapshot {
        devices,
        alloc_conf,
        cut_at: d.cut_at,
    })
}
