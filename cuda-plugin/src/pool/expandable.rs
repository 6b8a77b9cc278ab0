//! An expandable segment: one virtual reservation per device and stream, with physical
//! pages (of the allocation granularity) mapped only under blocks that need them.
//!
//! Invariants: bit `i` of `mapped` is set exactly when page `i` is mapped through the
//! driver and counted in the budget; `mapped_pages` counts the set bits. A failed
//! `ensure` leaves the segment as it was.
//!
//! For the statistics, the segment also knows which mapped pages no active block
//! touches ("idle": `unmap_inside` would give them back). The idle pages form maximal
//! runs kept in `runs` (start -> length) and `by_len` ((length, start)), so the bytes the
//! segment could return (`idle_bytes`) and its largest free block (`largest_idle`) are
//! known in O(1) / O(log n) at any time. Pinning or unpinning a block (`pin` / `unpin`)
//! costs O(log n) whatever its size: a page wholly inside a block is touched by no other
//! block, so only a block's first and last pages can be shared, and `pins` counts the
//! blocks touching a page at those pages only (0 elsewhere). An active block lies on
//! mapped pages, so the pages a block leaves are all mapped.
//!
//! `version` changes with every change to `pins` or the runs, so the figures with one
//! block aside (`figures_with_aside`, read at every publish while a freed block waits for
//! an exact-size reuse) are computed once per state, not once per free: an alloc + free
//! pair of one size leaves the same state each time.

use super::budget::Budget;
use super::stream_pool::RECENT_MAX;
use crate::driver::{DevPtr, Driver, DriverError};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

/// Why pages could not be mapped.
#[derive(Debug)]
pub enum MapError {
    /// The budget (memory fraction) refused.
    Cap,
    /// The driver failed.
    Driver(DriverError),
}

/// One reservation and its mapped pages.
pub struct Expandable {
    pub base: DevPtr,
    pub size: usize,
    pub page: usize,
    mapped: Vec<u64>,
    pub mapped_pages: usize,
    /// Page indexes the last successful `ensure` mapped (for the allocator's history).
    pub last_mapped: Vec<usize>,
    /// Blocks touching a page, counted at the pages where blocks start and end.
    pins: Vec<u16>,
    /// Maximal runs of idle pages (mapped, no pin): start -> length, and (length, start).
    runs: BTreeMap<usize, usize>,
    by_len: BTreeSet<(usize, usize)>,
    /// Pages that are mapped and pinned by no block.
    idle_pages: usize,
    /// Length of the longest idle run (the last of `by_len`), so that reading it at every
    /// publish costs a load, not a walk down the tree.
    longest: usize,
    /// Bumped by every change to `pins`, the runs or `idle_pages` (never 0).
    version: u64,
    /// `figures_with_aside` of one block: (version, addr, len, idle bytes, largest idle);
    /// version 0 when unset.
    memo: Cell<(u64, DevPtr, u64, u64, u64)>,
}

impl Expandable {
    /// Reserves `size` bytes (rounded to pages) of address space.
    pub fn reserve(
        driver: &dyn Driver,
        dev: i32,
        size: usize,
        page: usize,
    ) -> Result<Self, DriverError> {
        let size = size.div_ceil(page) * page;
        let base = driver.reserve(dev, size, page)?;
        let pages = size / page;
        Ok(Expandable {
            base,
            size,
            page,
            mapped: vec![0; pages.div_ceil(64)],
            mapped_pages: 0,
            last_mapped: Vec::new(),
            pins: vec![0; pages],
            runs: BTreeMap::new(),
            by_len: BTreeSet::new(),
            idle_pages: 0,
            longest: 0,
            version: 1,
            memo: Cell::new((0, 0, 0, 0, 0)),
        })
    }

    /// Removes pages `[from, to)` from the idle runs; they are touched now.
    fn idle_off_range(&mut self, from: usize, to: usize) {
        self.version += 1;
        // The run that starts before `from` and reaches into the range, then every run
        // starting inside it.
        let mut at = from;
        if let Some((&s, &l)) = self.runs.range(..from).next_back() {
            if s + l > from {
                at = s;
            }
        }
        // One run at a time (no list: the free path allocates nothing once warm).
        while let Some((&s, &l)) = self.runs.range(at..to).next() {
            self.runs.remove(&s);
            self.by_len.remove(&(l, s));
            let (lo, hi) = (s.max(from), (s + l).min(to));
            self.idle_pages -= hi - lo;
            if s < from {
                self.runs.insert(s, from - s);
                self.by_len.insert((from - s, s));
            }
            if s + l > to {
                self.runs.insert(to, s + l - to);
                self.by_len.insert((s + l - to, to));
            }
            at = to.min(s + l);
        }
        self.longest = self.by_len.last().map_or(0, |&(l, _)| l);
    }

