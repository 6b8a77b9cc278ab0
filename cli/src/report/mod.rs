//! What the commands show about a process: counters from its snapshot, figures derived
//! from them, and facts from /proc. One model feeds the table, JSON, Prometheus and top.

pub mod build;
pub mod derived;

use serde::Serialize;

/// A current value with its peak.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct GaugeReport {
    pub current: u64,
    pub peak: u64,
}

/// One process.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    /// `RANK`, `LOCAL_RANK` and `WORLD_SIZE` from the process's environment when its
    /// stats file was created; none where unset (a launcher, a process outside a
    /// distributed job).
    pub rank: Option<u64>,
    pub local_rank: Option<u64>,
    pub world_size: Option<u64>,
    pub command: String,
    pub start_unix_ns: u64,
    /// Resident set size from /proc (none when unreadable).
    pub rss_bytes: Option<u64>,
    /// Of the resident memory, anonymous memory in transparent huge pages
    /// (`AnonHugePages` of /proc/PID/smaps_rollup; none when unreadable).
    pub anon_huge_bytes: Option<u64>,
    pub host: HostReport,
    pub devices: Vec<DeviceReport>,
    /// Per size class, only classes that served an allocation; present with
    /// `--size-classes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<ClassReport>>,
}

/// The host pool of a process.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostReport {
    pub live_bytes: u64,
    pub reserved_bytes: u64,
    pub peak_reserved_bytes: u64,
    pub mapped_bytes: u64,
    pub purged_bytes: u64,
    pub segments: u64,
    pub allocations: u64,
    pub frees: u64,
    pub hits: u64,
    pub misses: u64,
    pub requested_bytes_total: u64,
    pub allocated_bytes_total: u64,
    pub heaps_active: u64,
    pub heaps_abandoned: u64,
    pub hit_rate: Option<f64>,
    /// Free bytes the pool could return to the OS now (free spans not yet purged,
    /// cached huge mappings).
    pub cached_bytes: u64,
    /// Free bytes that share a span with live blocks: reserved - live - cached.
    pub fragmented_bytes: u64,
    /// fragmented / reserved.
    pub fragmentation: Option<f64>,
    /// Rounding waste inside live blocks (estimated per class, see `derived`).
    pub internal_waste_bytes: u64,
}

/// One device pool of a process.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeviceReport {
    pub device: i32,
    /// `cuda:N`.
    pub name: String,
    pub total_memory: u64,
    pub free_memory: u64,
    pub limit_bytes: u64,
    pub requested_bytes: GaugeReport,
    pub allocated_bytes: GaugeReport,
    pub reserved_bytes: GaugeReport,
    pub active_bytes: GaugeReport,
    pub allocations: GaugeReport,
    pub segments: GaugeReport,
    pub mapped_bytes: u64,
    /// Free bytes the pool could return to the driver now.
    pub cached_bytes: u64,
    /// Free bytes that share a page or segment with active blocks (PyTorch's
    /// inactive_split_bytes): reserved - active - cached.
    pub fragmented_bytes: GaugeReport,
    pub largest_free_block: u64,
    pub hits: u64,
    pub misses: u64,
    pub alloc_retries: u64,
    pub ooms: u64,
    pub device_allocs: u64,
    pub device_frees: u64,
    /// Stream safety (record_stream): events that could not be created or recorded,
    /// event queries or waits that failed, device synchronizes run in their place.
    pub event_record_failures: u64,
    pub event_query_failures: u64,
    pub sync_fallbacks: u64,
    /// Bytes held by CUDA graphs' private pools (part of `reserved_bytes`).
    pub private_pool_bytes: GaugeReport,
    pub hit_rate: Option<f64>,
    /// fragmented / reserved.
    pub fragmentation: Option<f64>,
    /// Peak reserved / peak allocated: what the pool cost beyond what was asked of it.
    pub peak_overhead: Option<f64>,
    /// allocated - requested, over live blocks (exact).
    pub internal_waste_bytes: u64,
}

/// One size class (or the large and huge slots) of the host pool.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ClassReport {
    pub slot: usize,
    /// "small", "large" or "huge".
    pub kind: &'static str,
    /// Block size (0 for large and huge, whose blocks vary).
    pub block_size: u64,
    pub allocations: u64,
    pub frees: u64,
    pub hits: u64,
    pub misses: u64,
    pub live_bytes: u64,
    pub requested_bytes_total: u64,
    pub allocated_bytes_total: u64,
    pub hit_rate: Option<f64>,
}
