//! The host pool: what `malloc` and the Rust global allocator call.
//!
//! Sizes up to 1 MiB go to the calling thread's heap (size classes in 64 KiB-unit spans);
//! up to 4 MiB (`LARGE_MAX`) to a large span of whole units taken from the arena; beyond that (or for
//! alignments above 64 KiB) to a mapping of their own. A realloc that grows a block past
//! 64 KiB gives it a large span even below 1 MiB, so that later growth can be in place
//! (`REALLOC_SPAN_MIN`). Every path returns null on failure and leaves existing blocks
//! untouched.

pub mod arena;
pub mod front_end;
pub mod global;
pub mod heap;
pub mod huge;
pub mod huge_path;
pub mod init;
pub mod meta;
pub mod page;
pub mod pagemap;
pub mod segment;
pub mod stats;
pub mod tls;
pub mod unmap;

use crate::size_class::{class_of, natural_class_of, MAX_SMALL, TABLE_MAX};
use crate::source::os::OS_PAGE;
use crate::stats::layout::HostSection;
use crate::stats::{seqlock, shm};
use crate::sys;
use arena::ARENA;
use huge::Huge;
use page::{Page, CACHED_OWNER, HUGE_OWNER, LARGE_OWNER};
use stats::Big;

/// log2 of the segment size (32 MiB).
pub const SEGMENT_SHIFT: u32 = 25;
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
/// log2 of the unit size (64 KiB): span granularity, and the largest alignment served from
/// size classes.
pub const UNIT_SHIFT: u32 = 16;
pub const UNIT_SIZE: usize = 1 << UNIT_SHIFT;
/// Units in a segment.
pub const UNITS: usize = SEGMENT_SIZE / UNIT_SIZE;
/// Largest block served as a span of the arena. Bigger blocks get mappings of their own,
/// which mremap can resize without copying or re-faulting (big buffers in a loop, growing
/// vectors).
pub const LARGE_MAX: usize = 4 << 20;

/// The class for a request on the fast path, if it has one.
#[inline(always)]
fn fast_class(size: usize, align: usize) -> Option<usize> {
    if size > MAX_SMALL {
        return None;
    }
    if align <= 8 {
        Some(class_of(size))
    } else if align == 16 {
        // Round up to a multiple of 16, and at least 16 (size 0 must not get the 8 B class).
        Some(class_of((size.max(1) + 15) & !15))
    } else if align <= UNIT_SIZE {
        crate::size_class::class_for(size, align)
    } else {
        None
    }
}

/// A block of class `c` from the current page of heap `h`, or null when `h` is null or
/// that page is empty. Calls nothing.
#[inline(always)]
fn pop_current(h: *mut heap::Heap, c: usize) -> *mut u8 {
    if h.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: a non-null TLS heap is this thread's; c < NUM_CLASSES (a class index from
    // fast_class); bins never hold null.
    unsafe {
        let page = (*h).bins.get_unchecked(c).page;
        if (*page).free.is_null() {
            return core::ptr::null_mut();
        }
        heap::pop(page)
    }
}

/// The fast path of [`alloc`] alone, at C's natural alignment (8 for requests of up to 8
/// bytes, 16 above: `capi`'s `natural_align`): a block from the current page of this
/// thread's heap, or null when that needs the slow path (no heap yet, an empty page, a
/// large or huge request). It calls nothing, so a front end that tail-calls its slow path
/// when this misses needs no stack frame (C's malloc: see capi/src/malloc.rs).
///
/// No branch picks the alignment: most programs mix requests on both sides of 8 bytes
/// (56% of glibc-thread's are 8 B or less), and such a branch picked between two copies
/// of the fast path and was mispredicted about once a call (callgrind's branch model:
/// 983,000 of 1,019,000 mispredictions in that benchmark, which took 1.7x mimalloc's
/// time). Above 1 KiB the class comes from [`natural_class_of`].
///
/// Up to 1 KiB the page comes from the heap's direct slots (`heap::Heap::direct`), one
/// load instead of the class and then its bin.
#[inline(always)]
pub fn alloc_fast_natural(size: usize) -> *mut u8 {
    if size <= TABLE_MAX {
        let h = tls::get();
        if h.is_null() {
            return core::ptr::null_mut();
        }
        // SAFETY: a non-null TLS heap is this thread's; the slot index is at most
        // TABLE_MAX / 8 < NATURAL_SLOTS; slots never hold null (the sentinel at worst).
        unsafe {
            let page = *(*h).direct.get_unchecked((size + 7) >> 3);
            if (*page).free.is_null() {
                return core::ptr::null_mut();
            }
            return heap::pop(page);
        }
    }
    if size > MAX_SMALL {
        return core::ptr::null_mut();
    }
    pop_current(tls::get(), natural_class_of(size))
}

