//! Empty spans a heap keeps for its next refills, so that a thread whose pages empty and
//! refill (churn through a class, maps built and dropped) gets and returns spans without
//! the arena lock.
//!
//! Invariants:
//! - a cached span is empty, in no bin list, counted in no class, owned by no heap
//!   (`heap` is [`CACHED_OWNER`]: a stale free into it is ignored, as one into an arena
//!   span is), and still handed out as far as the arena is concerned;
//! - a heap caches at most [`CACHE_SPANS`] spans and [`CACHE_BYTES`] bytes; a span beyond
//!   that sends the older half to the arena, all under one lock;
//! - spans no refill took since the last fold go back to the arena at the next fold
//!   (every few ms of an active thread), where the purge delay runs; a forced collect and
//!   thread exit hand back everything ([`flush`]). An unforced collect leaves the cache,
//!   as it leaves the current pages: handing spans to the arena restarts the purge delay
//!   of their segments, which would keep memory freed long before from being purged;
//! - [`CACHED`] holds the bytes of every heap's cached spans, published as cached memory
//!   (returnable once collected) with the arena's gauges.

use super::Heap;
use crate::host::arena::{Arena, ARENA};
use crate::host::page::{Page, CACHED_OWNER};
use crate::host::UNIT_SIZE;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Most spans a heap keeps.
pub const CACHE_SPANS: usize = 16;
/// Most bytes a heap keeps in cached spans: 16 one-unit spans, or fewer bigger ones.
pub const CACHE_BYTES: usize = 1 << 20;

/// Bytes in every heap's span cache.
pub static CACHED: AtomicUsize = AtomicUsize::new(0);

/// One heap's cached spans, oldest first.
pub struct SpanCache {
    spans: [*mut Page; CACHE_SPANS],
    len: u32,
    /// Whether a refill took a span since the last fold.
    used: bool,
    bytes: usize,
}

impl SpanCache {
    /// Takes a cached span of exactly `units` units, the most recent first.
    #[inline]
    pub fn take(&mut self, units: usize) -> Option<*mut Page> {
        let n = self.len as usize;
        for i in (0..n).rev() {
            let p = self.spans[i];
            // SAFETY: cached spans are live span heads (invariant).
            if unsafe { (*p).units } as usize == units {
                self.spans.copy_within(i + 1..n, i);
                self.len -= 1;
                let b = units * UNIT_SIZE;
                self.bytes -= b;
                self.used = true;
                CACHED.fetch_sub(b, Ordering::Relaxed);
                return Some(p);
            }
        }
        None
    }
}

/// Spans of the size a refill just took from the arena that it takes along, under the same
/// lock, for the refills that follow (a heap whose data grows takes spans in a row).
pub const STOCK: usize = 4;

/// Takes up to [`STOCK`] more spans of `units` units from the arena into the cache, while
/// they fill at most half of it.
///
/// # Safety
/// `heap` is the calling thread's heap; `a` is the arena, locked.
pub unsafe fn stock(heap: *mut Heap, units: usize, a: &mut Arena) {
    // SAFETY: forwarded.
    let c = unsafe { &mut (*heap).spans };
    let b = units * UNIT_SIZE;
    for _ in 0..STOCK {
        if c.len as usize >= CACHE_SPANS / 2 || c.bytes + b > CACHE_BYTES / 2 {
            return;
        }
        let Some(span) = a.alloc_span(units) else {
            return;
        };
        // SAFETY: a fresh span head from the arena, ours alone.
        unsafe { (*span.page).heap = CACHED_OWNER };
        c.spans[c.len as usize] = span.page;
        c.len += 1;
        c.bytes += b;
        CACHED.fetch_add(b, Ordering::Relaxed);
    }
}

/// Keeps an empty span for the heap's next refill, or hands it and the cache's older half
/// to the arena when the cache is at its bound.
///
/// # Safety
/// `heap` is the calling thread's heap (or a parked heap under the pool lock); `page` is
/// an empty span it owned, unlinked and out of its class's accounting.
pub unsafe fn put(heap: *mut Heap, page: *mut Page) {
    // SAFETY: forwarded.
    unsafe {
        (*page).heap = CACHED_OWNER;
        let b = (*page).units as usize * UNIT_SIZE;
        let c = &mut (*heap).spans;
        if b > CACHE_BYTES {
            (*page).heap = ptr::null_mut();
            (*page).flags = 0;
            ARENA.lock().free_span(page);
            return;
        }
        if c.len as usize == CACHE_SPANS || c.bytes + b > CACHE_BYTES {
            let mut keep = c.len as usize / 2;
            let mut a = ARENA.lock();
            loop {
                give_oldest(c, c.len as usize - keep, &mut a);
                if c.bytes + b <= CACHE_BYTES || c.len == 0 {
                    break;
                }
                keep /= 2;
            }
        }
        c.spans[c.len as usize] = page;
        c.len += 1;
        c.bytes += b;
        CACHED.fetch_add(b, Ordering::Relaxed);
    }
}

/// Hands the `n` oldest cached spans to the arena, whose lock the caller holds.
fn give_oldest(c: &mut SpanCache, n: usize, a: &mut Arena) {
    let len = c.len as usize;
    let mut gone = 0;
    for &p in &c.spans[..n] {
        // SAFETY: cached spans are empty span heads nobody references (invariant).
        unsafe {
            gone += (*p).units as usize * UNIT_SIZE;
            (*p).heap = ptr::null_mut();
            (*p).flags = 0;
            a.free_span(p);
        }
    }
    c.spans.copy_within(n..len, 0);
    c.len -= n as u32;
    c.bytes -= gone;
    CACHED.fetch_sub(gone, Ordering::Relaxed);
}

/// Hands every cached span to the arena (one lock; none when the cache is empty).
///
/// # Safety
/// `heap` is the calling thread's heap, or a parked heap under the pool lock.
pub unsafe fn flush(heap: *mut Heap) {
    // SAFETY: forwarded.
    let c = unsafe { &mut (*heap).spans };
    c.used = false;
    if c.len != 0 {
        let n = c.len as usize;
        give_oldest(c, n, &mut ARENA.lock());
    }
}

/// At a fold: hands the cache to the arena if no refill used it since the last fold, so
/// spans a thread stopped needing wait for the purge delay in the arena, not here.
///
/// # Safety
/// As for [`flush`].
pub unsafe fn age(heap: *mut Heap) {
    // SAFETY: forwarded.
    unsafe {
        if (*heap).spans.used {
            (*heap).spans.used = false;
        } else {
            flush(heap);
        }
    }
}
