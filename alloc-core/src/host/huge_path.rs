//! The huge-block paths of `alloc`, `free` and `realloc`: which parts hold the arena lock,
//! and which system calls run after it.
//!
//! Under the lock: the cache (take, put, expire), the pagemap entries, the records and
//! the accounting (`mapped`, `reserved`, `peak_reserved`, `huge_cached`, `purged`), all
//! updated in the same hold as the registration they describe. Outside it: mmap of a new
//! block, mremap of a block taken out of the cache or being grown by realloc (the caller's
//! alone then), and munmap of blocks evicted or expired from the cache (unregistered under
//! the lock first, see `host::unmap`). A reuse that needs no resize, the common case of a
//! loop over big buffers, takes the lock once; a resize or a new mapping twice, once on
//! each side of its system calls.
//!
//! With threads looping over 1-8 MiB buffers (`benches/c/large_threads.c`) these calls
//! held the lock for tens of microseconds each (a munmap of resident megabytes frees
//! their pages and shoots down TLBs; see BENCHMARKS.md for the counts).
//!
//! A fork in the middle of a path leaves the child with a block the child's pool no
//! longer registers (or a mapping it no longer counts): a leak in the child, never a
//! block reachable twice.

use super::arena::{Arena, ARENA};
use super::huge::{self, Huge};
use super::stats::{self, Big};
use super::UNIT_SIZE;
use crate::source::os::OS_PAGE;
use crate::sys::{self, SpinGuard};

/// Extra bytes a reused huge mapping may carry beyond the request (see [`reuse_len`]).
const HUGE_SLACK: usize = 32 << 20;

/// The length a cached mapping of `old` bytes is given for a request of `len`: a mapping
/// bigger than the request by at most max(request, 32 MiB) is used as it is, since
/// shrinking would drop pages that the next, bigger request of a loop over varied sizes
/// would fault back in. Beyond that slack, or too small, it is resized to `len`.
fn reuse_len(old: usize, len: usize) -> usize {
    if old >= len && old - len <= len.max(HUGE_SLACK) {
        old
    } else {
        len
    }
}

/// Allocates a huge block of `size` bytes aligned to `align` (at least a unit); returns it
/// and whether it reads as zero (a fresh mapping). Null when out of memory.
pub fn alloc(size: usize, align: usize) -> (*mut u8, bool) {
    let Some(len) = size
        .max(1)
        .checked_add(OS_PAGE - 1)
        .map(|l| l & !(OS_PAGE - 1))
    else {
        return (core::ptr::null_mut(), false);
    };
    let align = align.max(UNIT_SIZE);
    let mut a = ARENA.lock();
    let Some(h) = a.huge.take(len, align) else {
        drop(a);
        return create(len, align, size);
    };
    // SAFETY: the record came out of the cache, so its block is dead and ours alone.
    let old = unsafe { (*h).len };
    a.huge_cached -= old;
    let want = reuse_len(old, len);
    if want == old {
        return finish(a, h, size, false);
    }
    let grows = want > old;
    if grows {
        // SAFETY: as above.
        unsafe { a.huge.hide(h) };
    }
    drop(a);
    // SAFETY: as above; a growing block is hidden.
    let resized = unsafe {
        if grows {
            huge::grow_hidden(h, want, align)
        } else {
            huge::shrink(h, want)
        }
    };
    let mut a = ARENA.lock();
    if resized {
        if grows {
            // SAFETY: as above; grow_hidden prepared the leaf of the new base.
            unsafe { a.huge.show(h) };
        }
        a.mapped = a.mapped + want - old;
        a.reserved = a.reserved + want - old;
        a.peak_reserved = a.peak_reserved.max(a.reserved);
        return finish(a, h, size, false);
    }
    // The kernel refused: the old mapping goes, and a new one is made.
    // SAFETY: as above (unpublishing a hidden block clears an entry already clear).
    let gone = unsafe { a.huge.unpublish(h) };
    a.mapped -= gone.len();
    a.reserved -= gone.len();
    drop(a);
    drop(gone);
    create(len, align, size)
}