    /// Adds pages `[from, to)`, mapped and touched by nothing, to the idle runs.
    fn idle_on_range(&mut self, from: usize, to: usize) {
        self.version += 1;
        if from >= to {
            return;
        }
        let (mut start, mut end) = (from, to);
        if let Some((&s, &l)) = self.runs.range(..from).next_back() {
            if s + l == from {
                self.runs.remove(&s);
                self.by_len.remove(&(l, s));
                start = s;
            }
        }
        if let Some(l) = self.runs.remove(&to) {
            self.by_len.remove(&(l, to));
            end = to + l;
        }
        self.runs.insert(start, end - start);
        self.by_len.insert((end - start, start));
        self.idle_pages += to - from;
        self.longest = self.longest.max(end - start);
    }

    /// An active block now lies on `[addr, addr + len)`: its pages are not idle.
    pub fn pin(&mut self, addr: DevPtr, len: u64) {
        let r = self.pages_of(addr, len);
        self.pins[r.start] += 1;
        if r.end - 1 != r.start {
            self.pins[r.end - 1] += 1;
        }
        self.idle_off_range(r.start, r.end);
    }

    /// The block on `[addr, addr + len)` is free again (it was pinned, so its pages are
    /// mapped): its pages touched by no other block become idle.
    pub fn unpin(&mut self, addr: DevPtr, len: u64) {
        let r = self.pages_of(addr, len);
        self.version += 1;
        self.pins[r.start] -= 1;
        if r.end - 1 != r.start {
            self.pins[r.end - 1] -= 1;
        }
        let from = r.start + (self.pins[r.start] > 0) as usize;
        let to = r.end - (self.pins[r.end - 1] > 0 && r.end > from) as usize;
        self.idle_on_range(from, to);
    }

    /// Undoes a `pin` whose block never came to be (mapping its pages failed): like
    /// `unpin`, but only the pages still mapped become idle. O(pages), on failure only.
    pub fn unpin_failed(&mut self, addr: DevPtr, len: u64) {
        let r = self.pages_of(addr, len);
        self.version += 1;
        self.pins[r.start] -= 1;
        if r.end - 1 != r.start {
            self.pins[r.end - 1] -= 1;
        }
        for i in r {
            if self.pins[i] == 0 && self.is_mapped(i) {
                self.idle_on_range(i, i + 1);
            }
        }
    }

    /// Bytes mapped under no active block: what releasing the cache would unmap.
    pub fn idle_bytes(&self) -> u64 {
        (self.idle_pages * self.page) as u64
    }

    /// The longest run of idle pages, in bytes.
    pub fn largest_idle(&self) -> u64 {
        (self.longest * self.page) as u64
    }

    /// `(idle_bytes, largest_idle)` as if the blocks in `aside` (at most
    /// [`RECENT_MAX`], still pinned here) were unpinned: the kept-aside blocks of
    /// `StreamPool::recent`, which the pool counts as free without touching the runs.
    /// A block's inner pages are its own, so they are idle; its first and last pages
    /// are idle when every block pinned there is aside. The idle intervals so found are
    /// merged with each other and with the runs they touch. O(k^2 + k log n) for k
    /// blocks, no allocation.
    pub fn figures_with_aside(&self, aside: &[(DevPtr, u64)]) -> (u64, u64) {
        if let [(a, l)] = *aside {
            let (v, ma, ml, idle, largest) = self.memo.get();
            if (v, ma, ml) == (self.version, a, l) {
                return (idle, largest);
            }
            let (idle, largest) = self.compute_with_aside(aside);
            self.memo.set((self.version, a, l, idle, largest));
            return (idle, largest);
        }
        self.compute_with_aside(aside)
    }

    /// `figures_with_aside`, computed.
    fn compute_with_aside(&self, aside: &[(DevPtr, u64)]) -> (u64, u64) {
        let aside = &aside[..aside.len().min(RECENT_MAX)];
        // Blocks of `aside` pinned at page `p` (each counted once, as `pin` counts).
        let aside_at = |p: usize| {
            aside
                .iter()
                .filter(|&&(a, l)| {
                    let r = self.pages_of(a, l);
                    r.start == p || r.end - 1 == p
                })
                .count()
        };
        let mut iv = [(0usize, 0usize); RECENT_MAX];
        let mut n = 0;
        for &(a, l) in aside {
            let r = self.pages_of(a, l);
            let from = r.start + (self.pins[r.start] as usize > aside_at(r.start)) as usize;
            let mut to = r.end;
            if to > from && self.pins[to - 1] as usize > aside_at(to - 1) {
                to -= 1;
            }
            if from < to {
                iv[n] = (from, to);
                n += 1;
            }
        }
        let iv = &mut iv[..n];
        iv.sort_unstable();
        let (mut idle, mut largest) = (self.idle_pages, self.longest);
        // Sweep: `cur` is the merged aside interval, `ext` it grown by adjacent runs.
        let mut cur: Option<(usize, usize)> = None;
        let mut ext: Option<(usize, usize)> = None;
        let mut close = |c: (usize, usize), ext: &mut Option<(usize, usize)>, idle: &mut usize| {
            *idle += c.1 - c.0;
            let lo = match self.runs.range(..c.0).next_back() {
                Some((&s, &l)) if s + l == c.0 => s,
                _ => c.0,
            };
            let hi = c.1 + self.runs.get(&c.1).copied().unwrap_or(0);
            *ext = match *ext {
                // A run between two aside intervals joins them.
                Some((a, b)) if lo <= b => Some((a, hi.max(b))),
                _ => Some((lo, hi)),
            };
            let e = ext.unwrap_or((0, 0));
            largest = largest.max(e.1 - e.0);
        };
        for &(f, t) in iv.iter() {
            cur = match cur {
                Some((a, b)) if f <= b => Some((a, b.max(t))),
                Some(c) => {
                    close(c, &mut ext, &mut idle);
                    Some((f, t))
                }
                None => Some((f, t)),
            };
        }
        if let Some(c) = cur {
            close(c, &mut ext, &mut idle);
        }
        ((idle * self.page) as u64, (largest * self.page) as u64)
    }

