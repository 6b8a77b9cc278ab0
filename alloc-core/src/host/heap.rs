//! Thread heaps: the fast path.
//!
//! A heap belongs to one thread at a time. For each size class it keeps a list of spans
//! (pages) with free blocks; the list head is the page allocations come from. Allocation
//! and the free of a block the heap owns touch only the heap and the page: no atomics, no
//! locks. A block freed by another thread is pushed onto the owner heap's `remote` stack
//! with one CAS; the owner drains that stack on its slow path.
//!
//! Page states: in the bin list (has or may get free blocks), or `FULL` (no free block,
//! moved to the class's full list; the next local free moves it back). A page whose last
//! block comes back is returned to the arena, unless it is the bin's current page, which is
//! kept so that an alloc/free loop does not bounce spans through the arena lock. An idle
//! sweep (one class per slow path) returns a kept empty page once its class has seen no
//! allocation for a whole sweep round, so a buffer grown by realloc through many classes
//! leaves nothing behind.
//!
//! When a thread exits, its heap keeps its pages, returns the empty ones, and is parked;
//! the next new thread adopts it. So a program that starts and ends 100,000 threads uses a
//! handful of heaps, and its RSS stays flat.

use super::arena::ARENA;
use super::page::{Block, Page, FULL, IN_USE, KEEP_EMPTY};
use super::stats::{self, LocalCounters};
use super::{init, pagemap, tls, UNIT_SIZE};
use crate::size_class::{class_size, NUM_CLASSES};
use crate::source::os;
use crate::sys::SpinLock;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// Blocks above this size do not keep an empty current page: the page goes to the heap's
/// single spare slot instead, so a thread holds at most one empty big span.
const KEEP_EMPTY_MAX: usize = 128 * 1024;

/// Bytes carved onto a free list at a time (at least one block).
const EXTEND_BYTES: usize = 16 * 1024;
/// Slow-path events between two looks at the clock.
const TICKS_PER_CHECK: u32 = 64;
/// Least time between two folds of a heap's counters, in coarse ms: stats readers see
/// figures at most this old from a busy thread, and the fold's cost stays negligible.
const FOLD_INTERVAL_MS: u64 = 10;

