//! A heap's statistics and housekeeping on its slow path: folding its counters into the
//! shared section, and the idle sweep.
//!
//! The fast paths keep no statistics counter at all:
//! - an allocation's count is the page's pop count ([`Uses`](crate::host::page::Uses)),
//!   which the page keeps anyway to know when it empties;
//! - a free is derived as allocations minus the blocks still live;
//! - requested bytes are sampled: a refill of a page's free list (every one on the long
//!   slow path; when a page refills from its own frees, once per [`TICKS_PER_CHECK`]
//!   slow-path events) records the size of the request that caused it, and every
//!   allocation served from the page until the next sample is credited with that size.
//!   The figure is exact when a class's requests in one run have one size (N blocks of S
//!   bytes give N × S), and otherwise an estimate of the requested bytes within the
//!   class's rounding range, never off by more than that range.
//!
//! So a fold walks the heap's pages and counts each page's pops since it was last counted
//! ([`count_pops`]); a page is counted too when it leaves the heap, before each refill, and
//! as it goes to the full list ([`count_full`]). A fold walks only the bin lists: a full
//! page cannot change while it is full, and its blocks, all live, are kept in a sum. A
//! heap grown to 160 MB of small blocks (jq over an 11 MB document) holds thousands of
//! full pages, and walking them every 10 ms made the fold 1.2% of the program's samples,
//! more than malloc itself.
//!
//! A fold comes at most every [`FOLD_INTERVAL_MS`], and also whenever the span bytes the
//! heap holds grew or shrank by more than [`fold_due_bytes`] since the last one. The clock
//! alone would leave a burst unpublished: a thread that makes 8 MB of small blocks in
//! 3 ms and then sleeps (or blocks in a read) would show the figures of its previous fold
//! for as long as it sleeps, since nothing outside the thread can fold its counters. With
//! the byte bound, what a thread publishes lags what it holds by at most that many bytes
//! of spans plus its current pages, whenever it stops. The bound is on the net change, so
//! a loop that takes and returns spans (through the span cache) adds no fold.

use super::{lists, retire, sentinel, Heap, HEAPS};
use crate::host::page::Page;
use crate::host::stats::{self, LocalCounters};
use crate::size_class::NUM_CLASSES;

/// Slow-path events between two looks at the clock.
const TICKS_PER_CHECK: u32 = 64;
/// Least time between two folds of a heap's counters, in coarse ms: stats readers see
/// figures at most this old from a busy thread, and the fold's cost stays negligible.
const FOLD_INTERVAL_MS: u64 = 10;

/// Net change of the heap's span bytes since the last fold beyond which it folds at
/// once: 1 MiB, or a quarter of what it held at the last fold if that is more. Relative,
/// so that a growing heap (whose fold walks all its pages) folds a logarithmic number of
/// times, and so that a steady heap, whose span bytes wander up and down as spans go to
/// and come back from its span cache, seldom reaches it: with a sixteenth, `mixed`
/// (benches/examples) folded 47 times in 500k steps instead of 2, 1.2% more instructions.
#[inline]
fn fold_due_bytes(held_at_fold: u64) -> u64 {
    (held_at_fold / 4).max(1 << 20)
}

/// Counts `bytes` of spans the heap took (positive) or gave back (negative).
///
/// # Safety
/// `heap` is the calling thread's heap (or a parked heap, under the pool lock).
#[inline]
pub unsafe fn count_moved(heap: *mut Heap, bytes: i64) {
    // SAFETY: forwarded.
    unsafe { (*heap).moved += bytes };
}

/// Folds the counters if the heap's span bytes moved by more than [`fold_due_bytes`]
/// since the last fold (see the module docs).
///
/// # Safety
/// `heap` is the calling thread's heap, its lists consistent (not in the middle of
/// linking or unlinking a page).
#[inline]
pub unsafe fn fold_if_moved(heap: *mut Heap) {
    // SAFETY: forwarded.
    unsafe {
        let moved = (*heap).moved.unsigned_abs();
        if !cfg!(feature = "no-counters") && moved > fold_due_bytes((*heap).held_at_fold) {
            fold(heap);
        }
    }
}

