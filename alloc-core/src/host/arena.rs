//! The arena: the process-wide set of segments, handing out spans to thread heaps and
//! large blocks, and purging what has been free for longer than the purge delay.
//!
//! One lock guards it. It is taken only on slow paths: when a heap's span cache
//! (`heap::spans`) has no span of the size a refill needs (taking a few more along) or
//! holds more than its bound (giving back half), per large block, and per huge block.
//! Lock order: arena, then the stats lock, never the reverse.

use super::huge::HugeCache;
use super::page::{Page, IN_USE};
use super::segment::{Segment, Thp, SPARSE_UNITS};
use super::{stats, SEGMENT_SIZE, UNITS, UNIT_SIZE};
use crate::source::{os, MemorySource};
use crate::sys::{self, SpinLock};
use core::ptr::{self, NonNull};

/// Everything the arena lock guards.
pub struct Arena {
    /// All segments, most recently created first.
    segments: *mut Segment,
    /// Purge delay in coarse milliseconds.
    pub purge_delay_ms: u64,
    /// Earliest pending purge deadline (u64::MAX when none).
    next_purge: u64,
    /// Bytes of dirty units (free, not yet purged) in all segments.
    dirty: usize,
    /// Accounting published in the host stats section.
    pub mapped: usize,
    pub reserved: usize,
    pub peak_reserved: usize,
    pub purged: usize,
    pub segment_count: usize,
    /// Recently freed huge mappings kept for reuse.
    pub huge: HugeCache,
    /// Bytes of the mappings in `huge` (whoever takes, puts or expires them keeps it).
    pub huge_cached: usize,
    /// Highest live bytes (reserved, less dirty units and cached huge mappings) seen in
    /// the current window of [`PEAK_WINDOW_MS`] and in the one before: what the dirty cap
    /// follows, so that it does not collapse when live data drops at once.
    live_peak: [usize; 2],
    /// When the current window ends (coarse ms).
    window_end: u64,
    /// Transparent huge pages: the advice new segments get, and whether purges keep whole
    /// huge pages (set at init from `huge_pages` and the kernel's mode).
    pub thp: Thp,
    /// A deferred advice ([`Thp::deferred`]) has been given: every segment has it.
    thp_given: bool,
}

// SAFETY: the raw pointers are only followed under the arena lock.
unsafe impl Send for Arena {}

/// Dirty bytes always allowed to wait for their purge delay; beyond this and the recent
/// peak of live bytes, a free purges the longest-quiet segments at once (`trim`).
const DIRTY_MIN: usize = 32 << 20;

/// How long the free units of a partly used huge page wait, at least, after the purge
/// delay returned the segment's whole free huge pages: splitting a huge page for them pays
/// only once the program has stopped freeing into the segment for this long.
const SPLIT_DELAY_MS: u64 = 1000;

/// Bytes of spans and large blocks in use beyond which a deferred huge-page advice
/// ([`Thp::deferred`]) is given: a program that never holds more stays in 4 KiB pages.
/// Measured under the preload (BENCHMARKS.md): at 4 MiB, CPython's test suite still had
/// 63 MiB of RSS against 53 without huge pages and mimalloc's 52, at 64 MiB 53; the Rust
/// workload, which holds ~150 MB, kept its CPU time (the first 64 MiB take 16,384 faults
/// of 4 KiB, about 1% of its CPU).
const THP_AFTER: usize = 64 << 20;

/// Length of a window of the live peak the dirty cap follows: a drop of live data is
/// remembered for one to two windows.
const PEAK_WINDOW_MS: u64 = 1000;

/// The process's arena.
pub static ARENA: SpinLock<Arena> = SpinLock::new(Arena {
    segments: ptr::null_mut(),
    purge_delay_ms: 10,
    next_purge: u64::MAX,
    dirty: 0,
    mapped: 0,
    reserved: 0,
    peak_reserved: 0,
    purged: 0,
    segment_count: 0,
    huge: HugeCache::EMPTY,
    huge_cached: 0,
    live_peak: [0; 2],
    window_end: 0,
    thp: Thp::OFF,
    thp_given: false,
});

/// A span handed out by the arena.
pub struct Span {
    pub page: *mut Page,
    /// Every unit was clean: the memory reads as zero.
    pub zeroed: bool,
    /// Some unit was clean: this request needed fresh pages (a miss).
    pub fresh: bool,
}

