//! The arena: the process-wide set of segments, handing out spans to thread heaps and
//! large blocks, and purging what has been free for longer than the purge delay.
//!
//! One lock guards it. It is taken only on slow paths: when a heap's span cache
//! (`heap::spans`) has no span of the size a refill needs (taking a few more along) or
//! holds more than its bound (giving back half), per large block, and per huge block.
//! Lock order: arena, then the stats lock, never the reverse.

use super::huge::HugeCache;
use super::page::{Page, IN_USE};
use super::segment::{Cutoff, Segment, Thp, SPARSE_UNITS};
use super::{stats, SEGMENT_SIZE, UNITS, UNIT_SIZE};
use crate::source::{os, MemorySource};
use crate::sys::{self, SpinLock};
use core::ptr::{self, NonNull};

/// Everything the arena lock guards.
pub struct Arena {
    /// All segments, most recently created first.
    segments: *mut Segment,
    /// Purge delay in coarse milliseconds, as configured: the shortest the delay gets.
    purge_delay_ms: u64,
    /// The delay in force: `purge_delay_ms`, lengthened while purged memory is soon taken
    /// back ([`Arena::refaulted`]), up to [`ADAPT_MAX_MS`].
    delay_ms: u64,
    /// When `delay_ms` last rose or was halved (coarse ms).
    delay_since: u64,
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

/// How long a free unit of a partly used huge page waits, at least, before it is purged
/// (the purge delay returns whole free huge pages sooner): splitting a huge page for it
/// pays only once it has been free this long.
const SPLIT_DELAY_MS: u64 = 1000;

/// Bytes of spans and large blocks in use beyond which a deferred huge-page advice
/// ([`Thp::deferred`]) is given: a program that never holds more stays in 4 KiB pages.
/// Measured under the preload (BENCHMARKS.md): at 4 MiB, CPython's test suite still had
/// 63 MiB of RSS against 53 without huge pages and mimalloc's 52, at 64 MiB 53. (A Rust
/// program's global allocator does not wait: see `segment::thp_policy`.)
const THP_AFTER: usize = 64 << 20;

/// The longest the purge delay grows to when purged memory is taken back soon after
/// ([`Arena::refaulted`]). A program working in rounds that each free and rebuild their
/// data (a batch job, an interpreter's passes over a dataset) then keeps it faulted in
/// from round to round. CPython's json round trip of the preload suite with every object
/// in malloc (`PYTHONMALLOC=malloc`) purged 546 MiB in 425 madvise calls at 10 ms, and
/// took 79,000 page faults for 150 MB of peak RSS.
const ADAPT_MAX_MS: u64 = 1000;

/// How long a lengthened delay holds without a refault before it halves.
const DECAY_MS: u64 = 1000;

/// Length of a window of the live peak the dirty cap follows: a drop of live data is
/// remembered for one to two windows.
const PEAK_WINDOW_MS: u64 = 1000;

/// The process's arena.
pub static ARENA: SpinLock<Arena> = SpinLock::new(Arena::EMPTY);

/// The searches of [`Arena::alloc_span`], in order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// A run starting on a dirty unit, in a segment of the span's kind (dense or sparse).
    Dirty,
    /// A run of dirty units only, in a segment of the other kind: resident already, so a
    /// huge page there costs a sparse span nothing more, and leaving it idle while fresh
    /// memory is faulted in for the other kind grows RSS by what it holds.
    OtherDirty,
    /// Any free run in a segment of the span's kind.
    Free,
}

/// A span handed out by the arena.
pub struct Span {
    pub page: *mut Page,
    /// Every unit was clean: the memory reads as zero.
    pub zeroed: bool,
    /// Some unit was clean: this request needed fresh pages (a miss).
    pub fresh: bool,
}

impl Arena {
    /// No segments, the default purge delay, no huge-page advice (until init).
    const EMPTY: Arena = Arena {
        segments: ptr::null_mut(),
        purge_delay_ms: 10,
        delay_ms: 10,
        delay_since: 0,
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
    };

    /// Sets the configured purge delay (the delay in force starts there).
    pub fn set_purge_delay(&mut self, ms: u64) {
        self.purge_delay_ms = ms;
        self.delay_ms = ms;
    }

    /// The purge delay in force at `now`: a lengthened delay halves for each [`DECAY_MS`]
    /// without a refault, down to the configured one.
    pub fn delay(&mut self, now: u64) -> u64 {
        if self.delay_ms > self.purge_delay_ms && now >= self.delay_since + DECAY_MS {
            let halvings = (now - self.delay_since) / DECAY_MS;
            self.delay_ms = (self.delay_ms >> halvings.min(63)).max(self.purge_delay_ms);
            self.delay_since = now;
        }
        self.delay_ms
    }