/// What C's malloc tries right after [`alloc_fast_natural`] misses, before its full slow
/// path: the current page of the request's class refilled from its own frees
/// ([`heap::pop_own_frees`]), which is every allocation of a block above 1 KiB in an
/// alloc/free loop. Null when that does not apply. Calls nothing but a tail call, so the
/// front end's slow path gets there without a stack frame, and does not compute the class
/// and read the page a second time in the engine's slow path.
#[inline(always)]
pub fn alloc_own_frees_natural(size: usize) -> *mut u8 {
    if size > MAX_SMALL {
        return core::ptr::null_mut();
    }
    let h = tls::get();
    if h.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: a non-null TLS heap is this thread's; natural_class_of gives a class below
    // NUM_CLASSES for sizes up to MAX_SMALL.
    unsafe { heap::pop_own_frees(h, natural_class_of(size), size) }
}

/// Allocates `size` bytes aligned to `align` (a power of two). Null when out of memory.
#[inline(always)]
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    match fast_class(size, align) {
        Some(c) => {
            let h = tls::get();
            let p = pop_current(h, c);
            if !p.is_null() {
                return p;
            }
            // SAFETY: h is null or this thread's heap (read from its TLS slot).
            unsafe { heap::alloc_slow(h, c, size) }
        }
        None => alloc_big(size, align).0,
    }
}

/// Like [`alloc`], with the memory zeroed.
pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    if fast_class(size, align).is_some() {
        let p = alloc(size, align);
        if !p.is_null() {
            // SAFETY: p is a fresh block of at least `size` bytes.
            unsafe { p.write_bytes(0, size) };
        }
        return p;
    }
    let (p, zeroed) = alloc_big(size, align);
    if !p.is_null() && !zeroed {
        if size <= LARGE_MAX && align <= UNIT_SIZE {
            // SAFETY: as above.
            unsafe { p.write_bytes(0, size) };
        } else {
            // A reused huge mapping: dropping its pages costs what it holds resident, where
            // writing zeros would fault in every page of `size` (seconds and gigabytes for a
            // calloc of 2^32 bytes). The block was mapped for `size` rounded up to a page,
            // which therefore did not overflow.
            let len = (size.max(1) + OS_PAGE - 1) & !(OS_PAGE - 1);
            // SAFETY: p starts a huge mapping of ours at least `len` long, freshly handed
            // out: nothing in it is live yet.
            unsafe { crate::source::os::purge(p, len) };
        }
    }
    p
}

/// Large or huge allocation; returns the block and whether it is known to read as zero.
#[cold]
fn alloc_big(size: usize, align: usize) -> (*mut u8, bool) {
    init::ensure();
    if size <= LARGE_MAX && align <= UNIT_SIZE {
        return alloc_large(size);
    }
    huge_path::alloc(size, align)
}

/// A large span of its own for `size` bytes (at most [`LARGE_MAX`]), aligned to a unit;
/// returns the block and whether it is known to read as zero.
fn alloc_large(size: usize) -> (*mut u8, bool) {
    let units = size.div_ceil(UNIT_SIZE).max(1);
    let Some(span) = ARENA.lock().alloc_span(units) else {
        return (core::ptr::null_mut(), false);
    };
    // SAFETY: a fresh span head from the arena.
    unsafe {
        (*span.page).heap = LARGE_OWNER;
        stats::record_big(Big::Large, true, units * UNIT_SIZE, size, span.fresh);
        ((*span.page).start, span.zeroed)
    }
}

/// A realloc that grows a block beyond this many bytes moves it to a large span of its
/// own (up to [`LARGE_MAX`]) even where a size class would serve the size, so that the
/// next growth can extend it in place ([`arena::Arena::try_extend`]) instead of copying it
/// again. A block that grows once usually grows again (a list, a string builder, a
/// vector), and class blocks can only move. Under CPython with `PYTHONMALLOC=malloc`, the
/// json round trip of `benches/preload_suite.sh` copied 490 MB in reallocs of 128 KiB to
/// 1 MiB when every step of that growth moved to the next class (jemalloc, whose blocks
/// from 16 KiB are page runs that grow in place, copied 50-66 MB there); see BENCHMARKS.md.
/// From 64 KiB a block spans two units or more, so rounding to whole units costs less
/// than half of it (an eighth from 512 KiB), and the tail beyond the request is untouched
/// until the block grows into it: no RSS, except where a huge page holds it (the Rust
/// front end advises every segment; under a preload, large spans live in sparse
/// segments, which get no advice).
const REALLOC_SPAN_MIN: usize = UNIT_SIZE;

