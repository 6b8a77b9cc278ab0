//! Segments: 32 MiB reservations, aligned to their size, split into 512 units of 64 KiB.
//!
//! Segment metadata lives outside the segment (mapped separately), so the engine writes
//! nothing into memory it manages except blocks' own free-list links. Two bitmaps track
//! units: `free` (not part of any span) and `dirty` (free, and possibly touched since it
//! was last purged: still counted as reserved). A unit that is free and not dirty reads as
//! zero and costs no RSS.
//!
//! Huge pages: a segment is aligned to its 32 MiB, so each of its 16 chunks of 2 MiB can be
//! one transparent huge page. Where the kernel gives them (see [`thp_policy`]), the delayed
//! purge works in whole chunks: a chunk is purged once all of it is free and its latest
//! free has waited the delay, in one call over the whole chunk (purged in parts as its
//! units came due, a huge page was split by the first part, and the Rust workload took
//! 260-920 minor faults instead of 240-260, as its rounds faulted it back). A partly used
//! chunk keeps its dirty units (purging them would split its huge page, and the next
//! round of the program would fault them back 4 KiB at a time) until the rest of it is
//! freed, they have been free for a longer wait (the arena's `SPLIT_DELAY_MS`), the
//! arena's dirty cap needs the room, or a forced collect. That is the hysteresis: the
//! purge delay returns whole huge pages; only a long quiet spell or memory pressure
//! splits one (TCMalloc's hugepage-aware allocator, likewise, subreleases
//! parts of huge pages only to meet its release goals).

use super::page::Page;
use super::{pagemap, SEGMENT_SIZE, UNITS, UNIT_SHIFT, UNIT_SIZE};
use crate::config::HugePages;
use crate::source::os::{HugeAdvice, ThpMode};
use core::ptr;

const WORDS: usize = UNITS / 64;

/// Bytes of a huge page (x86-64 and arm64 with 4 KiB pages).
pub const HUGE_PAGE: usize = 2 << 20;
/// Units in a huge page; chunk `c` is bits `(c % 2) * 32..` of word `c / 2`.
const CHUNK_UNITS: usize = HUGE_PAGE / UNIT_SIZE;
const _: () = assert!(CHUNK_UNITS == 32 && SEGMENT_SIZE.is_multiple_of(HUGE_PAGE));

/// How the host pool's segments use transparent huge pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thp {
    /// Advice given to each new segment.
    pub advice: HugeAdvice,
    /// Segments may be backed by huge pages: purge in whole chunks (see the module docs).
    pub whole_chunks: bool,
    /// The advice waits until the pool holds 64 MiB (`arena::THP_AFTER`), and then goes
    /// to every segment (`auto` in mode `madvise`, where the pool is the process's malloc:
    /// `thp_policy`): a huge page is resident whole, so a program that holds less (most
    /// of what a preload reaches: shells, tools, scripts, interpreters) keeps its
    /// footprint in 4 KiB pages, 2 to 10 MiB less than with huge pages (`perl -e 1`, a
    /// small C program, CPython's test suite), and a larger one gets them.
    pub deferred: bool,
    /// Spans of [`SPARSE_UNITS`] or more live in segments of their own that get no advice
    /// (with [`Thp::deferred`]): see [`SPARSE_UNITS`].
    pub split_sparse: bool,
}

impl Thp {
    /// Before the configuration is read: no advice, purges of any size.
    pub const OFF: Thp = Thp {
        advice: HugeAdvice::None,
        whole_chunks: false,
        deferred: false,
        split_sparse: false,
    };

    /// Every segment is advised huge pages from the start: the pool's own metadata is
    /// then carved from huge pages too (`host::meta`).
    pub fn eager(&self) -> bool {
        self.advice == HugeAdvice::Huge && !self.deferred
    }
}