    /// A span took back units that a timed purge returned, of memory freed at
    /// `idle_since`: it sat free for `now - idle_since` and was wanted again. When that is
    /// within [`ADAPT_MAX_MS`], the delay grows to twice that time, so that the next round
    /// finds its memory still faulted in. A configured delay of 0 (purge at once) or of
    /// more than the cap is kept as it is.
    fn refaulted(&mut self, now: u64, idle_since: u64) {
        let idle = now.saturating_sub(idle_since);
        if self.purge_delay_ms == 0 || idle > ADAPT_MAX_MS {
            return;
        }
        let want = (2 * idle).min(ADAPT_MAX_MS);
        if want > self.delay(now) {
            self.delay_ms = want;
        }
        self.delay_since = now;
    }

    /// Takes `units` contiguous units, creating a segment if needed.
    pub fn alloc_span(&mut self, units: usize) -> Option<Span> {
        debug_assert!((1..=UNITS).contains(&units));
        self.maybe_purge(sys::now_ms(), false);
        let sparse = self.thp.split_sparse && units >= SPARSE_UNITS;
        // Recently freed (dirty) memory first, then dirty memory in the other kind of
        // segment, then any free run.
        let mut found = None;
        for pass in [Pass::Dirty, Pass::OtherDirty, Pass::Free] {
            if pass != Pass::Free && self.dirty == 0 {
                continue;
            }
            let mut seg = self.segments;
            while !seg.is_null() && found.is_none() {
                // SAFETY: segments in the list are live metadata, guarded by the arena lock.
                let s = unsafe { &mut *seg };
                let run = match (pass, s.sparse == sparse) {
                    (Pass::Dirty, true) => s.find_dirty_run(units),
                    (Pass::OtherDirty, false) => s.find_all_dirty_run(units),
                    (Pass::Free, true) => s.find_run(units),
                    _ => None,
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
        let taken = s.take(first, units);
        let clean = taken.clean;
        self.dirty -= (units - clean) * UNIT_SIZE;
        self.reserved += clean * UNIT_SIZE;
        self.grew();
        let now = sys::now_ms();
        // Only a dense span counts: its blocks are handed out in order and fault in every
        // page of it, while a sparse one may be touched at its start only (see
        // SPARSE_UNITS: under benches/c/churn.c, counting those kept 40 MB more resident
        // and saved 6% of the faults).
        if taken.refaulted > 0 && units < SPARSE_UNITS {
            self.refaulted(now, taken.freed_at);
        }
        self.note_live(now);
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
        let now = sys::now_ms();
        s.give_back(first, units, now);
        self.dirty += units * UNIT_SIZE;
        // Each unit waits one delay from its own free: the segment's deadline is the
        // earliest of its units', and later frees neither push it back nor go with it.
        // (Pushing it back, as once, kept a segment that kept getting frees from ever being
        // purged: benches/c/churn.c peaked at 135 MB. One deadline for the whole segment,
        // as later, purged units freed a moment before it, which the program was about to
        // take again: benches/c/large_threads.c took 250,000-330,000 faults.)
        let at = now + self.delay(now);
        if s.purge_at == 0 || at < s.purge_at {
            s.purge_at = at;
        }
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
        // (A large span, sparse: its refaults do not lengthen the delay.)
        let taken = s.take(first + old, units - old);
        self.dirty -= (units - old - taken.clean) * UNIT_SIZE;
        self.reserved += taken.clean * UNIT_SIZE;
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
        let meta = match super::meta::alloc(core::mem::size_of::<Segment>()) {
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

    /// Whether huge pages may back `s`, so that its purges keep whole chunks: a dense
    /// segment once the advice is given (or where the kernel needs none). Before a
    /// deferred advice, nothing is split by purging a unit: holding a partly used chunk's
    /// free units for [`SPLIT_DELAY_MS`] instead of the purge delay only filled the dirty
    /// cap (`benches/c/mstress.c`: 32 MiB dirty for 2 MiB live, then `trim` purged it all
    /// at once).
    fn huge_backed(&self, s: &Segment) -> bool {
        self.thp.whole_chunks && !s.sparse && (!self.thp.deferred || self.thp_given)
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
            super::meta::free(seg as *mut u8, core::mem::size_of::<Segment>());
        }
    }

    /// Purges segments whose deadline passed (all of them when `force`), expires cached
    /// huge mappings, and releases segments left entirely free (keeping one for reuse). A
    /// forced purge (a collect asked for everything back, or an allocation failed) also
    /// sets the delay back to the configured one.
    pub fn maybe_purge(&mut self, now: u64, force: bool) {
        if !force && now < self.next_purge {
            return;
        }
        if force {
            self.delay_ms = self.purge_delay_ms;
        }
        let delay = self.delay(now);
        let mut next = u64::MAX;
        let mut empty_kept = false;
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: live segment under the lock.
            let s = unsafe { &mut *seg };
            let following = s.next;
            if force || (s.purge_at != 0 && s.purge_at <= now) {
                // Units that have waited the delay go; where huge pages may back the
                // segment, those of partly used huge pages wait longer (SPLIT_DELAY_MS),
                // unless the dirty cap needs them first or a collect forces them out.
                let whole = self.huge_backed(s);
                let wait = Cutoff {
                    free_chunk: delay,
                    used_chunk: delay.max(SPLIT_DELAY_MS),
                };
                let cut = if force {
                    Cutoff::ALL
                } else {
                    Cutoff {
                        free_chunk: now.saturating_sub(wait.free_chunk),
                        used_chunk: now.saturating_sub(wait.used_chunk),
                    }
                };
                // SAFETY: dirty units are free: no live data.
                let bytes = s.purge_dirty(whole, cut, !force, |a, l| unsafe {
                    os::purge(a as *mut u8, l)
                });
                self.dirty -= bytes;
                self.reserved -= bytes;
                self.purged += bytes;
                s.purge_at = s.next_due(whole, wait);
                if s.purge_at != 0 {
                    next = next.min(s.purge_at);
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
        let expired = self.huge.expire(now, delay, force).unmap_now();
        self.huge_cached -= expired;
        self.reserved -= expired;
        self.mapped -= expired;
        self.purged += expired;
        if let Some(t) = self.huge.next_expiry(delay) {
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
                // The earliest deadline first: its units have waited longest, or nearly.
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
            let bytes = s.purge_dirty(false, Cutoff::ALL, false, |a, l| unsafe {
                os::purge(a as *mut u8, l)
            });
            self.dirty -= bytes;
            self.reserved -= bytes;
            self.purged += bytes;
            s.purge_at = 0;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HugePages;
    use crate::host::segment::thp_policy;
    use crate::source::os::ThpMode;

    #[test]
    fn a_partly_used_chunk_waits_longer_only_once_huge_pages_may_back_it() {
        // The preload's `auto` in the kernel's `madvise` mode: advice deferred to 64 MiB.
        let mut a = Arena::EMPTY;
        a.thp = thp_policy(HugePages::Auto, Some(ThpMode::Madvise), true);
        a.set_purge_delay(10);
        let spans = [1, 1, 1].map(|_| a.alloc_span(1).unwrap().page);
        // SAFETY: spans[0] is a span head from alloc_span, unused; spans[1] stays live,
        // so the chunk the three share is partly used.
        unsafe { a.free_span(spans[0]) };
        let later = sys::now_ms() + 50;
        a.maybe_purge(later, false);
        assert_eq!(a.purged, UNIT_SIZE, "no advice yet: the plain delay");

        a.thp_given = true;
        // SAFETY: as above, for spans[2].
        unsafe { a.free_span(spans[2]) };
        let later = sys::now_ms() + 50;
        a.maybe_purge(later, false);
        assert_eq!(
            a.purged, UNIT_SIZE,
            "advised: a partly used chunk stays whole"
        );
        a.maybe_purge(later + SPLIT_DELAY_MS, false);
        assert_eq!(a.purged, 2 * UNIT_SIZE, "until the split delay is over");
    }

    #[test]
    fn the_delay_follows_refaults_and_halves_when_quiet() {
        let mut a = Arena::EMPTY;
        a.set_purge_delay(10);
        // Freed at 1000, purged, taken back at 1100.
        a.refaulted(1100, 1000);
        assert_eq!(a.delay(1100), 200);
        // Memory that sat free for less is no reason to shorten it.
        a.refaulted(1150, 1120);
        assert_eq!(a.delay(1150), 200);
        // A later refault of memory that sat free longer lengthens it again, up to the cap.
        a.refaulted(1500, 1100);
        assert_eq!(a.delay(1500), 800);
        a.refaulted(1500, 900);
        assert_eq!(a.delay(1500), 1000);
        // Memory purged more than the cap ago was not the delay's to keep.
        a.refaulted(5000, 1500);
        assert_eq!(a.delay(2499), 1000);
        assert_eq!(a.delay(2500), 500, "halved after a quiet second");
        assert_eq!(a.delay(4500), 125, "and for each one after");
        assert_eq!(a.delay(60_000), 10, "never below the configured delay");
        // A configured 0 means purge at once, refaults or not.
        a.set_purge_delay(0);
        a.refaulted(61_000, 60_990);
        assert_eq!(a.delay(61_000), 0);
    }
}