/// What a pointer is, as far as the pool is concerned.
enum Owner {
    Foreign,
    Small(*mut Page),
    Large(*mut Page),
    Huge(*mut Huge),
}

#[inline(always)]
fn classify(ptr: *const u8) -> Owner {
    let entry = pagemap::lookup(ptr as usize);
    if entry == 0 {
        return Owner::Foreign;
    }
    let page = entry as *mut Page;
    // SAFETY: entries point at live span heads or live huge records (records are
    // recycled, never unmapped while their pagemap entry is set), and both keep their
    // owner word at the offset of `Page::heap` (see `huge::Huge`).
    match unsafe { (*page).heap } {
        LARGE_OWNER => Owner::Large(page),
        CACHED_OWNER => Owner::Foreign,
        HUGE_OWNER => {
            let h = entry as *mut Huge;
            // SAFETY: as above, a huge record.
            if unsafe { (*h).live && (*h).base == ptr as usize } {
                Owner::Huge(h)
            } else {
                Owner::Foreign
            }
        }
        _ => Owner::Small(page),
    }
}

/// How a front end runs the slow part of a free, the only part that may make system calls
/// (futex, madvise, munmap) and so change errno, which C's `free` must leave alone. Keeping
/// errno only there spares the fast path two accesses to libc's TLS.
pub trait SlowFree {
    fn run(f: impl FnOnce());
}

/// Runs the slow part of a free as it is (Rust callers have no errno to keep).
pub struct Plain;

impl SlowFree for Plain {
    #[inline(always)]
    fn run(f: impl FnOnce()) {
        f()
    }
}

/// Frees a block. Null and pointers the pool does not own are ignored.
///
/// # Safety
/// `ptr` is null, foreign, or a live block from this pool not freed since.
#[inline]
pub unsafe fn free(ptr: *mut u8) {
    // SAFETY: forwarded.
    unsafe { free_with::<Plain>(ptr) }
}

/// [`free`], with everything past the fast path run through `S`.
///
/// # Safety
/// As for [`free`].
#[inline(always)]
pub unsafe fn free_with<S: SlowFree>(ptr: *mut u8) {
    let entry = pagemap::lookup(ptr as usize);
    if entry != 0 {
        let page = entry as *mut Page;
        let h = tls::get();
        // SAFETY: the entry is a live span head or huge record, both with their owner
        // word at this offset (see classify); when the owner is this thread's heap, it
        // is a span and the block is ours to free locally, and the slow part runs when
        // push_local asks.
        unsafe {
            let owner = (*page).heap;
            if owner == h {
                if heap::push_local(h, page, ptr) {
                    S::run(move || heap::free_local_slow(h, page));
                }
                return;
            }
            if page::is_heap(owner) {
                // Another thread's block: into its owner's inbox, which makes no system
                // call (so errno needs no keeping) and needs no second lookup.
                return free_remote(owner, ptr);
            }
        }
    }
    // SAFETY: forwarded.
    S::run(move || unsafe { free_other(ptr) })
}

/// A small block owned by another heap (out of line: the fast path stays frameless).
///
/// # Safety
/// `owner` is the live heap owning the live block `ptr` (heaps are never unmapped).
#[cold]
#[inline(never)]
unsafe fn free_remote(owner: *mut heap::Heap, ptr: *mut u8) {
    // SAFETY: forwarded.
    unsafe { heap::free_remote(owner, ptr) }
}

/// Large and huge blocks, and pointers the pool does not own.
#[cold]
#[inline(never)]
unsafe fn free_other(ptr: *mut u8) {
    match classify(ptr) {
        Owner::Foreign => {}
        // SAFETY: the block is live and owned by another heap, which is never unmapped.
        Owner::Small(page) => unsafe { heap::free_remote((*page).heap, ptr) },
        Owner::Large(page) => {
            // SAFETY: a live large span.
            unsafe {
                if (*page).start != ptr {
                    return;
                }
                let bytes = (*page).units as usize * UNIT_SIZE;
                (*page).heap = core::ptr::null_mut();
                ARENA.lock().free_span(page);
                stats::record_big(Big::Large, false, bytes, 0, false);
            }
        }
        // SAFETY: a live huge record; the caller's free makes the block dead.
        Owner::Huge(h) => unsafe { huge_path::free(h) },
    }
}