/// One thread's heap.
#[repr(C)]
pub struct Heap {
    /// Current page of each class, or the sentinel when the class has no page.
    pub bins: [*mut Page; NUM_CLASSES],
    tails: [*mut Page; NUM_CLASSES],
    /// Pages with no free block, per class (doubly linked through `next`/`prev`).
    full: [*mut Page; NUM_CLASSES],
    /// One empty span of a big class, kept for the next big allocation.
    spare: *mut Page,
    pub counters: [LocalCounters; NUM_CLASSES],
    folded: [LocalCounters; NUM_CLASSES],
    span_bytes: stats::SpanBytes,
    span_bytes_folded: stats::SpanBytes,
    ticks: u32,
    /// Next class the idle sweep looks at.
    sweep: u32,
    /// `counters[c].allocs` when the sweep last looked at class c.
    sweep_allocs: [u64; NUM_CLASSES],
    /// When the counters were last folded (coarse ms).
    folded_at: u64,
    /// Next heap in the parked list.
    next: *mut Heap,
    _pad: [u8; 64],
    /// Blocks freed by other threads (a Treiber stack through the blocks' first word).
    pub remote: AtomicPtr<Block>,
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

/// Parked heaps and counts. Lock order: HEAPS, then ARENA, then the stats lock.
pub struct Pool {
    parked: *mut Heap,
    active: usize,
    abandoned: usize,
}
// SAFETY: guarded by its lock.
unsafe impl Send for Pool {}

pub static HEAPS: SpinLock<Pool> = SpinLock::new(Pool {
    parked: ptr::null_mut(),
    active: 0,
    abandoned: 0,
});

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

/// The heap of this thread, creating or adopting one. Null when out of memory.
#[cold]
pub fn thread_heap() -> *mut Heap {
    let h = tls::get();
    if !h.is_null() {
        return h;
    }
    init::ensure();
    let heap = {
        let mut pool = HEAPS.lock();
        let h = pool.parked;
        if !h.is_null() {
            // SAFETY: parked heaps are live and owned by the pool.
            pool.parked = unsafe { (*h).next };
            pool.abandoned -= 1;
        }
        pool.active += 1;
        h
    };
    let heap = if heap.is_null() { new_heap() } else { heap };
    if heap.is_null() {
        HEAPS.lock().active -= 1;
        return heap;
    }
    tls::set(heap);
    init::register_thread(heap);
    init::install_fork_handlers();
    // SAFETY: the heap is ours now.
    unsafe { drain_remote(heap) };
    let pool = HEAPS.lock();
    stats::publish_heaps(pool.active, pool.abandoned);
    heap
}

fn new_heap() -> *mut Heap {
    let Some(mem) = os::map(core::mem::size_of::<Heap>()) else {
        return ptr::null_mut();
    };
    let h = mem.as_ptr() as *mut Heap;
    // SAFETY: fresh zeroed memory sized for a Heap; zero is valid for every field but the
    // bins, which we point at the sentinel.
    unsafe { (*h).bins = [sentinel(); NUM_CLASSES] };
    h
}

/// Parks the heap of an exiting thread.
///
/// # Safety
/// `heap` is the calling thread's heap, and the thread will not use it again without
/// adopting it anew.
pub unsafe fn abandon(heap: *mut Heap) {
    // SAFETY: forwarded.
    unsafe {
        drain_remote(heap);
        release_empty_pages(heap, true);
        fold(heap);
    }
    tls::set(ptr::null_mut());
    let mut pool = HEAPS.lock();
    // SAFETY: the heap is no longer used by this thread.
    unsafe { (*heap).next = pool.parked };
    pool.parked = heap;
    pool.active -= 1;
    pool.abandoned += 1;
    stats::publish_heaps(pool.active, pool.abandoned);
}

/// Returns every empty page to the arena (the current pages too when `all`).
///
/// # Safety
/// `heap` is the calling thread's heap.
pub unsafe fn release_empty_pages(heap: *mut Heap, all: bool) {
    if all {
        // SAFETY: forwarded.
        unsafe { release_spare(heap) };
    }
    for c in 0..NUM_CLASSES {
        // SAFETY: the heap and its pages belong to this thread.
        unsafe {
            let mut p = (*heap).bins[c];
            while p != sentinel() && !p.is_null() {
                let next = (*p).next;
                if (*p).used == 0 && (all || p != (*heap).bins[c]) {
                    unlink(heap, c, p);
                    retire(heap, p);
                }
                p = next;
            }
        }
    }
}

/// Folds the heap's counters into the shared section.
///
/// The free path counts nothing: frees are derived here as allocations minus the blocks
/// still live in the heap's pages (`used`, exact on every page), so a free costs no
/// counter update at all.
///
/// # Safety
/// `heap` is the calling thread's heap (or a parked heap, under the pool lock).
pub unsafe fn fold(heap: *mut Heap) {
    // SAFETY: forwarded; the counters and pages are this thread's.
    unsafe {
        let h = &mut *heap;
        for c in 0..NUM_CLASSES {
            let mut live = 0u64;
            for list in [h.bins[c], h.full[c]] {
                let mut p = list;
                while p != sentinel() && !p.is_null() {
                    live += (*p).used as u64;
                    p = (*p).next;
                }
            }
            h.counters[c].frees = h.counters[c].allocs.wrapping_sub(live);
        }
        stats::fold(
            &h.counters,
            &mut h.folded,
            &h.span_bytes,
            &mut h.span_bytes_folded,
        )
    };
    // SAFETY: as above.
    unsafe {
        (*heap).ticks = 0;
        (*heap).folded_at = crate::sys::now_ms();
    }
}

#[inline]
unsafe fn tick(heap: *mut Heap) {
    // SAFETY: forwarded.
    unsafe {
        sweep_one(heap);
        (*heap).ticks += 1;
        if (*heap).ticks >= TICKS_PER_CHECK {
            (*heap).ticks = 0;
            if crate::sys::now_ms() >= (*heap).folded_at + FOLD_INTERVAL_MS {
                fold(heap);
                if let Some(pool) = HEAPS.try_lock() {
                    reclaim_parked(&pool);
                }
            }
        }
    }
}

/// Looks at one class: its current page is returned to the arena if it is empty and the
/// class saw no allocation since the sweep last came by (a whole round of slow paths ago).
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
        let allocs = h.counters[c].allocs;
        let page = h.bins[c];
        if page != sentinel()
            && (*page).used == 0
            && (*page).next.is_null()
            && h.sweep_allocs[c] == allocs
        {
            unlink(heap, c, page);
            retire(heap, page);
        }
        h.sweep_allocs[c] = allocs;
    }
}

/// Frees the blocks other threads handed back to parked heaps, and returns their empty
/// pages. Without this, memory freed after its allocating thread exited would wait for a
/// new thread to adopt the heap.
pub fn reclaim_parked(pool: &Pool) {
    let mut h = pool.parked;
    while !h.is_null() {
        // SAFETY: holding the pool lock, nobody can adopt a parked heap, so we may act as
        // its owner; parked heaps are live.
        unsafe {
            if !(*h).remote.load(Ordering::Relaxed).is_null() {
                drain_remote(h);
                release_empty_pages(h, true);
                fold(h);
            }
            h = (*h).next;
        }
    }
}

