//! Segments: 32 MiB reservations, aligned to their size, split into 512 units of 64 KiB.
//!
//! Segment metadata lives outside the segment (mapped separately), so the engine writes
//! nothing into memory it manages except blocks' own free-list links. Two bitmaps track
//! units: `free` (not part of any span) and `dirty` (free, and possibly touched since it
//! was last purged: still counted as reserved). A unit that is free and not dirty reads as
//! zero and costs no RSS.

use super::page::Page;
use super::{pagemap, UNITS, UNIT_SHIFT, UNIT_SIZE};
use core::ptr;

const WORDS: usize = UNITS / 64;

/// Metadata of one segment.
#[repr(C)]
pub struct Segment {
    /// First byte of the segment.
    pub base: usize,
    /// Units not part of any span.
    pub free: [u64; WORDS],
    /// Free units touched since their last purge.
    pub dirty: [u64; WORDS],
    pub free_units: u32,
    /// When the dirty units should be purged (coarse ms); 0 = nothing pending.
    pub purge_at: u64,
    /// Links in the arena's segment list.
    pub next: *mut Segment,
    pub prev: *mut Segment,
    /// Per-unit page metadata; a span's metadata is at its first unit.
    pub pages: [Page; UNITS],
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
    pub fn init(&mut self, base: usize) {
        self.base = base;
        self.free = [u64::MAX; WORDS];
        self.dirty = [0; WORDS];
        self.free_units = UNITS as u32;
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
        self.find_run_from(n, &self.free)
    }

    /// First unit of a run of `n` free units that starts on a dirty unit (memory freed
    /// recently and still faulted in), or `None`. Reusing those first saves page faults
    /// and keeps RSS from growing while clean units sit idle.
    pub fn find_dirty_run(&self, n: usize) -> Option<usize> {
        self.find_run_from(n, &self.dirty)
    }

    /// First run of `n` free units whose first unit is set in `starts` (a subset of
    /// `free`).
    fn find_run_from(&self, n: usize, starts: &[u64; WORDS]) -> Option<usize> {
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
            while len < n && i + len < UNITS && get(&self.free, i + len) {
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

    /// Takes units `first..first+n` out of the free set. Returns how many of them were
    /// clean (not dirty): those become newly reserved memory that reads as zero; the others
    /// stop being dirty.
    pub fn take(&mut self, first: usize, n: usize) -> usize {
        let mut clean = 0;
        for u in first..first + n {
            debug_assert!(get(&self.free, u));
            if !get(&self.dirty, u) {
                clean += 1;
            }
            put(&mut self.free, u, false);
            put(&mut self.dirty, u, false);
        }
        self.free_units -= n as u32;
        clean
    }

    /// Returns units `first..first+n` to the free set, dirty, and unmaps them from the
    /// pagemap (a stale pointer into them is then foreign).
    pub fn give_back(&mut self, first: usize, n: usize) {
        pagemap::set(self.base + (first << UNIT_SHIFT), n << UNIT_SHIFT, 0);
        for u in first..first + n {
            put(&mut self.free, u, true);
            put(&mut self.dirty, u, true);
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

    /// Calls `purge(addr, len)` for every run of dirty units and marks them clean.
    /// Returns the bytes purged.
    pub fn purge_dirty(&mut self, mut purge: impl FnMut(usize, usize)) -> usize {
        let mut total = 0;
        let mut u = 0;
        while u < UNITS {
            if !get(&self.dirty, u) {
                u += 1;
                continue;
            }
            let start = u;
            while u < UNITS && get(&self.dirty, u) {
                put(&mut self.dirty, u, false);
                u += 1;
            }
            let len = (u - start) * UNIT_SIZE;
            purge(self.base + start * UNIT_SIZE, len);
            total += len;
        }
        total
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
        s.init(0x4000_0000);
        s
    }

    #[test]
    fn runs_are_found_and_taken() {
        let mut s = seg();
        assert_eq!(s.find_run(1), Some(0));
        assert_eq!(s.take(0, 3), 3);
        assert_eq!(s.find_run(1), Some(3));
        assert_eq!(s.take(3, 61), 61);
        assert_eq!(s.find_run(2), Some(64));
        s.give_back(1, 1);
        assert_eq!(s.find_run(1), Some(1));
        assert_eq!(s.find_run(2), Some(64));
        assert_eq!(s.find_run(UNITS), None);
        assert_eq!(s.free_units as usize, UNITS - 63);
    }

    #[test]
    fn dirty_units_are_not_clean_when_retaken_and_purge_cleans_them() {
        let mut s = seg();
        s.take(10, 4);
        s.give_back(10, 4);
        assert_eq!(s.take(9, 6), 2, "units 10..14 were dirty");
        s.give_back(9, 6);
        let mut calls = std::vec::Vec::new();
        let purged = s.purge_dirty(|a, l| calls.push((a, l)));
        assert_eq!(purged, 6 * UNIT_SIZE);
        assert_eq!(calls, [(s.base + 9 * UNIT_SIZE, 6 * UNIT_SIZE)]);
        assert!(s.is_empty_and_clean());
        assert_eq!(s.take(9, 6), 6);
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
        s.give_back(5, 3);
        assert_eq!(pagemap::lookup(s.base + 6 * UNIT_SIZE), 0);
    }
}
