//! The statistics file layout, shared by every writer (host engine, CUDA plugin) and every
//! reader (the `poolside` CLI, or any tool that includes `include/poolside_stats.h`).
//!
//! Rules that keep it readable from outside the process:
//! - `repr(C)`, fixed-width integers only, no pointers;
//! - every section starts with a sequence number: odd while a writer is inside the
//!   section, bumped to even when it leaves (a seqlock). A reader copies the section and
//!   retries when the number was odd or changed;
//! - counters are written through `AtomicU64::from_ptr`, so plain `u64` fields are all a
//!   C reader sees;
//! - `magic`, `version` and `total_size` come first so a reader can reject a foreign or
//!   truncated file before looking further.

/// "POOLSIDE" in little-endian bytes.
pub const STATS_MAGIC: u64 = u64::from_le_bytes(*b"POOLSIDE");
/// Bumped on any change of this layout.
pub const STATS_VERSION: u32 = 1;
/// Slots for per-class counters: the small classes, then `LARGE_SLOT` and `HUGE_SLOT`.
pub const MAX_CLASSES: usize = 128;
/// Counters for requests above the largest class served from segment spans.
pub const LARGE_SLOT: usize = crate::size_class::NUM_CLASSES;
/// Counters for requests served by a dedicated mapping.
pub const HUGE_SLOT: usize = crate::size_class::NUM_CLASSES + 1;
/// Device sections in one file.
pub const MAX_DEVICES: usize = 16;
/// Bytes of the command line kept (NUL-separated arguments, truncated).
pub const CMDLINE_BYTES: usize = 512;

/// Counters of one size class (128 bytes). Cumulative unless said otherwise.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounters {
    /// Block size of the class (0 for the large and huge slots).
    pub block_size: u64,
    /// Allocations served.
    pub allocs: u64,
    /// Blocks freed.
    pub frees: u64,
    /// Allocations served from memory the pool already held.
    pub hits: u64,
    /// Allocations that needed fresh pages from the memory source.
    pub misses: u64,
    /// Bytes in live blocks now (block size times live blocks; exact for large and huge).
    pub live_bytes: u64,
    /// Sum of the sizes asked for, over all allocations. Exact for large and huge blocks
    /// and devices; for host size classes it is sampled (each page refill's request size
    /// stands for the allocations until the next sample): exact when a class sees one
    /// request size, otherwise within the class's rounding range.
    pub requested_bytes: u64,
    /// Sum of the sizes handed out (after rounding), over all allocations.
    pub allocated_bytes: u64,
    /// Bytes of spans (pages) holding this class's blocks now.
    pub reserved_bytes: u64,
    pub _reserved: [u64; 7],
}

/// The host pool of one process.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HostSection {
    /// Seqlock: odd while being written.
    pub seq: u64,
    /// Bytes of address space mapped from the OS (segments and dedicated mappings).
    pub mapped_bytes: u64,
    /// Bytes the pool holds and may have touched: spans in use, spans freed but not yet
    /// purged, dedicated mappings, and cached mappings. This is "reserved" in PyTorch's
    /// sense and the denominator of fragmentation.
    pub reserved_bytes: u64,
    /// Highest `reserved_bytes` seen.
    pub peak_reserved_bytes: u64,
    /// Sum of bytes returned to the OS by purging, over the run.
    pub purged_bytes: u64,
    /// Segments mapped now.
    pub segments: u64,
    /// Thread heaps in use now, and heaps parked by exited threads.
    pub heaps_active: u64,
    pub heaps_abandoned: u64,
    /// Times a fold of thread-local counters reached this section.
    pub folds: u64,
    /// Bytes of `reserved_bytes` the pool could return to the OS now: free spans not
    /// yet purged, and freed huge mappings kept for reuse. The rest of the free memory
    /// (reserved - live - cached) shares a span with live blocks: fragmentation.
    pub cached_bytes: u64,
    /// The process's place in a distributed job, from `RANK`, `LOCAL_RANK` and
    /// `WORLD_SIZE` when the file was created (see `stats/ranks.rs`): bits `RANK_SET`,
    /// `LOCAL_RANK_SET`, `WORLD_SIZE_SET` say which were set; an unset value reads 0.
    /// Written by the component that creates the file, again by the host engine when it
    /// joins one, and never after.
    pub ranks_set: u64,
    pub rank: u64,
    pub local_rank: u64,
    pub world_size: u64,
    pub _reserved: [u64; 2],
    /// Per class; slots `NUM_CLASSES..` are `LARGE_SLOT` and `HUGE_SLOT`.
    pub classes: [ClassCounters; MAX_CLASSES],
}