/// Pops a block from a page known to have one, counting it.
///
/// # Safety
/// `heap` is the calling thread's heap, `page` one of its pages with a non-empty free
/// list, and `c` its class.
#[inline(always)]
pub unsafe fn pop(heap: *mut Heap, page: *mut Page, c: usize, size: usize) -> *mut u8 {
    // SAFETY: the caller checked the free list is non-empty; the page is this heap's.
    unsafe {
        let b = (*page).free;
        (*page).free = (*b).next;
        (*page).used += 1;
        if !cfg!(feature = "no-counters") {
            // c < NUM_CLASSES: callers pass a class index.
            let k = (*heap).counters.get_unchecked_mut(c);
            k.allocs += 1;
            k.requested += size as u64;
        }
        b as *mut u8
    }
}

/// Allocation when the current page of class `c` has no free block (or no heap exists).
#[cold]
#[inline(never)]
///
/// # Safety
/// `heap` is null or the calling thread's heap; `c < NUM_CLASSES`.
pub unsafe fn alloc_slow(mut heap: *mut Heap, c: usize, size: usize) -> *mut u8 {
    if heap.is_null() {
        heap = thread_heap();
        if heap.is_null() {
            return ptr::null_mut();
        }
    }
    // SAFETY: the heap is this thread's; pages in its bins are its own.
    unsafe {
        // The common case first, with no housekeeping: the current page's own frees refill
        // its free list (every few allocations for big blocks in an alloc/free loop).
        let page = (*heap).bins[c];
        if !(*page).local_free.is_null() {
            (*page).free = core::mem::replace(&mut (*page).local_free, ptr::null_mut());
            return pop(heap, page, c, size);
        }
        drain_remote(heap);
        tick(heap);
        loop {
            let page = (*heap).bins[c];
            if page == sentinel() {
                break;
            }
            if !(*page).free.is_null() {
                return pop(heap, page, c, size);
            }
            if !(*page).local_free.is_null() {
                (*page).free = core::mem::replace(&mut (*page).local_free, ptr::null_mut());
                return pop(heap, page, c, size);
            }
            if (*page).can_extend() {
                (*page).extend(EXTEND_BYTES);
                return pop(heap, page, c, size);
            }
            unlink(heap, c, page);
            (*page).flags |= FULL;
            full_push(heap, c, page);
        }
        let units = span_units(c);
        let spare = (*heap).spare;
        let page = if !spare.is_null() && (*spare).units as usize == units {
            (*heap).spare = ptr::null_mut();
            spare
        } else {
            let Some(span) = ARENA.lock().alloc_span(units) else {
                return ptr::null_mut();
            };
            (*heap).counters[c].misses += 1;
            span.page
        };
        let bs = class_size(c);
        (*page).init_small(heap, c, bs, units * UNIT_SIZE, bs <= KEEP_EMPTY_MAX);
        push_front(heap, c, page);
        (*heap).span_bytes[c] += (units * UNIT_SIZE) as u64;
        (*page).extend(EXTEND_BYTES);
        pop(heap, page, c, size)
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
        let b = ptr as *mut Block;
        (*b).next = (*page).local_free;
        (*page).local_free = b;
        let used = (*page).used - 1;
        (*page).used = used;
        // An empty current page stays put (an alloc/free loop must not bounce it through
        // the arena); any other empty page, or a full one getting a block back, needs work.
        let flags = (*page).flags;
        if flags & FULL != 0
            || (used == 0
                && (flags & KEEP_EMPTY == 0 || (*heap).bins[(*page).class as usize] != page))
        {
            free_local_slow(heap, page);
        }
    }
}

#[cold]
#[inline(never)]
unsafe fn free_local_slow(heap: *mut Heap, page: *mut Page) {
    // SAFETY: forwarded from free_local.
    unsafe {
        let c = (*page).class as usize;
        if (*page).flags & FULL != 0 {
            (*page).flags &= !FULL;
            full_unlink(heap, c, page);
            push_back(heap, c, page);
        }
        if (*page).used == 0 {
            if (*page).flags & KEEP_EMPTY == 0 {
                unlink(heap, c, page);
                stash_spare(heap, page);
            } else if (*heap).bins[c] != page {
                unlink(heap, c, page);
                retire(heap, page);
            }
        }
    }
}

