//! Host counters: thread-local on the fast path, folded into the shared section on slow
//! paths.
//!
//! A heap counts allocations, frees, misses and requested bytes per class in plain memory
//! that only its thread touches (see `heap::counters` for how little of that the fast path
//! does). Every so often (see `heap::counters::tick`), at thread exit, and on
//! `flush_stats`, the heap adds what changed since its last fold into the process's
//! [`HostSection`] under a lock in process memory and the section's seqlock. Large and huge
//! blocks are rare and slow anyway, so they are counted into the section directly.

use super::arena::Arena;
use crate::size_class::{class_size, NUM_CLASSES};
use crate::stats::layout::{HostSection, HUGE_SLOT, LARGE_SLOT};
use crate::stats::seqlock::{add, begin_write, end_write, set};
use crate::stats::shm;
use crate::sys::SpinLock;
use core::ptr::addr_of_mut;

/// Per-class counters of one heap, as folded into the section. None moves on the fast
/// path: `allocs` comes from the pages' pop counts, `requested` from sampled refills, and
/// `frees` is derived.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalCounters {
    pub allocs: u64,
    pub frees: u64,
    pub misses: u64,
    pub requested: u64,
}

/// Serialises writers of the host section.
pub static STATS_LOCK: SpinLock<()> = SpinLock::new(());

/// Runs `f` on the host section as its only writer, inside the seqlock.
pub fn write_section(f: impl FnOnce(*mut HostSection)) {
    let _g = STATS_LOCK.lock();
    let s = shm::host_section();
    // SAFETY: the section is valid for the life of the process and we hold the writer lock.
    unsafe {
        begin_write(addr_of_mut!((*s).seq));
        f(s);
        end_write(addr_of_mut!((*s).seq));
    }
}

/// Records the block size of every class in the section (once, at init).
pub fn init_section() {
    write_section(|s| {
        for c in 0..NUM_CLASSES {
            // SAFETY: c < MAX_CLASSES; inside write_section.
            unsafe {
                set(
                    addr_of_mut!((*s).classes[c].block_size),
                    class_size(c) as u64,
                )
            };
        }
    });
}

/// Adds what changed in class `c` since `folded` (counters `now`, span bytes `spans`
/// against `spans_folded`) to the section, then records `now` as folded.
///
/// # Safety
/// `s` is the host section, and the caller is inside [`write_section`].
pub unsafe fn fold_class(
    s: *mut HostSection,
    c: usize,
    now: LocalCounters,
    folded: &mut LocalCounters,
    spans: u64,
    spans_folded: &mut u64,
) {
    let o = *folded;
    if now == o && spans == *spans_folded {
        return;
    }
    let allocs = now.allocs.wrapping_sub(o.allocs);
    let frees = now.frees.wrapping_sub(o.frees);
    let misses = now.misses.wrapping_sub(o.misses);
    let bs = class_size(c) as u64;
    // SAFETY: c < NUM_CLASSES <= MAX_CLASSES; the caller is inside write_section.
    unsafe {
        let k = addr_of_mut!((*s).classes[c]);
        add(addr_of_mut!((*k).allocs), allocs);
        add(addr_of_mut!((*k).frees), frees);
        add(addr_of_mut!((*k).misses), misses);
        add(addr_of_mut!((*k).hits), allocs.wrapping_sub(misses));
        add(
            addr_of_mut!((*k).requested_bytes),
            now.requested.wrapping_sub(o.requested),
        );
        add(addr_of_mut!((*k).allocated_bytes), allocs.wrapping_mul(bs));
        add(
            addr_of_mut!((*k).live_bytes),
            allocs.wrapping_sub(frees).wrapping_mul(bs),
        );
        add(
            addr_of_mut!((*k).reserved_bytes),
            spans.wrapping_sub(*spans_folded),
        );
    }
    *folded = now;
    *spans_folded = spans;
}

/// Counts one fold of a heap.
///
/// # Safety
/// As for [`fold_class`].
pub unsafe fn count_fold(s: *mut HostSection) {
    // SAFETY: forwarded.
    unsafe { add(addr_of_mut!((*s).folds), 1) };
}

/// Which slot a block above the class range is counted in.
#[derive(Clone, Copy)]
pub enum Big {
    Large,
    Huge,
}

/// Counts one large or huge allocation (`alloc`) or free of `bytes` usable bytes.
pub fn record_big(kind: Big, alloc: bool, bytes: usize, requested: usize, miss: bool) {
    let slot = match kind {
        Big::Large => LARGE_SLOT,
        Big::Huge => HUGE_SLOT,
    };
    write_section(|s| {
        // SAFETY: slot < MAX_CLASSES; inside write_section.
        unsafe {
            let k = addr_of_mut!((*s).classes[slot]);
            if alloc {
                add(addr_of_mut!((*k).allocs), 1);
                if miss {
                    add(addr_of_mut!((*k).misses), 1);
                } else {
                    add(addr_of_mut!((*k).hits), 1);
                }
                add(addr_of_mut!((*k).requested_bytes), requested as u64);
                add(addr_of_mut!((*k).allocated_bytes), bytes as u64);
                add(addr_of_mut!((*k).live_bytes), bytes as u64);
                add(addr_of_mut!((*k).reserved_bytes), bytes as u64);
            } else {
                add(addr_of_mut!((*k).frees), 1);
                add(addr_of_mut!((*k).live_bytes), (bytes as u64).wrapping_neg());
                add(
                    addr_of_mut!((*k).reserved_bytes),
                    (bytes as u64).wrapping_neg(),
                );
            }
        }
    });
}

/// Publishes the arena's gauges.
pub fn publish_arena(a: &Arena) {
    write_section(|s| {
        // SAFETY: inside write_section.
        unsafe {
            set(addr_of_mut!((*s).mapped_bytes), a.mapped as u64);
            set(addr_of_mut!((*s).reserved_bytes), a.reserved as u64);
            set(
                addr_of_mut!((*s).peak_reserved_bytes),
                a.peak_reserved as u64,
            );
            set(addr_of_mut!((*s).purged_bytes), a.purged as u64);
            set(addr_of_mut!((*s).segments), a.segment_count as u64);
            let kept = super::heap::spans::CACHED.load(core::sync::atomic::Ordering::Relaxed);
            set(addr_of_mut!((*s).cached_bytes), (a.cached() + kept) as u64);
        }
    });
}

/// Publishes heap gauges.
pub fn publish_heaps(active: usize, abandoned: usize) {
    write_section(|s| {
        // SAFETY: inside write_section.
        unsafe {
            set(addr_of_mut!((*s).heaps_active), active as u64);
            set(addr_of_mut!((*s).heaps_abandoned), abandoned as u64);
        }
    });
}
