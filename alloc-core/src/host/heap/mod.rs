//! Thread heaps: the fast path.
//!
//! A heap belongs to one thread at a time. For each size class it keeps a bin: a list of
//! spans (pages) with free blocks, whose head is the page allocations come from, and a
//! list of full pages. Allocation and the free of a block the heap owns touch only the
//! heap and the page: no atomics, no locks. A block freed by another thread is pushed onto
//! the owner heap's inbox (`inbox`: a ring, with a stack for overflow); the owner drains
//! it on its slow path.
//!
//! Page states: in the bin list (has or may get free blocks), or `FULL` (no free block,
//! moved to the full list; the next local free moves it back). Only the bin's current page
//! ever has blocks on `free`: the others come back from the full list with their freed
//! blocks on `local_free`. A page whose last block comes back is returned to the arena,
//! unless it is the bin's current page, which is kept so that an alloc/free loop does not
//! bounce spans through the arena lock (above 128 KiB blocks, one such page per heap, the
//! `kept` one; the empty page it displaces waits in the spare slot). An idle sweep (one
//! class per slow path) returns a kept empty page once its class has seen no allocation
//! for a whole sweep round, so a buffer grown by realloc through many classes leaves
//! nothing behind.
//!
//! Files: `lists` (the page lists), `inbox` (blocks other threads free), `counters`
//! (statistics and the sweep), `park` (heaps of exited threads).

mod counters;
mod inbox;
mod lists;
mod park;
pub mod spans;

pub use counters::fold;
pub use park::{abandon, reclaim_parked, thread_heap, Pool, HEAPS};

use super::arena::ARENA;
use super::page::{Block, Page, FULL, KEEP_EMPTY};
use super::stats::LocalCounters;
use super::{pagemap, UNIT_SIZE};
use crate::size_class::{
    class_size, natural_class_of, natural_slots_of, NATURAL_SLOTS, NUM_CLASSES,
};
use core::cell::UnsafeCell;
use core::ptr;
use counters::{
    count_full, count_moved, count_pops, fold_if_moved, pop_counted, sample_refill, tick,
    uncount_full,
};
use lists::{full_push, full_unlink, push_back, push_front, unlink};

/// Blocks above this size do not all keep an empty current page: one such page at a time
/// stays in place (the heap's `kept` page), and others go to the heap's single spare slot,
/// so a thread holds at most two empty big spans. Up to 32 KiB a span is at most 4 units;
/// above, 3 to 16, and one kept per class held megabytes per thread: `benches/c/mstress.c`
/// (4 threads, one block in 1,000 of 64-512 KiB) had 24 MiB in empty and part-used spans
/// for 2 MiB live at 128 KiB, and 42 MB of peak RSS and 44,000 faults against 29 MB and
/// 24,000 here (mimalloc: 28 MB).
const KEEP_EMPTY_MAX: usize = 32 * 1024;

/// Bytes carved onto a free list at a time (at least one block). 4 KiB, as mimalloc: with
/// 16 KiB, glibc-thread (4 B to 4 KiB over 1024 slots) held 3.4-3.8 MB against 2.3-2.6,
/// and callgrind's cache model counted 2.8x its L1 data misses (842,000 against 301,000
/// for 1 million iterations), carving links into lines it did not need yet.
const EXTEND_BYTES: usize = 4 * 1024;

/// One size class of a heap.
///
/// 128 bytes, aligned to 128, with the field the allocation path reads at bytes 32-39:
/// page records keep their owner-written fields at 64-112 modulo 128, so loads of a bin
/// never share low address bits with the stores a free makes to a page (see [`Page`]).
#[repr(C, align(128))]
pub struct Bin {
    /// Last page of the bin list (null when the list is empty).
    tail: *mut Page,
    /// Pages with no free block (doubly linked through `next`/`prev`).
    full: *mut Page,
    /// Spans taken for this class minus those given back, in bytes (wrapping).
    span_bytes: u64,
    /// Allocations that needed a fresh span from the arena.
    misses: u64,
    /// Current page, or the sentinel when the class has no page.
    pub page: *mut Page,
    /// Bytes requested by allocations of this class, as sampled (see `counters`).
    requested: u64,
    /// Allocations counted so far: pops of pages as of their last count (see `counters`).
    allocs: u64,
    /// The current page and its activity when the idle sweep last looked.
    swept: (*mut Page, u64),
    /// Blocks live in the class's pages when last folded.
    live: u64,
    /// The counters as of the last fold.
    folded: LocalCounters,
    span_bytes_folded: u64,
}