impl Arena {
    /// Takes `units` contiguous units, creating a segment if needed.
    pub fn alloc_span(&mut self, units: usize) -> Option<Span> {
        debug_assert!((1..=UNITS).contains(&units));
        self.maybe_purge(sys::now_ms(), false);
        let sparse = self.thp.split_sparse && units >= SPARSE_UNITS;
        // Recently freed (dirty) memory first, then any free run.
        let mut found = None;
        for dirty_first in [true, false] {
            if dirty_first && self.dirty == 0 {
                continue;
            }
            let mut seg = self.segments;
            while !seg.is_null() && found.is_none() {
                // SAFETY: segments in the list are live metadata, guarded by the arena lock.
                let s = unsafe { &mut *seg };
                let run = if s.sparse != sparse {
                    None
                } else if dirty_first {
                    s.find_dirty_run(units)
                } else {
                    s.find_run(units)
                };
                if let Some(first) = run {
                    found = Some((seg, first));
                }
                seg = s.next;
            }
            if found.is_some() {
                break;
            }
        }
        let (seg, first) = match found {
            Some(f) => f,
            None => (self.new_segment(sparse)?, 0),
        };
        // SAFETY: as above.
        let s = unsafe { &mut *seg };
        if !s.link_span(first, units) {
            return None;
        }
        let clean = s.take(first, units);
        self.dirty -= (units - clean) * UNIT_SIZE;
        self.reserved += clean * UNIT_SIZE;
        self.grew();
        self.note_live(sys::now_ms());
        let page: *mut Page = &mut s.pages[first];
        // SAFETY: page is the span head in live metadata.
        unsafe { (*page).flags = IN_USE };
        self.publish();
        Some(Span {
            page,
            zeroed: clean == units,
            fresh: clean > 0,
        })
    }

    /// Returns a span; its units stay reserved (dirty) until purged.
    ///
    /// # Safety
    /// `page` is a span head handed out by `alloc_span` and no longer used.
    pub unsafe fn free_span(&mut self, page: *mut Page) {
        // SAFETY: span heads point into their segment's metadata; see segment_of.
        let seg = unsafe { segment_of(page) };
        // SAFETY: as above; the lock is held.
        let s = unsafe { &mut *seg };
        // SAFETY: page is a live span head.
        let (first, units) = unsafe { (s.unit_of((*page).start as usize), (*page).units as usize) };
        s.give_back(first, units);
        self.dirty += units * UNIT_SIZE;
        // A segment's dirty units are purged one delay after the first free since its last
        // purge: later frees do not push the deadline back. (They did, so that memory freed
        // a moment ago stayed for the next allocation. But a segment that kept getting frees
        // was never purged then, and under churn the dirty units stayed resident up to the
        // dirty cap: benches/c/churn.c peaked at 135 MB, against 99 MB now and mimalloc's
        // 106, for 2,400 madvise calls instead of 60; BENCHMARKS.md.) A free after the
        // first deadline, while partly used huge pages wait (`split_due`), starts over.
        let now = sys::now_ms();
        if s.purge_at == 0 || s.split_due {
            s.purge_at = now + self.purge_delay_ms;
        }
        s.split_due = false;
        self.next_purge = self.next_purge.min(s.purge_at);
        if self.dirty > self.dirty_cap(now) {
            self.trim();
        }
        self.maybe_purge(now, false);
        self.publish();
    }

    /// Grows a large span in place to `units`, if the following units are free.
    ///
    /// # Safety
    /// `page` is a live large span head.
    pub unsafe fn try_extend(&mut self, page: *mut Page, units: usize) -> bool {
        // SAFETY: forwarded.
        let s = unsafe { &mut *segment_of(page) };
        // SAFETY: page is live.
        let (first, old) = unsafe { (s.unit_of((*page).start as usize), (*page).units as usize) };
        if units <= old || !s.run_is_free(first + old, units - old) {
            return units <= old;
        }
        if !s.link_span(first, units) {
            return false;
        }
        let clean = s.take(first + old, units - old);
        self.dirty -= (units - old - clean) * UNIT_SIZE;
        self.reserved += clean * UNIT_SIZE;
        self.grew();
        self.note_live(sys::now_ms());
        self.publish();
        true
    }