/// A current value with the highest value it reached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauge {
    pub current: u64,
    pub peak: u64,
}

/// One GPU's pool, with the figures torch.cuda.memory_stats reports.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DeviceSection {
    /// Seqlock: odd while being written.
    pub seq: u64,
    /// 1 once a pool for this device exists.
    pub present: u32,
    /// CUDA device ordinal.
    pub device: i32,
    /// Device memory in total, and free when last asked (from the driver).
    pub total_memory: u64,
    pub free_memory: u64,
    /// Cap from the memory fraction (0 = none).
    pub limit_bytes: u64,
    /// Bytes asked for by live allocations (unrounded).
    pub requested_bytes: Gauge,
    /// Bytes in live allocations after rounding.
    pub allocated_bytes: Gauge,
    /// Bytes backed by device memory and held by the pool.
    pub reserved_bytes: Gauge,
    /// Bytes in blocks not yet returned to the pool (live, or freed but waiting on streams).
    pub active_bytes: Gauge,
    /// Live allocations.
    pub allocations: Gauge,
    /// Segments (reservations or cuMemAlloc blocks) held.
    pub segments: Gauge,
    /// Bytes of device memory the pool holds from the driver: mapped pages (expandable
    /// segments) or cuMemAlloc segments. Equal to `reserved_bytes.current` today; kept
    /// apart because C readers of version 1 know the field.
    pub mapped_bytes: u64,
    /// Bytes free inside the pool: reserved - active = `cached_bytes` +
    /// `fragmented_bytes.current`.
    pub cached_free_bytes: u64,
    /// The largest contiguous free memory the pool holds (backed by device memory, no
    /// block on it): what one large request can get without a driver call. Kept up to
    /// date by the pool's arenas; current whenever the section is published.
    pub largest_free_block: u64,
    pub hits: u64,
    pub misses: u64,
    pub alloc_retries: u64,
    pub ooms: u64,
    /// Calls to the driver that allocated or freed device memory.
    pub device_allocs: u64,
    pub device_frees: u64,
    /// Stream safety (record_stream): events that could not be created or recorded,
    /// event queries or waits that failed, and device synchronizes the pool ran instead.
    /// Each fallback is safe but stalls the whole device, so they are counted.
    pub event_record_failures: u64,
    pub event_query_failures: u64,
    pub sync_fallbacks: u64,
    /// Bytes of device memory held by CUDA graphs' private pools (PyTorch's graph
    /// capture pools): reserved for the graphs until they are released, part of
    /// `reserved_bytes`, and never handed to ordinary allocations.
    pub private_pool_bytes: Gauge,
    /// Free bytes the pool could give back to the driver now (`empty_cache` would):
    /// mapped pages, cuMemAlloc segments and small-block pages that no active block
    /// touches, outside CUDA graphs' private pools.
    pub cached_bytes: u64,
    /// Free bytes that cannot be given back: they share a page or segment with an
    /// active block (or belong to a graph's private pool, or to pages the driver refused
    /// to unmap). reserved - active - cached; PyTorch's `inactive_split_bytes`.
    pub fragmented_bytes: Gauge,
}

/// The whole file.
#[repr(C)]
pub struct StatsFile {
    pub magic: u64,
    pub version: u32,
    /// `size_of::<StatsFile>()` of the writer; a reader refuses a file shorter than it.
    pub header_size: u32,
    pub total_size: u64,
    pub pid: u32,
    pub uid: u32,
    /// Process start in clock ticks since boot (field 22 of /proc/PID/stat), to tell a
    /// live process from a reused PID.
    pub start_ticks: u64,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// The 16 bytes the kernel gave this exec (AT_RANDOM): every poolside component of one
    /// process image shares one file, and a file left by an earlier image of the same PID
    /// is recognised as stale.
    pub exec_id: [u8; 16],
    /// Bitmask of writers present: 1 = host engine, 2 = CUDA plugin.
    pub writers: u32,
    pub num_classes: u32,
    pub cmdline_len: u32,
    pub _pad: u32,
    pub cmdline: [u8; CMDLINE_BYTES],
    pub host: HostSection,
    pub devices: [DeviceSection; MAX_DEVICES],
}

/// Bits of [`HostSection::ranks_set`].
pub const RANK_SET: u64 = 1;
pub const LOCAL_RANK_SET: u64 = 2;
pub const WORLD_SIZE_SET: u64 = 4;

/// Writer flag for the host engine in [`StatsFile::writers`].
pub const WRITER_HOST: u32 = 1;
/// Writer flag for the CUDA plugin.
pub const WRITER_CUDA: u32 = 2;