const _: () = assert!(core::mem::size_of::<Bin>() == 128);
const _: () = assert!(core::mem::offset_of!(Bin, page) == 32);

/// One thread's heap.
#[repr(C)]
pub struct Heap {
    pub bins: [Bin; NUM_CLASSES],
    /// The current page of the natural class of each request up to 1 KiB, by slot
    /// (`size_class::natural_class_of`): what C's malloc reads in one load, where the
    /// class and then its bin took two (mimalloc's `pages_free_direct`). Always equal to
    /// `bins[natural class].page`: only [`set_current`] writes either.
    pub direct: [*mut Page; NATURAL_SLOTS],
    /// One empty span of a big class, kept for the next big allocation.
    spare: *mut Page,
    /// The one page of a big class allowed to stay its bin's current page when it empties
    /// (it carries `KEEP_EMPTY` while it is), or null. An alloc/free loop over a 256 KiB
    /// buffer then frees on the fast path and refills from the page's own frees, where
    /// moving the page to the spare slot and back took 540 instructions a pair.
    kept: *mut Page,
    /// Slow-path events since the clock was last read.
    ticks: u32,
    /// Next class the idle sweep looks at.
    sweep: u32,
    /// When the counters were last folded (coarse ms).
    folded_at: u64,
    /// Span bytes the heap took minus those it gave back since the last fold (see
    /// `counters`).
    moved: i64,
    /// Span bytes the heap held at the last fold.
    held_at_fold: u64,
    /// Blocks in the full list of each class, all live. A full page's counts cannot change
    /// while it is there (any free of one of its blocks first moves it out), so a fold
    /// reads this sum instead of walking the full lists (see `counters::fold`).
    full_live: [u64; NUM_CLASSES],
    /// Next heap in the parked list.
    next: *mut Heap,
    /// Empty spans kept for the next refills.
    spans: spans::SpanCache,
    /// Blocks freed by other threads (cache-line aligned: the freeing threads write it).
    pub inbox: inbox::Inbox,
}

/// Makes `page` the current page of class `c` (the sentinel when the class has none), in
/// its bin and in the direct slots of the class.
///
/// # Safety
/// `heap` is a live heap that only the caller touches (its thread, or the pool lock's
/// holder for a parked one).
#[inline]
pub unsafe fn set_current(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: forwarded; the slots of a class lie inside `direct`.
    unsafe {
        (*heap).bins[c].page = page;
        for w in natural_slots_of(c) {
            *(*heap).direct.get_unchecked_mut(w) = page;
        }
    }
}

/// Whether every direct slot holds its natural class's current page (for tests).
///
/// # Safety
/// As for [`set_current`].
pub unsafe fn direct_slots_agree(heap: *mut Heap) -> bool {
    // SAFETY: forwarded.
    unsafe {
        (0..NATURAL_SLOTS).all(|w| (*heap).direct[w] == (*heap).bins[natural_class_of(w * 8)].page)
    }
}

struct Sentinel(UnsafeCell<Page>);
// SAFETY: the sentinel is never written: its free list is empty, so the fast path leaves
// it alone, and the slow path recognises it by address before touching any page.
unsafe impl Sync for Sentinel {}
static SENTINEL: Sentinel = Sentinel(UnsafeCell::new(Page::EMPTY));

#[inline(always)]
fn sentinel() -> *mut Page {
    SENTINEL.0.get()
}

/// Span length in units for class `c`: at least 8 blocks up to 32 KiB blocks, 4 up to
/// 128 KiB, 2 above (a span of a big class mostly serves one buffer at a time; more blocks
/// would only hold memory).
pub fn span_units(c: usize) -> usize {
    let bs = class_size(c);
    let blocks = match bs {
        0..=32_768 => 8,
        32_769..=131_072 => 4,
        _ => 2,
    };
    (bs * blocks).div_ceil(UNIT_SIZE).max(1)
}

/// Pops a block from a page known to have one.
///
/// # Safety
/// `page` is a page of the calling thread's heap, with a non-empty free list.
#[inline(always)]
pub unsafe fn pop(page: *mut Page) -> *mut u8 {
    // SAFETY: the caller checked the free list is non-empty; the page is this heap's.
    unsafe {
        let b = (*page).free;
        (*page).free = (*b).next;
        (*page).uses.take();
        b as *mut u8
    }
}