/// Spans of this many units (128 KiB) or more are *sparse*: pages of blocks above 8 KiB
/// (see `heap::span_units`), and large blocks. Programs often touch only the start of
/// such a block (a buffer sized for the worst case, a vector's spare capacity), and a huge
/// page is resident whole: one touched byte in a 2 MiB chunk costs 2 MiB. Under `auto`,
/// sparse spans therefore take segments that get no huge-page advice, and only the dense
/// spans of smaller blocks, whose 4 KiB pages fill as their blocks are handed out, get huge
/// pages (where the pool is the process's malloc: `thp_policy`). On `benches/c/churn.c`
/// (20,000 live blocks up to 1 MiB, 64 bytes of each touched), under the preload: RSS
/// 244-264 MB with every segment advised, 143 MB with blocks above 24 KiB unadvised (4
/// units), 91-94 MB with this split, as without any advice. A Rust global allocator does
/// not split: on the Rust workload, whose big hash tables and vectors are touched whole,
/// the split cost ~16,000 minor faults (BENCHMARKS.md).
pub const SPARSE_UNITS: usize = 2;

/// The policy for `huge_pages` (configuration) under the kernel's THP mode (`None` when
/// /sys does not say). `auto` advises huge pages only in mode `madvise` (in `always` the
/// kernel uses them anyway, in `never` it refuses); `never` advises against them when the
/// mode is `always`; `always` advises them unless the mode is `never`.
///
/// `auto`'s advice waits for the pool to grow ([`Thp::deferred`]) and spares sparse spans
/// ([`Thp::split_sparse`]) only where the pool is the process's malloc (`malloc_front`,
/// see `front_end`): a preload reaches small programs, whose RSS those rules keep lean. A
/// Rust program's `#[global_allocator]` gets the advice for every segment from the start,
/// as the `mimalloc` crate gives it to all its memory: the Rust workload
/// (`benches/rust_workload.sh`) takes ~28,000 minor faults with the preload's rules and
/// ~1,600 without, at RSS still below the crate's. `always` is an explicit request for
/// every segment.
pub fn thp_policy(cfg: HugePages, mode: Option<ThpMode>, malloc_front: bool) -> Thp {
    let (advice, whole_chunks) = match (cfg, mode) {
        (_, Some(ThpMode::Never)) => (HugeAdvice::None, false),
        (HugePages::Auto, Some(ThpMode::Madvise)) => (HugeAdvice::Huge, true),
        (HugePages::Auto, Some(ThpMode::Always)) => (HugeAdvice::None, true),
        (HugePages::Auto, None) => (HugeAdvice::None, false),
        (HugePages::Never, Some(ThpMode::Always)) => (HugeAdvice::NoHuge, false),
        (HugePages::Never, _) => (HugeAdvice::None, false),
        (HugePages::Always, _) => (HugeAdvice::Huge, true),
    };
    let deferred = cfg == HugePages::Auto && advice == HugeAdvice::Huge && malloc_front;
    Thp {
        advice,
        whole_chunks,
        deferred,
        split_sparse: deferred,
    }
}

/// The 32 bits of chunk `c` in `bits`.
fn chunk(bits: &[u64; WORDS], c: usize) -> u64 {
    bits[c / 2] >> (c % 2 * 32) & 0xffff_ffff
}

/// Chunks in a segment.
const CHUNKS: usize = UNITS / CHUNK_UNITS;

/// The units of chunk `c`.
fn units_of(c: usize) -> core::ops::Range<usize> {
    c * CHUNK_UNITS..(c + 1) * CHUNK_UNITS
}

/// Metadata of one segment.
#[repr(C)]
pub struct Segment {
    /// First byte of the segment.
    pub base: usize,
    /// Units not part of any span.
    pub free: [u64; WORDS],
    /// Free units touched since their last purge.
    pub dirty: [u64; WORDS],
    /// Units a timed purge returned (see [`Segment::purge_dirty`]) and not taken since:
    /// taking one back soon after is a refault the purge delay could have saved.
    pub purged: [u64; WORDS],
    /// When each unit was last freed (coarse ms): how long a dirty unit has waited, and
    /// for a `purged` one, since when its memory was idle.
    pub freed_at: [u64; UNITS],
    pub free_units: u32,
    /// When the next dirty unit is due for its purge (coarse ms); 0 = nothing pending.
    pub purge_at: u64,
    /// The segment holds sparse spans only ([`SPARSE_UNITS`]), and no huge-page advice.
    pub sparse: bool,
    /// Links in the arena's segment list.
    pub next: *mut Segment,
    pub prev: *mut Segment,
    /// Per-unit page metadata; a span's metadata is at its first unit.
    pub pages: [Page; UNITS],
}