    fn new_segment(&mut self, sparse: bool) -> Option<*mut Segment> {
        // Aligned to its size, so its 2 MiB chunks can each be one huge page.
        let base = os::OS.reserve(SEGMENT_SIZE, SEGMENT_SIZE)?;
        if !sparse && (!self.thp.deferred || self.thp_given) {
            // SAFETY: the reservation was just made by the OS source.
            unsafe { os::advise_huge(base.as_ptr(), SEGMENT_SIZE, self.thp.advice) };
        }
        let meta = match os::map(core::mem::size_of::<Segment>()) {
            Some(m) => m.as_ptr() as *mut Segment,
            None => {
                // SAFETY: the reservation was just made and is unused.
                unsafe { os::OS.release(base, SEGMENT_SIZE) };
                return None;
            }
        };
        // SAFETY: meta is fresh zeroed memory sized for a Segment; all-zero is valid.
        let s = unsafe { &mut *meta };
        s.init(base.as_ptr() as usize, sparse);
        s.next = self.segments;
        if !self.segments.is_null() {
            // SAFETY: the list head is live metadata.
            unsafe { (*self.segments).prev = meta };
        }
        self.segments = meta;
        self.segment_count += 1;
        self.mapped += SEGMENT_SIZE;
        Some(meta)
    }

    /// After `reserved` grew: the peak, and a deferred huge-page advice once it is due.
    fn grew(&mut self) {
        self.peak_reserved = self.peak_reserved.max(self.reserved);
        if self.thp.deferred && !self.thp_given && self.reserved > THP_AFTER {
            self.thp_given = true;
            self.advise_existing();
        }
    }