    fn is_mapped(&self, i: usize) -> bool {
        self.mapped[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, on: bool) {
        if on {
            self.mapped[i / 64] |= 1 << (i % 64);
            self.mapped_pages += 1;
        } else {
            self.mapped[i / 64] &= !(1 << (i % 64));
            self.mapped_pages -= 1;
        }
    }

    /// Page indexes covering `[addr, addr + len)`.
    fn pages_of(&self, addr: DevPtr, len: u64) -> std::ops::Range<usize> {
        let first = ((addr - self.base) / self.page as u64) as usize;
        let last = ((addr + len - self.base).div_ceil(self.page as u64)) as usize;
        first..last
    }

    /// Bytes that `ensure(addr, len)` would map.
    pub fn missing(&self, addr: DevPtr, len: u64) -> u64 {
        self.pages_of(addr, len)
            .filter(|&i| !self.is_mapped(i))
            .count() as u64
            * self.page as u64
    }

    /// Maps every page under `[addr, addr + len)`. Returns the pages newly mapped; on
    /// failure unmaps those again.
    pub fn ensure(
        &mut self,
        driver: &dyn Driver,
        dev: i32,
        budget: &Budget,
        addr: DevPtr,
        len: u64,
    ) -> Result<usize, MapError> {
        let mut done: Vec<usize> = Vec::new();
        for i in self.pages_of(addr, len) {
            if self.is_mapped(i) {
                continue;
            }
            if !budget.try_add(self.page as u64) {
                self.undo(driver, dev, budget, &done);
                return Err(MapError::Cap);
            }
            let p = self.base + (i * self.page) as u64;
            if let Err(e) = driver.map(dev, p, self.page) {
                budget.sub(self.page as u64);
                self.undo(driver, dev, budget, &done);
                return Err(MapError::Driver(e));
            }
            self.set(i, true);
            done.push(i);
        }
        let n = done.len();
        self.last_mapped = done;
        Ok(n)
    }

    fn undo(&mut self, driver: &dyn Driver, dev: i32, budget: &Budget, pages: &[usize]) {
        for &i in pages {
            let p = self.base + (i * self.page) as u64;
            if driver.unmap(dev, p, self.page).is_ok() {
                budget.sub(self.page as u64);
                self.set(i, false);
            }
        }
    }

    /// Unmaps the mapped pages lying wholly inside `[addr, addr + len)` (a free range).
    /// Returns (pages unmapped, first driver error).
    pub fn unmap_inside(
        &mut self,
        driver: &dyn Driver,
        dev: i32,
        budget: &Budget,
        addr: DevPtr,
        len: u64,
    ) -> (usize, Option<DriverError>) {
        let page = self.page as u64;
        let first = (addr - self.base).div_ceil(page) as usize;
        let last = ((addr + len - self.base) / page) as usize;
        let mut n = 0;
        for i in first..last.max(first) {
            if !self.is_mapped(i) {
                continue;
            }
            match driver.unmap(dev, self.base + i as u64 * page, self.page) {
                Ok(()) => {
                    budget.sub(page);
                    // Wholly inside a free range: it was idle.
                    self.idle_off_range(i, i + 1);
                    self.set(i, false);
                    n += 1;
                }
                Err(e) => return (n, Some(e)),
            }
        }
        (n, None)
    }

    /// Whether every page under `[addr, addr + len)` is mapped (a consistency check).
    pub fn covers(&self, addr: DevPtr, len: u64) -> bool {
        self.pages_of(addr, len).all(|i| self.is_mapped(i))
    }

    /// Unmaps everything and frees the reservation (the pool is going away).
    pub fn destroy(&mut self, driver: &dyn Driver, dev: i32, budget: &Budget) {
        let (_, err) = self.unmap_inside(driver, dev, budget, self.base, self.size as u64);
        if err.is_none() {
            let _ = driver.release(dev, self.base, self.size);
        }
    }
}
