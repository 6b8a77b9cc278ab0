//! `poolside replay SNAPSHOT.pickle`: replays the alloc/free sequence of a PyTorch memory
//! snapshot through the pool on the simulated driver, twice (expandable segments on, as
//! poolside runs by default, and off), and sets it beside what PyTorch's allocator did.
//!
//! - `pickle`: a strict pickle machine for builtin values (no code runs, no recursion).
//! - `snapshot`: the snapshot's schema: per-device traces and segments.
//! - `trace`: what a trace says on its own: the live blocks when recording began, peak
//!   allocated bytes, PyTorch's reserved bytes, the device capacity.
//! - `run`: the replay through a pool; `report`: text and JSON.

pub mod pickle;
pub mod report;
pub mod run;
pub mod snapshot;
pub mod trace;

use std::path::Path;

/// `device_capacity_mb` when the environment sets it (else the snapshot decides).
fn capacity_setting(cfg: &crate::config::PluginConfig) -> Option<u64> {
    ["POOLSIDE_CONF", "PYTORCH_CUDA_ALLOC_CONF"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .any(|v| v.contains("device_capacity_mb"))
        .then_some(cfg.sim_capacity)
}

/// Replays the snapshot in `bytes` with `cfg` (expandable segments forced on for the main
/// run and off for the second).
pub fn analyse(
    bytes: &[u8],
    cfg: &crate::config::PluginConfig,
    capacity: Option<u64>,
) -> Result<report::Report, String> {
    let snap = snapshot::parse(bytes)?;
    let mut on = cfg.clone();
    on.expandable_segments = true;
    let mut off = cfg.clone();
    off.expandable_segments = false;
    let mut rep = report::Report {
        bytes: bytes.len(),
        cut_at: snap.cut_at,
        alloc_conf: snap.alloc_conf.clone(),
        devices: Vec::new(),
    };
    for t in &snap.devices {
        let plan = trace::Plan::of(t, snap.cut_at.is_some());
        let (cap, src) = plan.capacity(capacity, cfg.sim_capacity);
        let ours = run::replay_device(t, &plan, &on, cap)?;
        let ours_fixed = run::replay_device(t, &plan, &off, cap)?;
        rep.devices.push(report::DeviceReport {
            device: t.device,
            unreadable: t.unreadable,
            plan,
            capacity_source: src,
            ours,
            ours_fixed,
        });
    }
    Ok(rep)
}

/// Replays the snapshot at `path`; returns the report (JSON with `json`).
pub fn run(path: &Path, json: bool) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cfg = crate::config::PluginConfig::from_env();
    let rep = analyse(&bytes, &cfg, capacity_setting(&cfg))?;
    Ok(if json {
        report::json(&rep)
    } else {
        report::text(&rep)
    })
}