/// Pops from a page whose free list was just refilled for a request of `size` bytes.
///
/// # Safety
/// As for [`pop`]; `page` is of class `c`.
#[inline(always)]
unsafe fn pop_refilled(heap: *mut Heap, page: *mut Page, c: usize, size: usize) -> *mut u8 {
    // SAFETY: forwarded.
    unsafe {
        sample_refill(heap, c, page, size);
        pop(page)
    }
}

/// Allocation when the current page of class `c` has no free block (or no heap exists).
///
/// The common case comes first ([`pop_own_frees`]); everything else is in
/// [`alloc_refill`], which this tail-calls, so the common case runs without a stack frame.
///
/// # Safety
/// `heap` is null or the calling thread's heap; `c < NUM_CLASSES`.
#[cold]
#[inline(never)]
pub unsafe fn alloc_slow(heap: *mut Heap, c: usize, size: usize) -> *mut u8 {
    // SAFETY: forwarded.
    unsafe {
        if !heap.is_null() {
            let p = pop_own_frees(heap, c, size);
            if !p.is_null() {
                return p;
            }
        }
        alloc_refill(heap, c, size)
    }
}

/// The slow path's common case, with little housekeeping: the current page of class `c`
/// has no free block but its own frees, which refill its free list (every allocation of
/// a big block in an alloc/free loop). Null when the page has none. It makes no call but
/// a tail call. Counting the event keeps a thread that only ever takes this path folding
/// its statistics; the requested size is sampled once per clock check.
///
/// # Safety
/// `heap` is the calling thread's heap; `c < NUM_CLASSES`; `size` is the request.
#[inline(always)]
pub unsafe fn pop_own_frees(heap: *mut Heap, c: usize, size: usize) -> *mut u8 {
    // SAFETY: the heap is this thread's and pages in its bins are its own; bins never
    // hold null (the sentinel at worst, whose lists are empty).
    unsafe {
        let page = (*heap).bins.get_unchecked(c).page;
        if (*page).local_free.is_null() {
            return ptr::null_mut();
        }
        (*page).free = core::mem::replace(&mut (*page).local_free, ptr::null_mut());
        pop_counted(heap, c, size, page)
    }
}

/// The rest of [`alloc_slow`]: a heap for a thread that has none, other threads' frees,
/// the next page with free blocks, or a new span.
///
/// # Safety
/// As for [`alloc_slow`].
#[cold]
#[inline(never)]
unsafe fn alloc_refill(mut heap: *mut Heap, c: usize, size: usize) -> *mut u8 {
    if heap.is_null() {
        heap = thread_heap();
        if heap.is_null() {
            return ptr::null_mut();
        }
    }
    // SAFETY: the heap is this thread's; pages in its bins are its own.
    unsafe {
        drain_remote(heap);
        tick(heap);
        loop {
            let page = (*heap).bins[c].page;
            if page == sentinel() {
                break;
            }
            if !(*page).free.is_null() {
                return pop_refilled(heap, page, c, size);
            }
            if !(*page).local_free.is_null() {
                (*page).free = core::mem::replace(&mut (*page).local_free, ptr::null_mut());
                return pop_refilled(heap, page, c, size);
            }
            if (*page).can_extend() {
                (*page).extend(EXTEND_BYTES);
                return pop_refilled(heap, page, c, size);
            }
            unlink(heap, c, page);
            (*page).flags |= FULL;
            count_full(heap, c, page);
            (*page).uses.hold_full();
            full_push(heap, c, page);
        }
        let units = span_units(c);
        let spare = (*heap).spare;
        let page = if !spare.is_null() && (*spare).units as usize == units {
            (*heap).spare = ptr::null_mut();
            if (*spare).class as usize == c {
                // An alloc/free loop over big blocks: the span comes straight back, still
                // counted in this class, so it takes the short path's accounting.
                (*spare).reuse_small();
                push_front(heap, c, spare);
                (*spare).extend(EXTEND_BYTES);
                return pop_counted(heap, c, size, spare);
            }
            leave_bin(heap, spare);
            spare
        } else {
            let page = if let Some(cached) = (*heap).spans.take(units) {
                cached
            } else {
                let mut a = ARENA.lock();
                let Some(span) = a.alloc_span(units) else {
                    return ptr::null_mut();
                };
                spans::stock(heap, units, &mut a);
                span.page
            };
            // A span new to the class is a miss, whether the heap's cache or the arena
            // gives it.
            (*heap).bins[c].misses += 1;
            page
        };
        let bs = class_size(c);
        (*page).init_small(heap, c, bs, units * UNIT_SIZE, bs <= KEEP_EMPTY_MAX);
        push_front(heap, c, page);
        (*heap).bins[c].span_bytes += (units * UNIT_SIZE) as u64;
        count_moved(heap, (units * UNIT_SIZE) as i64);
        (*page).extend(EXTEND_BYTES);
        let block = pop_refilled(heap, page, c, size);
        fold_if_moved(heap);
        block
    }
}

