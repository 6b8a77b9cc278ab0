//! Reading a PyTorch memory snapshot (`torch.cuda.memory._dump_snapshot`): a pickle of
//! builtins only. serde-pickle decodes it into plain values and never runs code; a
//! reference to any Python global (which would need code to build) is refused.

use serde_pickle::{DeOptions, HashableValue, Value};
use std::collections::BTreeMap;

/// One trace entry that matters to the replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub action: Action,
    pub addr: u64,
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
    Other,
}

/// One device's trace, and what its segments held when the snapshot was taken.
#[derive(Clone, Debug, Default)]
pub struct DeviceTrace {
    pub device: i32,
    pub events: Vec<Event>,
    /// Reserved and allocated bytes at dump time (from `segments`).
    pub end_reserved: u64,
    pub end_allocated: u64,
}

type Dict = BTreeMap<HashableValue, Value>;

fn key<'a>(d: &'a Dict, k: &str) -> Option<&'a Value> {
    d.get(&HashableValue::String(k.to_string()))
}

fn int(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::I64(i)) => *i as u64,
        Some(Value::Int(b)) => b.to_string().parse::<i128>().map(|i| i as u64).unwrap_or(0),
        Some(Value::Bool(b)) => *b as u64,
        _ => 0,
    }
}

fn text(v: Option<&Value>) -> &str {
    match v {
        Some(Value::String(s)) => s,
        _ => "",
    }
}

fn list(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::List(l)) | Some(Value::Tuple(l)) => l,
        _ => &[],
    }
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
        _ => Action::Other,
    }
}

/// Decodes a snapshot from its bytes.
pub fn parse(bytes: &[u8]) -> Result<Vec<DeviceTrace>, String> {
    let v = serde_pickle::value_from_slice(bytes, DeOptions::new())
        .map_err(|e| format!("not a PyTorch memory snapshot (pickle of builtins): {e}"))?;
    let Value::Dict(top) = v else {
        return Err("not a PyTorch memory snapshot: the top level is not a dict".into());
    };
    let traces = key(&top, "device_traces")
        .ok_or("not a PyTorch memory snapshot: no 'device_traces' key")?;
    let mut out: Vec<DeviceTrace> = Vec::new();
    for (dev, trace) in list(Some(traces)).iter().enumerate() {
        let mut t = DeviceTrace {
            device: dev as i32,
            ..Default::default()
        };
        for e in list(Some(trace)) {
            let Value::Dict(e) = e else { continue };
            t.events.push(Event {
                action: action(text(key(e, "action"))),
                addr: int(key(e, "addr")),
                size: int(key(e, "size")),
                stream: int(key(e, "stream")),
            });
        }
        out.push(t);
    }
    for seg in list(key(&top, "segments")) {
        let Value::Dict(s) = seg else { continue };
        let dev = int(key(s, "device")) as usize;
        if dev >= out.len() {
            continue;
        }
        out[dev].end_reserved += int(key(s, "total_size"));
        out[dev].end_allocated += int(key(s, "allocated_size"));
    }
    Ok(out)
}