    /// Gives the huge-page advice to every dense segment, once (a pool that shrinks back keeps
    /// it: the advice is not worth flapping).
    fn advise_existing(&mut self) {
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: seg is live segment metadata in the list, under the arena lock; its
            // base is its own reservation, and the advice never changes contents.
            unsafe {
                if !(*seg).sparse {
                    os::advise_huge((*seg).base as *mut u8, SEGMENT_SIZE, self.thp.advice);
                }
                seg = (*seg).next;
            }
        }
    }

    fn release_segment(&mut self, seg: *mut Segment) {
        // SAFETY: seg is a live segment in the list with no span in use.
        let s = unsafe { &mut *seg };
        if s.prev.is_null() {
            self.segments = s.next;
        } else {
            // SAFETY: list neighbours are live.
            unsafe { (*s.prev).next = s.next };
        }
        if !s.next.is_null() {
            // SAFETY: as above.
            unsafe { (*s.next).prev = s.prev };
        }
        self.segment_count -= 1;
        self.mapped -= SEGMENT_SIZE;
        // SAFETY: nothing references the segment or its metadata any more (all units free,
        // so none is in the pagemap). A racing free of a stale pointer is a double free.
        unsafe {
            os::OS.release(NonNull::new_unchecked(s.base as *mut u8), SEGMENT_SIZE);
            os::unmap(seg as *mut u8, core::mem::size_of::<Segment>());
        }
    }

    /// Purges segments whose deadline passed (all of them when `force`), expires cached
    /// huge mappings, and releases segments left entirely free (keeping one for reuse).
    pub fn maybe_purge(&mut self, now: u64, force: bool) {
        if !force && now < self.next_purge {
            return;
        }
        let mut next = u64::MAX;
        let mut empty_kept = false;
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: live segment under the lock.
            let s = unsafe { &mut *seg };
            let following = s.next;
            if force || (s.purge_at != 0 && s.purge_at <= now) {
                // The first deadline returns whole free huge pages; the free units of
                // partly used ones wait for a second, longer one (split_due), unless a
                // free into the segment starts over, the dirty cap needs them first, or a
                // collect forces them out.
                let whole = self.thp.whole_chunks && !s.sparse && !force && !s.split_due;
                // SAFETY: dirty units are free: no live data.
                let bytes = s.purge_dirty(whole, |a, l| unsafe { os::purge(a as *mut u8, l) });
                self.dirty -= bytes;
                self.reserved -= bytes;
                self.purged += bytes;
                if s.has_dirty() {
                    s.split_due = true;
                    s.purge_at = now + self.purge_delay_ms.max(SPLIT_DELAY_MS);
                    next = next.min(s.purge_at);
                } else {
                    s.split_due = false;
                    s.purge_at = 0;
                }
            } else if s.purge_at != 0 {
                next = next.min(s.purge_at);
            }
            if s.is_empty_and_clean() {
                if empty_kept || force {
                    self.release_segment(seg);
                } else {
                    empty_kept = true;
                }
            }
            seg = following;
        }
        // (The huge-block paths expire the cache themselves, unmapping after the lock.)
        let expired = self
            .huge
            .expire(now, self.purge_delay_ms, force)
            .unmap_now();
        self.huge_cached -= expired;
        self.reserved -= expired;
        self.mapped -= expired;
        self.purged += expired;
        if let Some(t) = self.huge.next_expiry(self.purge_delay_ms) {
            next = next.min(t);
        }
        self.next_purge = next;
        self.publish();
    }

    /// Bytes in use: reserved, less dirty units and cached huge mappings.
    fn live(&self) -> usize {
        self.reserved
            .saturating_sub(self.dirty)
            .saturating_sub(self.huge_cached)
    }

    /// Records the live bytes in the peak windows, starting a new window when the current
    /// one is over (the older one is forgotten; after a long quiet spell both are).
    fn note_live(&mut self, now: u64) {
        if now >= self.window_end {
            let quiet = now >= self.window_end + PEAK_WINDOW_MS;
            self.live_peak = [0, if quiet { 0 } else { self.live_peak[0] }];
            self.window_end = now + PEAK_WINDOW_MS;
        }
        self.live_peak[0] = self.live_peak[0].max(self.live());
    }

    /// Dirty bytes allowed to wait for their purge delay: the recent peak of live bytes
    /// (at least [`DIRTY_MIN`]). A program that frees its data and builds it again (rounds
    /// of a batch job, requests) finds it still faulted in; reserved memory stays within
    /// twice the recent live peak, and the purge delay returns the rest. (A cap following
    /// the live bytes themselves fell to its floor as soon as the data was freed, and the
    /// trim then purged what the next round faulted back in.)
    fn dirty_cap(&mut self, now: u64) -> usize {
        self.note_live(now);
        DIRTY_MIN.max(self.live_peak[0].max(self.live_peak[1]))
    }

    /// Purges the segments that have been quiet longest (earliest deadline first) until
    /// the dirty bytes are down to three quarters of the cap. Purging everything at once would also
    /// drop what was freed a moment ago and is about to be reused: under churn that meant
    /// a page fault for most new spans and a TLB shootdown per purge.
    fn trim(&mut self) {
        let target = self.dirty_cap(sys::now_ms()) * 3 / 4;
        while self.dirty > target {
            let mut oldest: *mut Segment = ptr::null_mut();
            let mut at = u64::MAX;
            let mut seg = self.segments;
            while !seg.is_null() {
                // SAFETY: live segment under the lock.
                let s = unsafe { &*seg };
                // Units kept for their huge page (no deadline) have waited longest.
                if s.has_dirty() && (oldest.is_null() || s.purge_at < at) {
                    (oldest, at) = (seg, s.purge_at);
                }
                seg = s.next;
            }
            if oldest.is_null() {
                return;
            }
            // SAFETY: as above.
            let s = unsafe { &mut *oldest };
            // SAFETY: dirty units are free: no live data.
            let bytes = s.purge_dirty(false, |a, l| unsafe { os::purge(a as *mut u8, l) });
            self.dirty -= bytes;
            self.reserved -= bytes;
            self.purged += bytes;
            s.purge_at = 0;
            s.split_due = false;
        }
    }

    /// Notes a new earliest deadline (huge cache insertions).
    pub fn schedule(&mut self, at: u64) {
        self.next_purge = self.next_purge.min(at);
    }

    /// Bytes the pool could return to the OS now: dirty (free, unpurged) units and
    /// cached huge mappings.
    pub fn cached(&self) -> usize {
        self.dirty + self.huge_cached
    }

    /// Writes the arena's gauges into the shared stats section.
    pub fn publish(&self) {
        stats::publish_arena(self);
    }
}

/// The segment whose metadata holds `page`.
///
/// # Safety
/// `page` is a live span head.
pub unsafe fn segment_of(page: *mut Page) -> *mut Segment {
    // SAFETY: link_span recorded the segment in the head.
    unsafe { (*page).seg }
}