/// What [`Segment::take`] took: units in all `n`, of which `clean` read as zero, and of
/// those `refaulted` had been returned by a timed purge, the latest of them freed at
/// `freed_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    pub clean: usize,
    pub refaulted: usize,
    pub freed_at: u64,
}

/// Which dirty units a purge takes: those freed at or before `free_chunk`, or, for units
/// of partly used chunks when huge pages may back the segment, at or before `used_chunk`
/// (the hysteresis of the module docs). [`Segment::next_due`] reads the same pair as
/// waiting times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cutoff {
    pub free_chunk: u64,
    pub used_chunk: u64,
}

impl Cutoff {
    /// The bound for a dirty unit that is purged on its own: one of a partly used chunk
    /// with `whole_chunks`, any unit without (see [`Segment::purge_dirty`]).
    fn in_use(&self, whole_chunks: bool) -> u64 {
        if whole_chunks {
            self.used_chunk
        } else {
            self.free_chunk
        }
    }

    /// Every dirty unit (memory pressure, a forced collect).
    pub const ALL: Cutoff = Cutoff {
        free_chunk: u64::MAX,
        used_chunk: u64::MAX,
    };
}

fn get(bits: &[u64; WORDS], i: usize) -> bool {
    bits[i / 64] >> (i % 64) & 1 == 1
}