/// Maps a new huge block of `len` bytes (page-rounded `size`) and registers it. When the
/// kernel refuses (its overcommit policy, the address space, the map count), the cached
/// mappings count against the same limits: they are dropped and the kernel asked once
/// more, unless it refuses such a size outright.
fn create(len: usize, align: usize, size: usize) -> (*mut u8, bool) {
    let null = (core::ptr::null_mut(), false);
    let base = match huge::map(len, align) {
        Some(b) => b,
        None => {
            if sys::kernel_refuses_outright(len) {
                return null;
            }
            let mut a = ARENA.lock();
            let gone = a.huge.expire(0, 0, true);
            let bytes = gone.bytes();
            a.huge_cached -= bytes;
            a.mapped -= bytes;
            a.reserved -= bytes;
            a.publish();
            drop(a);
            // Unmapped before asking again.
            drop(gone);
            match (bytes > 0).then(|| huge::map(len, align)).flatten() {
                Some(b) => b,
                None => return null,
            }
        }
    };
    let mut a = ARENA.lock();
    // SAFETY: a fresh mapping from huge::map, for this alignment.
    match unsafe { a.huge.publish_new(base, len, align) } {
        Ok(h) => {
            a.mapped += len;
            a.reserved += len;
            a.peak_reserved = a.peak_reserved.max(a.reserved);
            finish(a, h, size, true)
        }
        Err(block) => {
            drop(a);
            drop(block);
            null
        }
    }
}

/// Hands out the registered block of `h`: marks it live, publishes the gauges, releases
/// the lock, and counts the allocation.
fn finish(a: SpinGuard<'_, Arena>, h: *mut Huge, size: usize, fresh: bool) -> (*mut u8, bool) {
    // SAFETY: h is a registered record the caller owns, under the lock.
    let (base, len) = unsafe {
        (*h).live = true;
        ((*h).base, (*h).len)
    };
    a.publish();
    drop(a);
    stats::record_big(Big::Huge, true, len, size, fresh);
    (base as *mut u8, fresh)
}

/// Frees the huge block of `h` into the cache. The mappings that leave the cache for it
/// (the oldest, when the cache is full, and those past the purge delay) are unmapped after
/// the lock.
///
/// # Safety
/// `h` is the live record of a block nobody uses any more.
pub unsafe fn free(h: *mut Huge) {
    let now = sys::now_ms();
    let mut a = ARENA.lock();
    // SAFETY: a live huge record; the block is dead now.
    let len = unsafe {
        (*h).live = false;
        (*h).len
    };
    // Expired entries first, so that they, not a recent one, make room.
    let delay = a.delay(now);
    let expired = a.huge.expire(now, delay, false);
    // SAFETY: the block was just freed by its owner.
    let evicted = unsafe { a.huge.put(h, now) };
    let gone = expired.bytes() + evicted.len();
    a.huge_cached = a.huge_cached + len - gone;
    a.mapped -= gone;
    a.reserved -= gone;
    a.purged += expired.bytes();
    a.schedule(now + delay);
    a.maybe_purge(now, false);
    a.publish();
    drop(a);
    drop(evicted);
    drop(expired);
    stats::record_big(Big::Huge, false, len, 0, false);
}

/// Grows the live huge block of `h` in its mapping to `want` bytes (a multiple of the OS
/// page, for a request of `size`), which mremap may move to an address aligned to
/// `align`; false, with the block unchanged, when the kernel refuses. The block is hidden from the pagemap during the
/// move: nobody but its owner, the caller, may name it meanwhile.
///
/// # Safety
/// `h` is the live record of a block the caller owns and does not use during the call.
pub unsafe fn grow(h: *mut Huge, want: usize, align: usize, size: usize) -> bool {
    // SAFETY: forwarded.
    let old = unsafe { (*h).len };
    let mut a = ARENA.lock();
    // SAFETY: forwarded.
    unsafe { a.huge.hide(h) };
    drop(a);
    // SAFETY: forwarded; hidden above.
    let grown = unsafe { huge::grow_hidden(h, want, align) };
    let mut a = ARENA.lock();
    // SAFETY: forwarded; its leaf was mapped before (same base) or prepared (new base).
    unsafe { a.huge.show(h) };
    if grown {
        a.mapped = a.mapped + want - old;
        a.reserved = a.reserved + want - old;
        a.peak_reserved = a.peak_reserved.max(a.reserved);
        a.publish();
        drop(a);
        stats::record_big(Big::Huge, false, old, 0, false);
        stats::record_big(Big::Huge, true, want, size, false);
    }
    grown
}