/// Frees a block of a page this heap owns.
///
/// # Safety
/// `page` is owned by `heap`, the calling thread's heap, and `ptr` is a live block in it.
#[inline(always)]
pub unsafe fn free_local(heap: *mut Heap, page: *mut Page, ptr: *mut u8) {
    // SAFETY: forwarded.
    unsafe {
        if push_local(heap, page, ptr) {
            free_local_slow(heap, page);
        }
    }
}

/// Puts a block back on its page's local list; true when the page then needs
/// [`free_local_slow`] (which may take the arena lock and make system calls).
///
/// # Safety
/// As for [`free_local`].
#[inline(always)]
pub unsafe fn push_local(heap: *mut Heap, page: *mut Page, ptr: *mut u8) -> bool {
    // SAFETY: forwarded; a page's class is below NUM_CLASSES (set by init_small).
    unsafe {
        let b = ptr as *mut Block;
        (*b).next = (*page).local_free;
        (*page).local_free = b;
        // A full page getting a block back says "empty" here too (`Uses::hold_full`).
        let empty = (*page).uses.give();
        // An empty current page stays put (an alloc/free loop must not bounce it through
        // the arena); any other empty page, or a full one getting a block back (never its
        // bin's current page), needs work.
        empty
            && ((*page).flags & KEEP_EMPTY == 0
                || (*heap).bins.get_unchecked((*page).class as usize).page != page)
    }
}

/// The work a local free leaves for a full page getting a block back or a page left empty.
///
/// # Safety
/// `page` is owned by `heap`, the calling thread's heap, and [`push_local`] said so.
#[cold]
#[inline(never)]
pub unsafe fn free_local_slow(heap: *mut Heap, page: *mut Page) {
    // SAFETY: forwarded from free_local.
    unsafe {
        let c = (*page).class as usize;
        if (*page).flags & FULL != 0 {
            (*page).flags &= !FULL;
            (*page).uses.release_full((*page).capacity);
            uncount_full(heap, c, page);
            full_unlink(heap, c, page);
            push_back(heap, c, page);
        }
        if (*page).uses.live() == 0 {
            if (*page).flags & KEEP_EMPTY == 0 {
                if (*heap).bins[c].page == page {
                    keep_current(heap, page);
                } else {
                    unlink(heap, c, page);
                    stash_spare(heap, page);
                }
            } else if (*heap).bins[c].page != page {
                unlink(heap, c, page);
                retire(heap, page);
            }
            fold_if_moved(heap);
        }
    }
}

/// Hands a block to its owner heap's inbox.
///
/// # Safety
/// `owner` is a live heap (heaps are never unmapped) owning the block's page; `ptr` is a
/// live block.
pub unsafe fn free_remote(owner: *mut Heap, ptr: *mut u8) {
    // SAFETY: forwarded; the inbox is shared by design.
    unsafe { (*owner).inbox.push(ptr as *mut Block) }
}

/// Frees every block other threads handed back to this heap.
///
/// # Safety
/// `heap` is the calling thread's heap (or a parked heap, under the pool lock).
pub unsafe fn drain_remote(heap: *mut Heap) {
    // SAFETY: the caller owns the heap; blocks in its inbox are live blocks of its pages.
    unsafe {
        (*heap).inbox.drain(|b| {
            let page = pagemap::lookup(b as usize) as *mut Page;
            free_local(heap, page, b as *mut u8);
        })
    }
}

