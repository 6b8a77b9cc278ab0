//! Replaying a device's trace through a pool on the simulated driver: first the blocks
//! live when recording began (so both allocators start from the same live state), then
//! every alloc and free in order.

use super::snapshot::{Action, DeviceTrace, Snapshot};
use super::trace::Plan;
use crate::config::PluginConfig;
use crate::driver::sim::SimDriver;
use crate::pool::{AllocError, DevicePool};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// What one pool did with one device's trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceRun {
    pub capacity_bytes: u64,
    /// The pool's own figures (its allocated bytes use its own rounding).
    pub peak_allocated_bytes: u64,
    pub peak_reserved_bytes: u64,
    pub allocs: u64,
    pub frees: u64,
    pub hits: u64,
    pub misses: u64,
    pub alloc_retries: u64,
    /// Allocations the pool could not serve (device too small): not replayed, nor their frees.
    pub ooms: u64,
    /// Allocations that failed for another reason.
    pub failed: u64,
    /// Blocks live at the start that could not be allocated.
    pub start_failed: u64,
    /// Frees of addresses not live in the replay (freed twice in the trace).
    pub unknown_frees: u64,
    /// Allocs at an address the trace had not freed (the free is missing): the older
    /// block was freed first.
    pub alloc_over_live: u64,
    pub ns_per_op: f64,
}

/// Replays `t` (read by `plan`) on a simulated device of `capacity` bytes.
pub fn replay_device(
    t: &DeviceTrace,
    plan: &Plan,
    cfg: &PluginConfig,
    capacity: u64,
) -> Result<DeviceRun, String> {
    let driver = Arc::new(SimDriver::new(1, capacity));
    let pool = DevicePool::new(driver, 0, cfg)?;
    let mut r = DeviceRun {
        capacity_bytes: capacity,
        ..Default::default()
    };
    let mut addrs: HashMap<u64, u64> = HashMap::new();
    let mut failed: HashSet<u64> = HashSet::new();
    for b in &plan.start {
        match pool.malloc(b.size as usize, b.stream) {
            Ok(p) if p != 0 => {
                addrs.insert(b.addr, p);
            }
            Ok(_) => {}
            Err(_) => {
                r.start_failed += 1;
                failed.insert(b.addr);
            }
        }
    }
    let free_on = plan.free_on.unwrap_or(Action::FreeCompleted);
    let (mut ops, mut ns) = (0u64, 0u128);
    for e in &t.events {
        if e.action == Action::Alloc {
            if let Some(old) = addrs.remove(&e.addr) {
                r.alloc_over_live += 1;
                let _ = pool.free(old);
            }
            failed.remove(&e.addr);
            let start = Instant::now();
            let res = pool.malloc(e.size as usize, e.stream);
            ns += start.elapsed().as_nanos();
            ops += 1;
            r.allocs += 1;
            match res {
                Ok(0) => {}
                Ok(p) => {
                    addrs.insert(e.addr, p);
                }
                Err(AllocError::OutOfMemory(_)) => {
                    r.ooms += 1;
                    failed.insert(e.addr);
                }
                Err(AllocError::Driver(_)) => {
                    r.failed += 1;
                    failed.insert(e.addr);
                }
            }
        } else if e.action == free_on {
            match addrs.remove(&e.addr) {
                Some(p) => {
                    let start = Instant::now();
                    let _ = pool.free(p);
                    ns += start.elapsed().as_nanos();
                    ops += 1;
                    r.frees += 1;
                }
                None if failed.remove(&e.addr) => {}
                None => r.unknown_frees += 1,
            }
        }
    }
    pool.check()?;
    let s = pool.stats();
    r.peak_allocated_bytes = s.allocated_bytes.peak;
    r.peak_reserved_bytes = s.reserved_bytes.peak;
    r.hits = s.hits;
    r.misses = s.misses;
    r.alloc_retries = s.alloc_retries;
    r.ns_per_op = if ops == 0 {
        0.0
    } else {
        ns as f64 / ops as f64
    };
    Ok(r)
}

/// Over all devices (peaks are the largest of any device, counts are summed).
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
    pub unknown_frees: u64,
    pub devices: Vec<DeviceRun>,
}

/// Replays every device of `snap` with `cfg`; each simulated device gets the capacity
/// the snapshot shows (`cfg.sim_capacity` when it shows none, see [`Plan::capacity`]).
pub fn replay(snap: &Snapshot, cfg: &PluginConfig) -> Result<Figures, String> {
    replay_with(snap, cfg, None)
}

/// As [`replay`], with the capacity given by a setting when `capacity` is Some.
pub fn replay_with(
    snap: &Snapshot,
    cfg: &PluginConfig,
    capacity: Option<u64>,
) -> Result<Figures, String> {
    let mut f = Figures::default();
    for t in &snap.devices {
        let plan = Plan::of(t, snap.cut_at.is_some());
        let (cap, _) = plan.capacity(capacity, cfg.sim_capacity);
        let r = replay_device(t, &plan, cfg, cap)?;
        f.peak_allocated_bytes = f.peak_allocated_bytes.max(r.peak_allocated_bytes);
        f.peak_reserved_bytes = f.peak_reserved_bytes.max(r.peak_reserved_bytes);
        f.allocs += r.allocs;
        f.frees += r.frees;
        f.hits += r.hits;
        f.misses += r.misses;
        f.ooms += r.ooms;
        f.alloc_retries += r.alloc_retries;
        f.unknown_frees += r.unknown_frees;
        f.devices.push(r);
    }
    Ok(f)
}
