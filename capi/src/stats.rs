//! `poolside_stats_snapshot`: the host pool's statistics, copied into a caller's struct.
//!
//! The figures are those of the stats file that `poolside stat` reads (see
//! `poolside::stats::layout`), taken under its seqlock so that they are consistent with
//! each other. The calling thread's counters are folded in first; other threads fold theirs
//! as they go (and at `poolside_collect`), so their latest few operations may be missing.

use libc::c_int;
use poolside::host;
use poolside::size_class::NUM_CLASSES;
use poolside::stats::layout::{ClassCounters, HUGE_SLOT, LARGE_SLOT, MAX_CLASSES};

/// Slots in `poolside_stats_t::classes`.
pub const POOLSIDE_STATS_SLOTS: usize = 128;
/// Slot of requests served by whole spans (above the largest size class).
pub const POOLSIDE_LARGE_SLOT: usize = 120;
/// Slot of requests served by a mapping of their own.
pub const POOLSIDE_HUGE_SLOT: usize = 121;

// The header's numbers are literals (cbindgen copies them); they must match the engine's.
const _: () = assert!(POOLSIDE_STATS_SLOTS == MAX_CLASSES);
const _: () = assert!(POOLSIDE_LARGE_SLOT == LARGE_SLOT);
const _: () = assert!(POOLSIDE_HUGE_SLOT == HUGE_SLOT);

/// Counters of one size class, or of the large or huge slot. Cumulative unless said.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PoolsideClassStats {
    /// Block size of the class (0 for the large and huge slots).
    pub block_size: u64,
    /// Allocations served.
    pub allocs: u64,
    /// Blocks freed.
    pub frees: u64,
    /// Allocations served from memory the pool already held.
    pub hits: u64,
    /// Allocations that needed fresh pages.
    pub misses: u64,
    /// Bytes in live blocks now.
    pub live_bytes: u64,
    /// Sum of the sizes asked for.
    pub requested_bytes: u64,
    /// Sum of the sizes handed out (after rounding to the class).
    pub allocated_bytes: u64,
    /// Bytes of pages holding this class's blocks now.
    pub reserved_bytes: u64,
}

/// The host pool of this process.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PoolsideStats {
    /// Bytes of address space mapped from the OS.
    pub mapped_bytes: u64,
    /// Bytes the pool holds and may have touched (in use, cached, not yet purged).
    pub reserved_bytes: u64,
    /// Highest `reserved_bytes` so far.
    pub peak_reserved_bytes: u64,
    /// Bytes given back to the OS by purging, over the run.
    pub purged_bytes: u64,
    /// Segments mapped now.
    pub segments: u64,
    /// Thread heaps in use, and heaps left by exited threads.
    pub heaps_active: u64,
    pub heaps_abandoned: u64,
    /// Sums over all slots of the per-class counters of the same names.
    pub allocs: u64,
    pub frees: u64,
    pub live_bytes: u64,
    pub requested_bytes: u64,
    pub allocated_bytes: u64,
    /// Slots filled in `classes`: the size classes, then the large and huge slots.
    pub num_slots: u32,
    /// Number of size classes (slots `0 .. num_classes`).
    pub num_classes: u32,
    pub classes: [PoolsideClassStats; POOLSIDE_STATS_SLOTS],
}

fn copy_class(c: &ClassCounters) -> PoolsideClassStats {
    PoolsideClassStats {
        block_size: c.block_size,
        allocs: c.allocs,
        frees: c.frees,
        hits: c.hits,
        misses: c.misses,
        live_bytes: c.live_bytes,
        requested_bytes: c.requested_bytes,
        allocated_bytes: c.allocated_bytes,
        reserved_bytes: c.reserved_bytes,
    }
}

/// Fills `*out` with a consistent snapshot. Returns 0, or EINVAL when `out` is NULL.
///
/// # Safety
/// `out` is NULL or valid for writing one `poolside_stats_t`.
#[no_mangle]
pub unsafe extern "C" fn poolside_stats_snapshot(out: *mut PoolsideStats) -> c_int {
    if out.is_null() {
        return libc::EINVAL;
    }
    host::flush_stats();
    let s = host::stats_snapshot();
    let used = HUGE_SLOT + 1;
    let empty = ClassCounters::default();
    let mut o = PoolsideStats {
        mapped_bytes: s.mapped_bytes,
        reserved_bytes: s.reserved_bytes,
        peak_reserved_bytes: s.peak_reserved_bytes,
        purged_bytes: s.purged_bytes,
        segments: s.segments,
        heaps_active: s.heaps_active,
        heaps_abandoned: s.heaps_abandoned,
        allocs: 0,
        frees: 0,
        live_bytes: 0,
        requested_bytes: 0,
        allocated_bytes: 0,
        num_slots: used as u32,
        num_classes: NUM_CLASSES as u32,
        classes: [copy_class(&empty); POOLSIDE_STATS_SLOTS],
    };
    for (slot, c) in o.classes.iter_mut().zip(&s.classes[..used]) {
        *slot = copy_class(c);
    }
    for c in &o.classes {
        o.allocs += c.allocs;
        o.frees += c.frees;
        o.live_bytes += c.live_bytes;
        o.requested_bytes += c.requested_bytes;
        o.allocated_bytes += c.allocated_bytes;
    }
    // SAFETY: out is non-null and valid for writing one PoolsideStats (caller's contract).
    unsafe { out.write(o) };
    0
}