/// Returns every empty page to the arena (the current pages and the span cache too when
/// `all`).
///
/// # Safety
/// `heap` is the calling thread's heap (or a parked heap under the pool lock).
pub unsafe fn release_empty_pages(heap: *mut Heap, all: bool) {
    if all {
        // SAFETY: forwarded.
        unsafe { release_spare(heap) };
    }
    for c in 0..NUM_CLASSES {
        // Full pages are never empty, so only the bin list is walked.
        // SAFETY: the heap and its pages belong to this thread; only the page visited is
        // unlinked.
        unsafe {
            lists::for_each_open_page(heap, c, |p| {
                if (*p).uses.live() == 0 && (all || p != (*heap).bins[c].page) {
                    unlink(heap, c, p);
                    retire(heap, p);
                }
            });
        }
    }
    if all {
        // SAFETY: forwarded.
        unsafe { spans::flush(heap) };
    }
}

/// Lets the empty current page of a big class stay in place, as the heap's one kept
/// page. The page kept before, if any, loses the right: empty, it goes to the spare slot.
///
/// # Safety
/// `page` is the empty current page of its class in `heap`, the calling thread's heap,
/// without `KEEP_EMPTY`.
unsafe fn keep_current(heap: *mut Heap, page: *mut Page) {
    // SAFETY: forwarded; the old kept page is one of this heap's linked pages (leave_bin
    // clears `kept` before a page leaves the heap).
    unsafe {
        let old = core::mem::replace(&mut (*heap).kept, page);
        if !old.is_null() {
            (*old).flags &= !KEEP_EMPTY;
            if (*old).uses.live() == 0 {
                debug_assert!((*old).flags & FULL == 0);
                unlink(heap, (*old).class as usize, old);
                stash_spare(heap, old);
            }
        }
        (*page).flags |= KEEP_EMPTY;
    }
}

/// Takes an empty, unlinked page out of the heap's accounting: its last pops are counted
/// and its bytes no longer belong to the class.
unsafe fn leave_bin(heap: *mut Heap, page: *mut Page) {
    // SAFETY: the page is the heap's, of its recorded class.
    unsafe {
        if (*heap).kept == page {
            (*heap).kept = ptr::null_mut();
        }
        let c = (*page).class as usize;
        count_pops(heap, c, page);
        let bytes = (*page).units as usize * UNIT_SIZE;
        let k = &mut (*heap).bins[c].span_bytes;
        *k = k.wrapping_sub(bytes as u64);
        count_moved(heap, -(bytes as i64));
    }
}

/// Keeps an empty big span in the spare slot, returning the previous spare to the arena.
/// The span stays counted in its class until it leaves the slot.
unsafe fn stash_spare(heap: *mut Heap, page: *mut Page) {
    // SAFETY: the page is empty, unlinked and owned by this thread's heap.
    unsafe {
        release_spare(heap);
        (*heap).spare = page;
    }
}

/// Returns the spare span, if any, to the arena.
///
/// # Safety
/// `heap` is the calling thread's heap (or a parked heap under the pool lock).
#[inline]
pub unsafe fn release_spare(heap: *mut Heap) {
    // SAFETY: forwarded; the spare is empty and in no list.
    unsafe {
        let old = core::mem::replace(&mut (*heap).spare, ptr::null_mut());
        if !old.is_null() {
            retire(heap, old);
        }
    }
}