/// Whether the pool owns the live block at `ptr`.
pub fn owns(ptr: *const u8) -> bool {
    !matches!(classify(ptr), Owner::Foreign)
}

/// The usable size of the block at `ptr`, exactly; 0 for pointers the pool does not own.
pub fn usable_size(ptr: *const u8) -> usize {
    match classify(ptr) {
        Owner::Foreign => 0,
        // SAFETY: classify returns live span heads and huge records only.
        Owner::Small(p) => unsafe { (*p).block_size as usize },
        // SAFETY: as above.
        Owner::Large(p) => unsafe { (*p).units as usize * UNIT_SIZE },
        // SAFETY: as above.
        Owner::Huge(h) => unsafe { (*h).len },
    }
}

/// Whether a block of `usable` bytes serves a realloc to `new_size` as it is: it fits, and
/// at least half of it stays in use. Written without `new_size * 2`, which wraps for
/// requests near `usize::MAX`.
#[inline]
fn keeps_block(new_size: usize, usable: usize) -> bool {
    new_size <= usable && new_size >= usable - usable / 2
}

/// Resizes a block, in place when it can. Null on failure, leaving the old block intact.
///
/// # Safety
/// `ptr` is a live block from this pool; `align` is its alignment (a power of two).
pub unsafe fn realloc(ptr: *mut u8, new_size: usize, align: usize) -> *mut u8 {
    let old = match classify(ptr) {
        Owner::Foreign => return core::ptr::null_mut(),
        Owner::Small(p) => {
            // SAFETY: a live span head.
            let bs = unsafe { (*p).block_size } as usize;
            if (bs <= 64 && new_size <= bs) || keeps_block(new_size, bs) {
                return ptr;
            }
            bs
        }
        Owner::Large(p) => {
            // SAFETY: a live large span head.
            let usable = unsafe { (*p).units } as usize * UNIT_SIZE;
            if keeps_block(new_size, usable) {
                return ptr;
            }
            if new_size > usable && new_size <= LARGE_MAX {
                let units = new_size.div_ceil(UNIT_SIZE);
                // SAFETY: a live large span head.
                if unsafe { ARENA.lock().try_extend(p, units) } {
                    stats::record_big(Big::Large, false, usable, 0, false);
                    stats::record_big(Big::Large, true, units * UNIT_SIZE, new_size, false);
                    return ptr;
                }
            }
            usable
        }
        Owner::Huge(h) => {
            // SAFETY: a live huge record.
            let (len, halign) = unsafe { ((*h).len, (*h).align) };
            if keeps_block(new_size, len) {
                return ptr;
            }
            if new_size > len && align <= halign {
                if let Some(want) = new_size.checked_next_multiple_of(OS_PAGE) {
                    // SAFETY: the caller owns the live block; mremap carries its pages.
                    if unsafe { huge_path::grow(h, want, halign, new_size) } {
                        // SAFETY: grow updated the record.
                        return unsafe { (*h).base } as *mut u8;
                    }
                }
            }
            len
        }
    };
    let fresh = if new_size > old
        && new_size > REALLOC_SPAN_MIN
        && new_size <= LARGE_MAX
        && align <= UNIT_SIZE
    {
        alloc_large(new_size).0
    } else {
        alloc(new_size, align)
    };
    if !fresh.is_null() {
        // SAFETY: both blocks are live and distinct; the copy fits in both.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr, fresh, old.min(new_size));
            free(ptr);
        }
    }
    fresh
}

/// Frees what the pool holds needlessly: blocks other threads freed to this thread's heap
/// and to the heaps of exited threads, empty pages (this thread's current pages and span
/// cache too when `force`), and, when `force`, purges every free page in the process now.
pub fn collect(force: bool) {
    heap::reclaim_parked(&heap::HEAPS.lock());
    let h = tls::get();
    if !h.is_null() {
        // SAFETY: this thread's heap.
        unsafe {
            heap::drain_remote(h);
            heap::release_empty_pages(h, force);
            heap::fold(h);
        }
    }
    ARENA.lock().maybe_purge(sys::now_ms(), force);
}

/// Folds this thread's counters into the stats section.
pub fn flush_stats() {
    let h = tls::get();
    if !h.is_null() {
        // SAFETY: this thread's heap.
        unsafe { heap::fold(h) };
    }
    ARENA.lock().publish();
}

/// A consistent copy of the host statistics section.
pub fn stats_snapshot() -> HostSection {
    loop {
        // SAFETY: the section is valid for the life of the process, starts with its seq.
        if let Some(s) = unsafe { seqlock::read(shm::host_section(), 1000) } {
            return s;
        }
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}
