//! An expandable segment: one virtual reservation per device and stream, with physical
//! pages (of the allocation granularity) mapped only under blocks that need them.
//!
//! Invariants: bit `i` of `mapped` is set exactly when page `i` is mapped through the
//! driver and counted in the budget; `mapped_pages` counts the set bits. A failed
//! `ensure` leaves the segment as it was.
//!
//! For the statistics, the segment also knows which mapped pages no active block
//! touches ("idle": `unmap_inside` would give them back): `pins[i]` counts the blocks
//! the pool pinned on page `i` (`pin` / `unpin`), and the idle pages form maximal runs
//! kept in `runs` (start -> length) and `by_len` ((length, start)). So the bytes the
//! segment could return (`idle_bytes`) and its largest free block (`largest_idle`) are
//! known in O(1) / O(log n) at any time; each page changing state costs O(log n).

use super::budget::Budget;
use crate::driver::{DevPtr, Driver, DriverError};
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
    /// Active blocks touching each page.
    pins: Vec<u16>,
    /// Maximal runs of idle pages (mapped, no pin): start -> length, and (length, start).
    runs: BTreeMap<usize, usize>,
    by_len: BTreeSet<(usize, usize)>,
    /// Pages that are mapped and pinned by no block.
    idle_pages: usize,
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
        })
    }

    /// Page `i` became idle: joins it with the idle runs on either side.
    fn idle_on(&mut self, i: usize) {
        let (mut start, mut len) = (i, 1);
        if let Some((&s, &l)) = self.runs.range(..i).next_back() {
            if s + l == i {
                self.runs.remove(&s);
                self.by_len.remove(&(l, s));
                start = s;
                len += l;
            }
        }
        if let Some(l) = self.runs.remove(&(i + 1)) {
            self.by_len.remove(&(l, i + 1));
            len += l;
        }
        self.runs.insert(start, len);
        self.by_len.insert((len, start));
        self.idle_pages += 1;
    }

    /// Page `i` is no longer idle: splits its run around it.
    fn idle_off(&mut self, i: usize) {
        let Some((&s, &l)) = self.runs.range(..=i).next_back() else {
            return;
        };
        if s + l <= i {
            return;
        }
        self.runs.remove(&s);
        self.by_len.remove(&(l, s));
        if i > s {
            self.runs.insert(s, i - s);
            self.by_len.insert((i - s, s));
        }
        if s + l > i + 1 {
            self.runs.insert(i + 1, s + l - i - 1);
            self.by_len.insert((s + l - i - 1, i + 1));
        }
        self.idle_pages -= 1;
    }

    /// An active block now lies on `[addr, addr + len)`: its pages are not idle.
    pub fn pin(&mut self, addr: DevPtr, len: u64) {
        for i in self.pages_of(addr, len) {
            if self.pins[i] == 0 && self.is_mapped(i) {
                self.idle_off(i);
            }
            self.pins[i] += 1;
        }
    }

    /// The block on `[addr, addr + len)` is free again (it was pinned).
    pub fn unpin(&mut self, addr: DevPtr, len: u64) {
        for i in self.pages_of(addr, len) {
            self.pins[i] -= 1;
            if self.pins[i] == 0 && self.is_mapped(i) {
                self.idle_on(i);
            }
        }
    }

    /// Bytes mapped under no active block: what releasing the cache would unmap.
    pub fn idle_bytes(&self) -> u64 {
        (self.idle_pages * self.page) as u64
    }

    /// The longest run of idle pages, in bytes.
    pub fn largest_idle(&self) -> u64 {
        self.by_len
            .last()
            .map_or(0, |&(l, _)| (l * self.page) as u64)
    }

    fn is_mapped(&self, i: usize) -> bool {
        self.mapped[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, on: bool) {
        if on {
            self.mapped[i / 64] |= 1 << (i % 64);
            self.mapped_pages += 1;
            if self.pins[i] == 0 {
                self.idle_on(i);
            }
        } else {
            if self.pins[i] == 0 {
                self.idle_off(i);
            }
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