/// Takes an empty, unlinked page out of its bin: into the heap's span cache, which hands
/// spans to the arena beyond its bound.
#[inline(never)]
unsafe fn retire(heap: *mut Heap, page: *mut Page) {
    // SAFETY: the page is empty and unlinked; nobody references its blocks. The heap is
    // the page's owner, run by this thread.
    unsafe {
        leave_bin(heap, page);
        spans::put(heap, page);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{self, tls};

    fn page_of(p: *mut u8) -> *mut Page {
        pagemap::lookup(p as usize) as *mut Page
    }

    /// Pages of this heap's big classes that carry `KEEP_EMPTY`.
    fn big_pages_keeping(heap: *mut Heap) -> usize {
        let mut n = 0;
        for c in (0..NUM_CLASSES).filter(|&c| class_size(c) > KEEP_EMPTY_MAX) {
            // SAFETY: this thread's heap, walked without unlinking.
            unsafe {
                lists::for_each_page(heap, c, |p| n += ((*p).flags & KEEP_EMPTY != 0) as usize)
            };
        }
        n
    }

    #[test]
    fn a_full_page_comes_back_on_its_first_free_with_its_counts() {
        let size = 3000;
        let c = crate::size_class::class_of(size);
        let mut blocks = std::vec::Vec::new();
        // Fill pages of the class until the first one goes to the full list.
        let first = loop {
            let p = host::alloc(size, 8);
            assert!(!p.is_null());
            blocks.push(p);
            // SAFETY: a live span head of this thread's heap.
            if unsafe { (*page_of(blocks[0])).flags } & FULL != 0 {
                break page_of(blocks[0]);
            }
            assert!(blocks.len() < 100_000, "no page went full");
        };
        let heap = tls::get();
        let in_open = |page| {
            let mut found = false;
            // SAFETY: this thread's heap, walked without unlinking.
            unsafe { lists::for_each_open_page(heap, c, |p| found |= p == page) };
            found
        };
        assert!(!in_open(first));
        // SAFETY: the blocks are live blocks of this thread; the heap and its pages are
        // this thread's, read between calls that change them.
        unsafe {
            let cap = (*first).capacity as u64;
            let (mine, rest): (std::vec::Vec<_>, std::vec::Vec<_>) =
                blocks.into_iter().partition(|&p| page_of(p) == first);
            assert_eq!(mine.len() as u64, cap, "every block of a full page is out");
            host::free(mine[0]);
            assert_eq!(
                (*first).flags & FULL,
                0,
                "the first free takes it off the full list"
            );
            assert!(in_open(first), "and links it into its bin");
            assert_eq!((*first).uses.live(), cap - 1);
            host::free(mine[1]);
            assert_eq!((*first).uses.live(), cap - 2, "later frees count as before");
            for &p in mine[2..].iter().chain(&rest) {
                host::free(p);
            }
            // A page still held full would read one live block here.
            lists::for_each_page(heap, c, |p| assert_eq!((*p).uses.live(), 0));
            if !cfg!(feature = "no-counters") {
                assert_eq!((*heap).full_live[c], 0);
            }
        }
    }

    #[test]
    fn one_empty_big_page_stays_current_and_the_one_before_goes_spare() {
        let p = host::alloc(256 << 10, 8);
        assert!(!p.is_null());
        let heap = tls::get();
        let (a, c) = (page_of(p), crate::size_class::class_of(256 << 10));
        // SAFETY: p is a live block of this thread; the heap and its pages are this
        // thread's, read between calls that change them.
        unsafe {
            host::free(p);
            assert_eq!((*heap).kept, a, "the emptied current page stays in place");
            assert_eq!((*heap).bins[c].page, a);
            assert_eq!(host::alloc(256 << 10, 8), p, "refilled from its own free");
            host::free(p);

            let q = host::alloc(512 << 10, 8);
            host::free(q);
            assert_eq!(
                (*heap).kept,
                page_of(q),
                "the newest empty big page is kept"
            );
            assert_eq!(
                (*heap).spare,
                a,
                "the one kept before went to the spare slot"
            );
            assert_ne!((*heap).bins[c].page, a);
            assert_eq!(big_pages_keeping(heap), 1);
            assert!(direct_slots_agree(heap));

            assert_eq!(
                host::alloc(256 << 10, 8),
                p,
                "the spare serves its class again"
            );
            host::free(p);
            assert_eq!((*heap).kept, a);
            assert_eq!(big_pages_keeping(heap), 1);
        }
    }

    #[test]
    fn mid_size_classes_share_one_kept_page() {
        let sizes = [40 << 10, 64 << 10, 96 << 10, 128 << 10];
        let blocks = sizes.map(|s| host::alloc(s, 8));
        assert!(blocks.iter().all(|p| !p.is_null()));
        let heap = tls::get();
        let mut empty = 0;
        // SAFETY: the blocks are live blocks of this thread; the heap and its pages are
        // this thread's, walked without unlinking after the frees.
        unsafe {
            for p in blocks {
                host::free(p);
            }
            for c in (0..NUM_CLASSES).filter(|&c| class_size(c) > 32 << 10) {
                lists::for_each_page(heap, c, |p| empty += ((*p).uses.live() == 0) as usize);
            }
            assert!(!(*heap).spare.is_null(), "the kept page before went spare");
        }
        assert_eq!(empty, 1, "only the kept page stays linked");
    }

    #[test]
    fn spans_hold_enough_blocks() {
        for c in 0..NUM_CLASSES {
            let blocks = span_units(c) * UNIT_SIZE / class_size(c);
            let want = if class_size(c) <= 131_072 { 4 } else { 2 };
            assert!(blocks >= want, "class {c}");
            assert!(span_units(c) <= super::super::UNITS / 4);
        }
    }
}
