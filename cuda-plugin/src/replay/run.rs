//! Replaying traces through pools on the simulated driver.

use super::snapshot::{Action, DeviceTrace};
use crate::config::PluginConfig;
use crate::driver::sim::SimDriver;
use crate::pool::DevicePool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What the pool did over the whole replay (summed over devices; peaks are the largest
/// of any device).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub peak_allocated_bytes: u64,
    pub peak_reserved_bytes: u64,
    pub allocs: u64,
    pub frees: u64,
    pub hits: u64,
    pub misses: u64,
    pub ooms: u64,
    pub alloc_retries: u64,
    /// Frees of addresses the trace never allocated (recording started mid-run): skipped.
    pub unknown_frees: u64,
    pub ns_per_op: f64,
}

impl Figures {
    /// 1 - peak allocated / peak reserved.
    pub fn fragmentation(&self) -> f64 {
        if self.peak_reserved_bytes == 0 {
            0.0
        } else {
            1.0 - self.peak_allocated_bytes as f64 / self.peak_reserved_bytes as f64
        }
    }

    /// Allocations served without new device memory.
    pub fn hit_rate(&self) -> f64 {
        if self.hits + self.misses == 0 {
            0.0
        } else {
            self.hits as f64 / (self.hits + self.misses) as f64
        }
    }
}

/// Frees come from `free_completed` entries; a trace that has none (older PyTorch)
/// uses `free_requested`.
fn free_action(t: &DeviceTrace) -> Action {
    if t.events.iter().any(|e| e.action == Action::FreeCompleted) {
        Action::FreeCompleted
    } else {
        Action::FreeRequested
    }
}

/// Replays every device's trace; the simulated devices have `cfg.sim_capacity` bytes
/// (default 16 GiB; set `device_capacity_mb` to match the traced GPU).
pub fn replay(traces: &[DeviceTrace], cfg: &PluginConfig) -> Result<Figures, String> {
    let driver = Arc::new(SimDriver::new(traces.len().max(1), cfg.sim_capacity));
    let mut f = Figures::default();
    let mut ops = 0u64;
    let mut ns = 0u128;
    for t in traces {
        let pool = DevicePool::new(driver.clone(), t.device, cfg)?;
        let free_on = free_action(t);
        let mut addrs: HashMap<u64, u64> = HashMap::new();
        for e in &t.events {
            if e.action == Action::Alloc {
                let start = Instant::now();
                let r = pool.malloc(e.size as usize, e.stream);
                ns += start.elapsed().as_nanos();
                ops += 1;
                f.allocs += 1;
                if let Ok(p) = r {
                    if p != 0 {
                        addrs.insert(e.addr, p);
                    }
                }
            } else if e.action == free_on {
                let Some(p) = addrs.remove(&e.addr) else {
                    f.unknown_frees += 1;
                    continue;
                };
                let start = Instant::now();
                let _ = pool.free(p);
                ns += start.elapsed().as_nanos();
                ops += 1;
                f.frees += 1;
            }
        }
        pool.check()?;
        let s = pool.stats();
        f.peak_allocated_bytes = f.peak_allocated_bytes.max(s.allocated_bytes.peak);
        f.peak_reserved_bytes = f.peak_reserved_bytes.max(s.reserved_bytes.peak);
        f.hits += s.hits;
        f.misses += s.misses;
        f.ooms += s.ooms;
        f.alloc_retries += s.alloc_retries;
    }
    f.ns_per_op = if ops == 0 {
        0.0
    } else {
        ns as f64 / ops as f64
    };
    Ok(f)
}