fn put(bits: &mut [u64; WORDS], i: usize, v: bool) {
    if v {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

impl Segment {
    /// Initialises metadata (in zeroed memory) for a fresh segment at `base`.
    pub fn init(&mut self, base: usize, sparse: bool) {
        self.base = base;
        self.sparse = sparse;
        self.free = [u64::MAX; WORDS];
        self.dirty = [0; WORDS];
        self.purged = [0; WORDS];
        self.free_units = UNITS as u32;
        self.freed_at = [0; UNITS];
        self.purge_at = 0;
        self.next = ptr::null_mut();
        self.prev = ptr::null_mut();
    }

    /// Index of the unit holding `addr`.
    #[inline(always)]
    pub fn unit_of(&self, addr: usize) -> usize {
        (addr - self.base) >> UNIT_SHIFT
    }

    /// First unit of a run of `n` free units, or `None`.
    pub fn find_run(&self, n: usize) -> Option<usize> {
        self.find_run_from(n, &self.free, &self.free)
    }

    /// First unit of a run of `n` free units that starts on a dirty unit (memory freed
    /// recently and still faulted in), or `None`. Reusing those first saves page faults
    /// and keeps RSS from growing while clean units sit idle.
    pub fn find_dirty_run(&self, n: usize) -> Option<usize> {
        self.find_run_from(n, &self.dirty, &self.free)
    }

    /// First run of `n` units all dirty (all faulted in already, so a span of the other
    /// kind, dense or sparse, costs no more memory there than in a segment of its own).
    pub fn find_all_dirty_run(&self, n: usize) -> Option<usize> {
        self.find_run_from(n, &self.dirty, &self.dirty)
    }

    /// First run of `n` units set in `cont` (a subset of `free`) whose first unit is set
    /// in `starts` (a subset of `cont`).
    fn find_run_from(&self, n: usize, starts: &[u64; WORDS], cont: &[u64; WORDS]) -> Option<usize> {
        if n > self.free_units as usize {
            return None;
        }
        let mut i = 0;
        while i + n <= UNITS {
            let w = starts[i / 64] >> (i % 64);
            if w == 0 {
                i = (i / 64 + 1) * 64; // nothing free in the rest of this word
                continue;
            }
            let skip = w.trailing_zeros() as usize;
            if skip > 0 {
                i += skip;
                continue;
            }
            let mut len = 0;
            while len < n && i + len < UNITS && get(cont, i + len) {
                len += 1;
            }
            if len == n {
                return Some(i);
            }
            i += len + 1;
        }
        None
    }

    /// Whether units `first..first+n` are all free.
    pub fn run_is_free(&self, first: usize, n: usize) -> bool {
        first + n <= UNITS && (first..first + n).all(|u| get(&self.free, u))
    }

    /// Takes units `first..first+n` out of the free set. The clean ones (not dirty) become
    /// newly reserved memory that reads as zero; the others stop being dirty.
    pub fn take(&mut self, first: usize, n: usize) -> Taken {
        let mut t = Taken {
            clean: 0,
            refaulted: 0,
            freed_at: 0,
        };
        for u in first..first + n {
            debug_assert!(get(&self.free, u));
            if !get(&self.dirty, u) {
                t.clean += 1;
                if get(&self.purged, u) {
                    t.refaulted += 1;
                    t.freed_at = t.freed_at.max(self.freed_at[u]);
                }
            }
            put(&mut self.free, u, false);
            put(&mut self.dirty, u, false);
            put(&mut self.purged, u, false);
        }
        self.free_units -= n as u32;
        t
    }

    /// Returns units `first..first+n` to the free set, dirty since `now`, and unmaps them
    /// from the pagemap (a stale pointer into them is then foreign).
    pub fn give_back(&mut self, first: usize, n: usize, now: u64) {
        pagemap::set(self.base + (first << UNIT_SHIFT), n << UNIT_SHIFT, 0);
        for u in first..first + n {
            put(&mut self.free, u, true);
            put(&mut self.dirty, u, true);
            self.freed_at[u] = now;
        }
        self.pages[first] = Page::EMPTY;
        self.free_units += n as u32;
    }

    /// Makes units `first..first+n` one span headed by `pages[first]`, and maps them to it
    /// in the pagemap. False (nothing changed) when the pagemap cannot grow.
    pub fn link_span(&mut self, first: usize, n: usize) -> bool {
        let start = self.base + (first << UNIT_SHIFT);
        let head: *mut Page = &mut self.pages[first];
        if !pagemap::set(start, n << UNIT_SHIFT, head as usize) {
            return false;
        }
        let seg: *mut Segment = self;
        let h = &mut self.pages[first];
        h.units = n as u32;
        h.start = start as *mut u8;
        h.seg = seg;
        true
    }

    /// Calls `purge(addr, len)` for every run of the dirty units `cut` takes (see
    /// [`Cutoff`]) and marks them clean; with `whole_chunks`, a unit in a partly used chunk
    /// goes by `cut.used_chunk`, and an entirely free chunk goes whole, clean units
    /// included, once its last freed dirty unit is due by `cut.free_chunk` (see the module
    /// docs); without, every unit by `cut.free_chunk`. A purge the delay timed (`timed`;
    /// not one that memory pressure or a forced collect made) marks the dirty units
    /// `purged`, so that [`Segment::take`] can tell a refault from growth. Returns the
    /// bytes of dirty units purged.
    pub fn purge_dirty(
        &mut self,
        whole_chunks: bool,
        cut: Cutoff,
        timed: bool,
        mut purge: impl FnMut(usize, usize),
    ) -> usize {
        let mut take = [0u64; WORDS];
        let alone = cut.in_use(whole_chunks);
        for c in 0..CHUNKS {
            if whole_chunks && self.chunk_is_free(c) {
                // Purged in parts, a huge page would be split by the first part and
                // faulted back 4 KiB at a time: the chunk waits for its latest free.
                if chunk(&self.dirty, c) != 0 && self.last_freed(c) <= cut.free_chunk {
                    units_of(c).for_each(|u| put(&mut take, u, true));
                }
                continue;
            }
            for u in units_of(c) {
                if get(&self.dirty, u) && self.freed_at[u] <= alone {
                    put(&mut take, u, true);
                }
            }
        }
        let mut total = 0;
        let mut u = 0;
        while u < UNITS {
            if !get(&take, u) {
                u += 1;
                continue;
            }
            let start = u;
            while u < UNITS && get(&take, u) {
                if get(&self.dirty, u) {
                    put(&mut self.dirty, u, false);
                    put(&mut self.purged, u, timed);
                    total += UNIT_SIZE;
                }
                u += 1;
            }
            purge(self.base + start * UNIT_SIZE, (u - start) * UNIT_SIZE);
        }
        total
    }

    /// Whether no unit of chunk `c` is part of a span.
    fn chunk_is_free(&self, c: usize) -> bool {
        chunk(&self.free, c) == 0xffff_ffff
    }

    /// When the latest of chunk `c`'s dirty units was freed (0 when none is dirty).
    fn last_freed(&self, c: usize) -> u64 {
        units_of(c)
            .filter(|&u| get(&self.dirty, u))
            .map(|u| self.freed_at[u])
            .max()
            .unwrap_or(0)
    }

    /// When the next purge is due: a dirty unit's free time plus `wait.free_chunk`, plus
    /// `wait.used_chunk` for one in a partly used chunk (with `whole_chunks`), and for an
    /// entirely free chunk (with `whole_chunks`) its latest free plus `wait.free_chunk`.
    /// 0 when no unit is dirty.
    pub fn next_due(&self, whole_chunks: bool, wait: Cutoff) -> u64 {
        let mut due = u64::MAX;
        let alone = wait.in_use(whole_chunks);
        for c in 0..CHUNKS {
            if chunk(&self.dirty, c) == 0 {
                continue;
            }
            if whole_chunks && self.chunk_is_free(c) {
                due = due.min(self.last_freed(c).saturating_add(wait.free_chunk));
                continue;
            }
            for u in units_of(c).filter(|&u| get(&self.dirty, u)) {
                due = due.min(self.freed_at[u].saturating_add(alone));
            }
        }
        if due == u64::MAX {
            0
        } else {
            due
        }
    }

    /// Whether some free unit is dirty.
    pub fn has_dirty(&self) -> bool {
        self.dirty.iter().any(|&w| w != 0)
    }

    /// Whether every unit is free and clean.
    pub fn is_empty_and_clean(&self) -> bool {
        self.free_units as usize == UNITS && self.dirty.iter().all(|&w| w == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    fn seg() -> Box<Segment> {
        // SAFETY: Segment is plain data for which all-zero bytes are valid.
        let mut s: Box<Segment> = unsafe { Box::new_zeroed().assume_init() };
        s.init(0x4000_0000, false);
        s
    }

    /// A cutoff that takes units freed at or before `t` in entirely free chunks, and
    /// none in partly used ones (the tests free units at times 1 and later).
    fn free_chunks_up_to(t: u64) -> Cutoff {
        Cutoff {
            free_chunk: t,
            used_chunk: 0,
        }
    }

    #[test]
    fn runs_are_found_and_taken() {
        let mut s = seg();
        assert_eq!(s.find_run(1), Some(0));
        assert_eq!(s.take(0, 3).clean, 3);
        assert_eq!(s.find_run(1), Some(3));
        assert_eq!(s.take(3, 61).clean, 61);
        assert_eq!(s.find_run(2), Some(64));
        s.give_back(1, 1, 1);
        assert_eq!(s.find_run(1), Some(1));
        assert_eq!(s.find_run(2), Some(64));
        assert_eq!(s.find_run(UNITS), None);
        assert_eq!(s.free_units as usize, UNITS - 63);
    }

    #[test]
    fn a_purge_takes_only_units_that_waited_long_enough() {
        let mut s = seg();
        s.take(0, 10);
        s.give_back(0, 4, 100);
        s.give_back(4, 6, 150);
        let wait = Cutoff {
            free_chunk: 10,
            used_chunk: 1000,
        };
        assert_eq!(s.next_due(false, wait), 110);
        let mut calls = std::vec::Vec::new();
        let purged = s.purge_dirty(false, free_chunks_up_to(120), true, |a, l| {
            calls.push((a, l))
        });
        assert_eq!(
            calls,
            [(s.base, 4 * UNIT_SIZE)],
            "the units freed at 150 wait"
        );
        assert_eq!(purged, 4 * UNIT_SIZE);
        assert_eq!(s.next_due(false, wait), 160);
        assert_eq!(
            s.purge_dirty(false, free_chunks_up_to(160), true, |_, _| {}),
            6 * UNIT_SIZE
        );
        assert_eq!(s.next_due(false, wait), 0, "nothing dirty");
    }

    #[test]
    fn units_a_timed_purge_returned_are_refaults_when_taken_again() {
        let mut s = seg();
        s.take(0, 8);
        s.give_back(0, 8, 70);
        assert_eq!(
            s.purge_dirty(false, Cutoff::ALL, true, |_, _| {}),
            8 * UNIT_SIZE
        );
        // Units 0..8 come back from the timed purge, 8..10 were never used.
        let t = s.take(0, 10);
        assert_eq!((t.clean, t.refaulted, t.freed_at), (10, 8, 70));
        s.give_back(0, 10, 80);
        assert_eq!(s.take(0, 10).refaulted, 0, "dirty units are no refault");
        s.give_back(0, 10, 90);
        // A purge for memory pressure or a forced collect is not the delay's doing.
        s.purge_dirty(false, Cutoff::ALL, false, |_, _| {});
        assert_eq!(s.take(0, 10).refaulted, 0);
    }

    #[test]
    fn dirty_units_are_not_clean_when_retaken_and_purge_cleans_them() {
        let mut s = seg();
        s.take(10, 4);
        s.give_back(10, 4, 1);
        assert_eq!(s.take(9, 6).clean, 2, "units 10..14 were dirty");
        s.give_back(9, 6, 2);
        let mut calls = std::vec::Vec::new();
        let purged = s.purge_dirty(false, Cutoff::ALL, false, |a, l| calls.push((a, l)));
        assert_eq!(purged, 6 * UNIT_SIZE);
        assert_eq!(calls, [(s.base + 9 * UNIT_SIZE, 6 * UNIT_SIZE)]);
        assert!(s.is_empty_and_clean());
        assert_eq!(s.take(9, 6).clean, 6);
    }

    #[test]
    fn whole_chunk_purges_keep_partly_used_huge_pages() {
        let mut s = seg();
        let chunk = CHUNK_UNITS;
        // Chunk 0: one unit stays in use, 4 units freed.
        s.take(0, 5);
        s.give_back(1, 4, 1);
        // Chunk 1: one unit stays in use, the 31 others freed.
        s.take(chunk, chunk);
        s.give_back(chunk + 1, chunk - 1, 1);
        // Chunks 2-3: entirely freed, one span across them: purged as one run.
        s.take(2 * chunk, 2 * chunk);
        s.give_back(2 * chunk, 2 * chunk, 1);
        // Chunk 4: entirely free, a few units of it dirty: purged whole.
        s.take(4 * chunk + 3, 2);
        s.give_back(4 * chunk + 3, 2, 1);
        // Chunk 5: entirely free, one unit freed long ago and one just now: it waits for
        // the latest.
        s.take(5 * chunk, 2);
        s.give_back(5 * chunk, 1, 1);
        s.give_back(5 * chunk + 1, 1, 50);
        let wait = Cutoff {
            free_chunk: 10,
            used_chunk: 1000,
        };
        assert_eq!(s.next_due(true, wait), 11);
        let mut calls = std::vec::Vec::new();
        let purged = s.purge_dirty(true, free_chunks_up_to(11), true, |a, l| calls.push((a, l)));
        let base = s.base;
        let at = |u: usize| base + u * UNIT_SIZE;
        // Chunks 2-4 in one run: chunk 4 whole, its clean units included.
        assert_eq!(calls, [(at(2 * chunk), 3 * HUGE_PAGE)]);
        assert_eq!(
            purged,
            (2 * chunk + 2) * UNIT_SIZE,
            "dirty units only count"
        );
        assert!(s.has_dirty(), "chunks 0 and 1 keep their dirty units");
        assert_eq!(s.next_due(true, wait), 60, "chunk 5, by its latest free");
        calls.clear();
        s.purge_dirty(true, free_chunks_up_to(60), true, |a, l| calls.push((a, l)));
        assert_eq!(calls, [(at(5 * chunk), HUGE_PAGE)]);
        assert_eq!(
            s.next_due(true, wait),
            1001,
            "the partly used chunks wait longer"
        );
        // The last unit of chunk 0 freed: now it goes whole, not chunk 1.
        s.give_back(0, 1, 20);
        calls.clear();
        s.purge_dirty(true, free_chunks_up_to(30), true, |a, l| calls.push((a, l)));
        assert_eq!(calls, [(at(0), HUGE_PAGE)]);
        // The longer wait over, chunk 1's free units go too.
        calls.clear();
        let cut = Cutoff {
            free_chunk: 1001,
            used_chunk: 1001,
        };
        s.purge_dirty(true, cut, true, |a, l| calls.push((a, l)));
        assert_eq!(calls, [(at(chunk + 1), (chunk - 1) * UNIT_SIZE)]);
        assert!(!s.has_dirty());
    }

    #[test]
    fn thp_policy_follows_the_kernel_mode() {
        use HugeAdvice::{Huge, NoHuge, None as Leave};
        let p = |cfg, mode| {
            let t = thp_policy(cfg, mode, true);
            assert_eq!(t.deferred, cfg == HugePages::Auto && t.advice == Huge);
            assert_eq!(t.split_sparse, t.deferred);
            // A Rust global allocator: the same advice, given at once to every segment.
            let rust = thp_policy(cfg, mode, false);
            assert_eq!((rust.advice, rust.whole_chunks), (t.advice, t.whole_chunks));
            assert!(!rust.deferred && !rust.split_sparse);
            (t.advice, t.whole_chunks)
        };
        assert_eq!(p(HugePages::Auto, Some(ThpMode::Madvise)), (Huge, true));
        assert!(thp_policy(HugePages::Auto, Some(ThpMode::Madvise), true).deferred);
        assert_eq!(p(HugePages::Auto, Some(ThpMode::Always)), (Leave, true));
        assert_eq!(p(HugePages::Auto, Some(ThpMode::Never)), (Leave, false));
        assert_eq!(p(HugePages::Auto, None), (Leave, false));
        assert_eq!(p(HugePages::Never, Some(ThpMode::Always)), (NoHuge, false));
        assert_eq!(p(HugePages::Never, Some(ThpMode::Madvise)), (Leave, false));
        assert_eq!(p(HugePages::Always, Some(ThpMode::Madvise)), (Huge, true));
        assert_eq!(p(HugePages::Always, None), (Huge, true));
        assert_eq!(p(HugePages::Always, Some(ThpMode::Never)), (Leave, false));
    }

    #[test]
    fn spans_are_mapped_to_their_head_and_unmapped_on_give_back() {
        let mut s = seg();
        s.take(5, 3);
        assert!(s.link_span(5, 3));
        let head: *mut Page = &mut s.pages[5];
        for u in 5..8 {
            assert_eq!(pagemap::lookup(s.base + u * UNIT_SIZE + 9), head as usize);
        }
        assert_eq!(pagemap::lookup(s.base + 8 * UNIT_SIZE), 0);
        assert_eq!(s.pages[5].start as usize, s.base + 5 * UNIT_SIZE);
        assert_eq!(s.unit_of(s.base + 7 * UNIT_SIZE + 5), 7);
        s.give_back(5, 3, 1);
        assert_eq!(pagemap::lookup(s.base + 6 * UNIT_SIZE), 0);
    }
}
