//! Best-fit placement of large blocks inside segments (address ranges).
//!
//! Invariants:
//! - `ranges` tiles every segment exactly: ranges of one segment are contiguous, never
//!   overlap, and each is free or used;
//! - no two free ranges of the same segment are adjacent (frees coalesce);
//! - `free` holds `(size, addr)` of exactly the free ranges, so the first entry at or
//!   above `(n, 0)` is the smallest free range that fits `n` bytes, lowest address first
//!   among equals.

use std::collections::{BTreeMap, BTreeSet};

/// One range of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub size: u64,
    /// The segment it belongs to; ranges of different segments never merge.
    pub seg: u64,
    pub free: bool,
}

/// Free and used ranges of a set of segments.
#[derive(Default, Debug)]
pub struct Arena {
    ranges: BTreeMap<u64, Range>,
    free: BTreeSet<(u64, u64)>,
    free_bytes: u64,
}

impl Arena {
    /// Adds a segment `[addr, addr + size)`, all free.
    pub fn add_segment(&mut self, addr: u64, size: u64) {
        self.ranges.insert(
            addr,
            Range {
                size,
                seg: addr,
                free: true,
            },
        );
        self.free.insert((size, addr));
        self.free_bytes += size;
    }

    /// Removes a segment that is entirely free; false (and nothing changes) otherwise.
    pub fn remove_segment(&mut self, addr: u64, size: u64) -> bool {
        match self.ranges.get(&addr) {
            Some(r) if r.free && r.size == size && r.seg == addr => {
                self.ranges.remove(&addr);
                self.free.remove(&(size, addr));
                self.free_bytes -= size;
                true
            }
            _ => false,
        }
    }

    /// The smallest free range of at least `size` bytes for which `accept(range_size)`
    /// holds: `(addr, range_size)`.
    pub fn best_fit(&self, size: u64, accept: impl Fn(u64) -> bool) -> Option<(u64, u64)> {
        self.free
            .range((size, 0)..)
            .find(|&&(s, _)| accept(s))
            .map(|&(s, a)| (a, s))
    }

    /// Marks `[addr, addr + size)` used; `addr` starts a free range of at least `size`
    /// bytes. The rest of that range stays free.
    pub fn take(&mut self, addr: u64, size: u64) {
        let Some(r) = self.ranges.get_mut(&addr) else {
            return;
        };
        debug_assert!(r.free && r.size >= size);
        let (total, seg) = (r.size, r.seg);
        r.size = size;
        r.free = false;
        self.free.remove(&(total, addr));
        self.free_bytes -= total;
        if total > size {
            let rest = total - size;
            self.ranges.insert(
                addr + size,
                Range {
                    size: rest,
                    seg,
                    free: true,
                },
            );
            self.free.insert((rest, addr + size));
            self.free_bytes += rest;
        }
    }

    /// Frees the used range starting at `addr`, merging it with free neighbours of its
    /// segment. Returns its size, or `None` when no used range starts there.
    pub fn release(&mut self, addr: u64) -> Option<u64> {
        let r = *self.ranges.get(&addr)?;
        if r.free {
            return None;
        }
        let (mut start, mut size) = (addr, r.size);
        if let Some((&na, &n)) = self.ranges.range(addr + r.size..).next() {
            if n.free && n.seg == r.seg && na == addr + r.size {
                self.ranges.remove(&na);
                self.free.remove(&(n.size, na));
                self.free_bytes -= n.size;
                size += n.size;
            }
        }
        if let Some((&pa, &p)) = self.ranges.range(..addr).next_back() {
            if p.free && p.seg == r.seg && pa + p.size == addr {
                self.ranges.remove(&addr);
                self.free.remove(&(p.size, pa));
                self.free_bytes -= p.size;
                start = pa;
                size += p.size;
            }
        }
        self.ranges.insert(
            start,
            Range {
                size,
                seg: r.seg,
                free: true,
            },
        );
        self.free.insert((size, start));
        self.free_bytes += size;
        Some(r.size)
    }

    /// The range containing `addr`: `(start, range)`.
    pub fn containing(&self, addr: u64) -> Option<(u64, Range)> {
        let (&a, &r) = self.ranges.range(..=addr).next_back()?;
        (addr < a + r.size).then_some((a, r))
    }

    /// Free ranges, by address.
    pub fn free_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges
            .iter()
            .filter(|(_, r)| r.free)
            .map(|(&a, r)| (a, r.size))
    }

    /// All ranges, by address.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, Range)> + '_ {
        self.ranges.iter().map(|(&a, &r)| (a, r))
    }

    /// Size of the largest free range (O(log n): `free` is ordered by size).
    pub fn largest_free(&self) -> u64 {
        self.free.last().map_or(0, |&(s, _)| s)
    }

    /// Bytes in free ranges.
    pub fn free_bytes(&self) -> u64 {
        self.free_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_split_and_coalesce() {
        let mut a = Arena::default();
        a.add_segment(0, 100);
        a.add_segment(1000, 30);
        assert_eq!(a.best_fit(20, |_| true), Some((1000, 30)));
        a.take(0, 40);
        a.take(40, 10);
        assert_eq!(a.best_fit(50, |_| true), Some((50, 50)));
        assert_eq!(a.release(0), Some(40));
        assert_eq!(a.release(0), None, "double free");
        assert_eq!(a.release(40), Some(10));
        assert_eq!(a.free_ranges().collect::<Vec<_>>(), [(0, 100), (1000, 30)]);
        assert!(a.remove_segment(1000, 30));
        assert_eq!(a.free_bytes(), 100);
    }

    #[test]
    fn segments_do_not_merge() {
        let mut a = Arena::default();
        a.add_segment(0, 10);
        a.add_segment(10, 10);
        a.take(0, 10);
        a.release(0);
        assert_eq!(a.free_ranges().count(), 2);
    }
}