/// Pushes a block onto its owner heap's remote stack.
///
/// # Safety
/// `owner` is a live heap (heaps are never unmapped) owning the block's page; `ptr` is a
/// live block.
pub unsafe fn free_remote(owner: *mut Heap, ptr: *mut u8) {
    let b = ptr as *mut Block;
    // SAFETY: forwarded.
    let stack = unsafe { &(*owner).remote };
    let mut head = stack.load(Ordering::Relaxed);
    loop {
        // SAFETY: the block is ours to write until the push succeeds.
        unsafe { (*b).next = head };
        match stack.compare_exchange_weak(head, b, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

/// Frees every block other threads handed back to this heap.
///
/// # Safety
/// `heap` is the calling thread's heap.
pub unsafe fn drain_remote(heap: *mut Heap) {
    // SAFETY: forwarded.
    let stack = unsafe { &(*heap).remote };
    if stack.load(Ordering::Relaxed).is_null() {
        return;
    }
    let mut b = stack.swap(ptr::null_mut(), Ordering::Acquire);
    while !b.is_null() {
        // SAFETY: blocks on the stack are live blocks of pages this heap owns; the Acquire
        // swap makes their links visible.
        unsafe {
            let next = (*b).next;
            let page = pagemap::lookup(b as usize) as *mut Page;
            free_local(heap, page, b as *mut u8);
            b = next;
        }
    }
}

/// Keeps an empty big span in the spare slot, returning the previous spare to the arena.
unsafe fn stash_spare(heap: *mut Heap, page: *mut Page) {
    // SAFETY: the page is empty, unlinked and owned by this thread's heap.
    unsafe {
        release_spare(heap);
        let k = &mut (*heap).span_bytes[(*page).class as usize];
        *k = k.wrapping_sub((*page).units as u64 * UNIT_SIZE as u64);
        (*heap).spare = page;
    }
}

/// Returns the spare span, if any, to the arena.
///
/// # Safety
/// `heap` is the calling thread's heap (or a parked heap under the pool lock).
pub unsafe fn release_spare(heap: *mut Heap) {
    // SAFETY: forwarded; the spare is empty and in no list.
    unsafe {
        let old = core::mem::replace(&mut (*heap).spare, ptr::null_mut());
        if !old.is_null() {
            release_span(old);
        }
    }
}

unsafe fn release_span(page: *mut Page) {
    // SAFETY: the span is empty and referenced by nothing.
    unsafe {
        (*page).heap = ptr::null_mut();
        (*page).flags = 0;
        ARENA.lock().free_span(page);
    }
}

unsafe fn retire(heap: *mut Heap, page: *mut Page) {
    // SAFETY: the page is empty and unlinked; nobody references its blocks. The heap is
    // the page's owner, run by this thread.
    unsafe {
        let k = &mut (*heap).span_bytes[(*page).class as usize];
        *k = k.wrapping_sub((*page).units as u64 * UNIT_SIZE as u64);
        release_span(page);
    }
}

unsafe fn push_front(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: list manipulation on this thread's heap and pages.
    unsafe {
        let head = (*heap).bins[c];
        (*page).prev = ptr::null_mut();
        if head == sentinel() {
            (*page).next = ptr::null_mut();
            (*heap).tails[c] = page;
        } else {
            (*page).next = head;
            (*head).prev = page;
        }
        (*heap).bins[c] = page;
        debug_assert!((*page).flags & IN_USE != 0);
    }
}

unsafe fn full_push(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: list manipulation on this thread's heap and pages; page is in no list.
    unsafe {
        let head = (*heap).full[c];
        (*page).prev = ptr::null_mut();
        (*page).next = head;
        if !head.is_null() {
            (*head).prev = page;
        }
        (*heap).full[c] = page;
    }
}

unsafe fn full_unlink(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: list manipulation on this thread's heap and pages; page is in full list c.
    unsafe {
        let (prev, next) = ((*page).prev, (*page).next);
        if prev.is_null() {
            (*heap).full[c] = next;
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        }
        (*page).next = ptr::null_mut();
        (*page).prev = ptr::null_mut();
    }
}

unsafe fn push_back(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: list manipulation on this thread's heap and pages.
    unsafe {
        let tail = (*heap).tails[c];
        (*page).next = ptr::null_mut();
        (*page).prev = tail;
        if tail.is_null() {
            (*heap).bins[c] = page;
        } else {
            (*tail).next = page;
        }
        (*heap).tails[c] = page;
    }
}

unsafe fn unlink(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: list manipulation on this thread's heap and pages; page is in list c.
    unsafe {
        let (prev, next) = ((*page).prev, (*page).next);
        if prev.is_null() {
            (*heap).bins[c] = if next.is_null() { sentinel() } else { next };
        } else {
            (*prev).next = next;
        }
        if next.is_null() {
            (*heap).tails[c] = prev;
        } else {
            (*next).prev = prev;
        }
        (*page).next = ptr::null_mut();
        (*page).prev = ptr::null_mut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