/// Adds the pops of `page` since it was last counted to its bin's allocations, and as
/// many times its sample size to the requested bytes.
///
/// # Safety
/// `heap` owns `page`, a small span of class `c`, and is run by the calling thread (or
/// parked, under the pool lock).
#[inline]
pub unsafe fn count_pops(heap: *mut Heap, c: usize, page: *mut Page) {
    if cfg!(feature = "no-counters") {
        return;
    }
    // SAFETY: forwarded.
    unsafe {
        let pops = (*page).uses.pops();
        let new = pops - (*page).pops_counted;
        let bin = &mut (*heap).bins[c];
        bin.allocs += new;
        bin.requested += new * (*page).sample_size as u64;
        (*page).pops_counted = pops;
    }
}

/// Counts a page going to its class's full list: its pops now, and its blocks (every one
/// live: a full page has no free block and cannot carve more) in `full_live`.
///
/// # Safety
/// As for [`count_pops`]; `page` is full and about to join the full list.
#[inline]
pub unsafe fn count_full(heap: *mut Heap, c: usize, page: *mut Page) {
    if cfg!(feature = "no-counters") {
        return;
    }
    // SAFETY: forwarded.
    unsafe {
        debug_assert!((*page).uses.live() == (*page).capacity as u64);
        count_pops(heap, c, page);
        (*heap).full_live[c] += (*page).capacity as u64;
    }
}

/// Takes a page leaving its class's full list out of `full_live`. Its capacity is what
/// [`count_full`] added: nothing carves a full page.
///
/// # Safety
/// As for [`count_pops`]; `page` is in the full list of class `c`.
#[inline]
pub unsafe fn uncount_full(heap: *mut Heap, c: usize, page: *mut Page) {
    if cfg!(feature = "no-counters") {
        return;
    }
    // SAFETY: forwarded.
    unsafe { (*heap).full_live[c] -= (*page).capacity as u64 };
}

/// Counts the allocations `page` served since its last refill, and samples `size` (the
/// request now refilling it) for those it serves next.
///
/// # Safety
/// As for [`count_pops`].
#[inline]
pub unsafe fn sample_refill(heap: *mut Heap, c: usize, page: *mut Page, size: usize) {
    if cfg!(feature = "no-counters") {
        return;
    }
    // SAFETY: forwarded.
    unsafe {
        count_pops(heap, c, page);
        // Small classes end at 1 MiB, so the size fits.
        (*page).sample_size = size as u32;
    }
}

/// Folds the heap's counters into the shared section.
///
/// # Safety
/// `heap` is the calling thread's heap (or a parked heap, under the pool lock).
pub unsafe fn fold(heap: *mut Heap) {
    if cfg!(feature = "no-counters") {
        return;
    }
    // SAFETY: forwarded; the bins and pages are this thread's. The pages are walked before
    // the stats lock is taken, so the section's writers wait only for the copy.
    unsafe {
        let mut held = 0u64;
        for c in 0..NUM_CLASSES {
            held = held.wrapping_add((*heap).bins[c].span_bytes);
            // Full pages had their pops counted as they went full, and nothing changes
            // them while they stay there: their blocks are summed in `full_live`.
            let mut live = (*heap).full_live[c];
            lists::for_each_open_page(heap, c, |p| {
                count_pops(heap, c, p);
                live += (*p).uses.live();
            });
            (*heap).bins[c].live = live;
        }
        // The spare span is empty, and counted in its class until it leaves the slot.
        let spare = (*heap).spare;
        if !spare.is_null() {
            count_pops(heap, (*spare).class as usize, spare);
        }
        stats::write_section(|s| {
            for c in 0..NUM_CLASSES {
                let bin = &mut (*heap).bins[c];
                let now = LocalCounters {
                    allocs: bin.allocs,
                    frees: bin.allocs.wrapping_sub(bin.live),
                    misses: bin.misses,
                    requested: bin.requested,
                };
                let (folded, spans_folded) = (&mut bin.folded, &mut bin.span_bytes_folded);
                stats::fold_class(s, c, now, folded, bin.span_bytes, spans_folded);
            }
            stats::count_fold(s);
        });
        (*heap).ticks = 0;
        (*heap).moved = 0;
        (*heap).held_at_fold = held;
        (*heap).folded_at = crate::sys::now_ms();
    }
}

/// Counts a slow-path event: sweeps one class, and folds the counters once per
/// [`FOLD_INTERVAL_MS`] (looking at the clock every [`TICKS_PER_CHECK`] events).
///
/// # Safety
/// `heap` is the calling thread's heap.
#[inline]
pub unsafe fn tick(heap: *mut Heap) {
    // SAFETY: forwarded.
    unsafe {
        sweep_one(heap);
        (*heap).ticks += 1;
        if (*heap).ticks >= TICKS_PER_CHECK {
            maybe_fold(heap);
        }
    }
}

/// Pops from `page` (class `c`), just refilled from its own frees for a request of `size`
/// bytes, and counts the event: the short path, which neither sweeps nor samples every
/// time. Every [`TICKS_PER_CHECK`]th event samples the size and looks at the clock, in a
/// function of its own that this one tail-calls, so that the short path makes no call
/// and needs no stack frame.
///
/// # Safety
/// `heap` is the calling thread's heap and owns `page`, whose free list is not empty.
#[inline(always)]
pub unsafe fn pop_counted(heap: *mut Heap, c: usize, size: usize, page: *mut Page) -> *mut u8 {
    // SAFETY: forwarded.
    unsafe {
        (*heap).ticks += 1;
        if (*heap).ticks >= TICKS_PER_CHECK {
            return sample_check_pop(heap, c, size, page);
        }
        super::pop(page)
    }
}

/// `size` comes third, where `alloc_slow` receives it, so that the short path need not
/// move it to another register for this call.
#[cold]
#[inline(never)]
unsafe fn sample_check_pop(heap: *mut Heap, c: usize, size: usize, page: *mut Page) -> *mut u8 {
    // SAFETY: forwarded; a fold and the sweep of parked heaps leave this heap's current
    // page where it is.
    unsafe {
        sample_refill(heap, c, page, size);
        maybe_fold(heap);
        super::pop(page)
    }
}

/// Folds the counters if [`FOLD_INTERVAL_MS`] passed since the last fold, and frees what
/// other threads handed back to parked heaps.
#[cold]
#[inline(never)]
unsafe fn maybe_fold(heap: *mut Heap) {
    // SAFETY: forwarded.
    unsafe {
        (*heap).ticks = 0;
        if crate::sys::now_ms() >= (*heap).folded_at + FOLD_INTERVAL_MS {
            fold(heap);
            super::spans::age(heap);
            if let Some(pool) = HEAPS.try_lock() {
                super::reclaim_parked(&pool);
            }
        }
    }
}

/// Looks at one class: its current page is returned to the arena if it is empty and saw
/// no allocation since the sweep last came by (a whole round of slow paths ago).
///
/// # Safety
/// `heap` is the calling thread's heap.
unsafe fn sweep_one(heap: *mut Heap) {
    // SAFETY: the heap and its pages are this thread's.
    unsafe {
        let h = &mut *heap;
        let c = h.sweep as usize;
        h.sweep = if c + 1 == NUM_CLASSES {
            0
        } else {
            c as u32 + 1
        };
        let page = h.bins[c].page;
        if page == sentinel() {
            return;
        }
        let pops = (*page).uses.pops();
        let (seen_page, seen_pops) = h.bins[c].swept;
        if seen_page == page
            && seen_pops == pops
            && (*page).uses.live() == 0
            && (*page).next.is_null()
        {
            lists::unlink(heap, c, page);
            retire(heap, page);
            h.bins[c].swept = (core::ptr::null_mut(), 0);
        } else {
            h.bins[c].swept = (page, pops);
        }
    }
}
