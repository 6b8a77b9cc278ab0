//! The memory of one stream on one device: one best-fit arena for blocks of every size.
//!
//! Blocks are reused only on the stream they belong to, so a block freed on its stream
//! can be handed out again at once (work queued on one stream runs in order).
//!
//! Blocks come either from the stream's expandable segment (one reservation, the arena
//! holding it as a single segment, pages mapped under used blocks) or from cuMemAlloc
//! segments (PyTorch's sizes: 2 MiB for requests up to 1 MiB, 20 MiB below 10 MiB, else
//! rounded to 2 MiB). Small blocks (up to 1 MiB, rounded to 512 B) share pages with each
//! other and, in the expandable segment, with large blocks, as PyTorch's small pool packs
//! its blocks into shared 2 MiB segments: a stream holds the pages its live blocks cover,
//! not one page per size class (which kept 120 of 152 MiB on the `train_p4` replay).

use super::arena::Arena;
use super::budget::Budget;
use super::expandable::{Expandable, MapError};
use super::graph_pool::Owner;
use crate::config::PluginConfig;
use crate::driver::{DevPtr, Driver, StreamId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// PyTorch's large-buffer size: segment size below 10 MiB, and the slack allowed when an
/// oversize cached block serves a request.
pub const LARGE_BUFFER: u64 = 20 << 20;
/// Requests below this get a `LARGE_BUFFER` segment (cuMemAlloc mode).
pub const MIN_LARGE_ALLOC: u64 = 10 << 20;
/// Requests up to this are small blocks: rounded to 512 B, and in cuMemAlloc mode served
/// from `SMALL_BUFFER` segments (PyTorch's small pool).
pub const SMALL_MAX: u64 = 1 << 20;
/// Segment size for small blocks (cuMemAlloc mode).
pub const SMALL_BUFFER: u64 = 2 << 20;
/// Segment rounding (cuMemAlloc mode).
pub const ROUND_LARGE: u64 = 2 << 20;
/// Large blocks kept aside on free for an exact-size reuse (see `StreamPool::recent`).
pub const RECENT_MAX: usize = 8;

/// An allocation that succeeded.
pub struct LargeBlock {
    pub addr: DevPtr,
    pub size: u64,
    /// New device memory was needed.
    pub fresh: bool,
}

/// The pools of one stream.
pub struct StreamPool {
    pub stream: StreamId,
    /// The general pool of the stream, a CUDA graph's private pool, or a spare.
    pub owner: Owner,
    pub large: Arena,
    /// The reservation, in expandable mode.
    pub seg: Option<Expandable>,
    /// cuMemAlloc segments (base -> size), in cuMemAlloc mode.
    pub segments: BTreeMap<DevPtr, u64>,
    /// Large blocks freed on this stream and not yet merged back into the arena (still
    /// "used" there), newest last. A request of exactly such a size takes one back
    /// without touching the arena (training loops repeat their sizes); any other large
    /// request first merges them all back, so best fit then sees the same arena as it
    /// would have without this list.
    pub recent: Vec<(DevPtr, u64)>,
    /// cuMemAlloc mode: large blocks per segment base (absent = none), and the bytes of
    /// segments with none (what `release_cached` would free). Blocks in `recent` are
    /// free for the statistics, but they stay pinned here (and in the expandable
    /// segment's idle runs) until they merge back into the arena: a block set aside and
    /// taken back costs no update; `figures` discounts them (at most `RECENT_MAX`).
    seg_pins: HashMap<DevPtr, u32>,
    idle_seg_bytes: u64,
}

impl StreamPool {
    /// An empty pool; reserves the stream's address space in expandable mode.
    pub fn new(
        driver: &Arc<dyn Driver>,
        dev: i32,
        stream: StreamId,
        expandable: bool,
        granularity: usize,
        reserve_bytes: usize,
    ) -> Result<StreamPool, String> {
        let mut large = Arena::default();
        let seg = if expandable {
            let e = Expandable::reserve(driver.as_ref(), dev, reserve_bytes, granularity)
                .map_err(|e| format!("cannot reserve address space for stream {stream:#x}: {e}"))?;
            large.add_segment(e.base, e.size as u64);
            Some(e)
        } else {
            None
        };
        Ok(StreamPool {
            stream,
            owner: Owner::General,
            large,
            seg,
            segments: BTreeMap::new(),
            recent: Vec::with_capacity(RECENT_MAX),
            seg_pins: HashMap::new(),
            idle_seg_bytes: 0,
        })
    }

    /// Returns a large block: kept aside for reuse of its exact size, the oldest kept
    /// block going back to the arena when the list is full.
    /// The block stays pinned while aside (see `seg_pins`).
    pub fn free_large(&mut self, addr: DevPtr, size: u64) {
        if self.recent.len() == RECENT_MAX {
            let (a, s) = self.recent.remove(0);
            self.unpin(a, s);
            self.large.release(a);
        }
        self.recent.push((addr, size));
    }

    /// An active block now lies on `[addr, addr + size)` (statistics: cached bytes).
    fn pin(&mut self, addr: DevPtr, size: u64) {
        if let Some(seg) = self.seg.as_mut() {
            seg.pin(addr, size);
        } else if let Some((_, r)) = self.large.containing(addr) {
            let n = self.seg_pins.entry(r.seg).or_insert(0);
            if *n == 0 {
                self.idle_seg_bytes -= self.segments.get(&r.seg).copied().unwrap_or(0);
            }
            *n += 1;
        }
    }

    /// The block on `[addr, addr + size)` is free again.
    fn unpin(&mut self, addr: DevPtr, size: u64) {
        if let Some(seg) = self.seg.as_mut() {
            seg.unpin(addr, size);
        } else if let Some((_, r)) = self.large.containing(addr) {
            if let Some(n) = self.seg_pins.get_mut(&r.seg) {
                *n -= 1;
                if *n == 0 {
                    self.seg_pins.remove(&r.seg);
                    self.idle_seg_bytes += self.segments.get(&r.seg).copied().unwrap_or(0);
                }
            }
        }
    }

    /// Merges every kept-aside block back into the arena.
    pub fn flush_recent(&mut self) {
        for i in 0..self.recent.len() {
            let (a, s) = self.recent[i];
            self.unpin(a, s);
            self.large.release(a);
        }
        self.recent.clear();
    }

    /// Serves a block of `size` bytes (already rounded).
    pub fn alloc_large(
        &mut self,
        driver: &dyn Driver,
        dev: i32,
        budget: &Budget,
        cfg: &PluginConfig,
        size: u64,
    ) -> Result<LargeBlock, MapError> {
        if let Some(i) = self.recent.iter().rposition(|&(_, s)| s == size) {
            // Still pinned (see `seg_pins`): nothing to update.
            let (addr, size) = self.recent.swap_remove(i);
            return Ok(LargeBlock {
                addr,
                size,
                fresh: false,
            });
        }
        self.flush_recent();
        if let Some(seg) = self.seg.as_mut() {
            let (addr, _) = self.large.best_fit(size, |_| true).ok_or(MapError::Cap)?;
            // Pinned first, so that pages mapped now never show as idle.
            seg.pin(addr, size);
            let n = match seg.ensure(driver, dev, budget, addr, size) {
                Ok(n) => n,
                Err(e) => {
                    seg.unpin_failed(addr, size);
                    return Err(e);
                }
            };
            self.large.take(addr, size);
            return Ok(LargeBlock {
                addr,
                size,
                fresh: n > 0,
            });
        }
        // cuMemAlloc mode, with PyTorch's max_split_size rule: oversize cached blocks are
        // not split and only serve requests within LARGE_BUFFER of their size.
        let max_split = cfg.max_split_size as u64;
        let accept = |s: u64| {
            if size < max_split {
                s < max_split
            } else {
                s < size.saturating_add(LARGE_BUFFER)
            }
        };
        let mut fresh = false;
        let (addr, range) = match self.large.best_fit(size, accept) {
            Some(f) => f,
            None => {
                let seg_size = if size <= SMALL_MAX {
                    SMALL_BUFFER
                } else if size < MIN_LARGE_ALLOC {
                    LARGE_BUFFER
                } else {
                    size.div_ceil(ROUND_LARGE) * ROUND_LARGE
                };
                if !budget.try_add(seg_size) {
                    return Err(MapError::Cap);
                }
                let p = match driver.malloc(dev, seg_size as usize) {
                    Ok(p) => p,
                    Err(e) => {
                        budget.sub(seg_size);
                        return Err(MapError::Driver(e));
                    }
                };
                self.large.add_segment(p, seg_size);
                self.segments.insert(p, seg_size);
                self.idle_seg_bytes += seg_size;
                fresh = true;
                (p, seg_size)
            }
        };
        let take = if range >= max_split { range } else { size };
        self.large.take(addr, take);
        self.pin(addr, take);
        Ok(LargeBlock {
            addr,
            size: take,
            fresh,
        })
    }

    /// Returns cached device memory: unmaps fully free pages (expandable) or frees
    /// entirely free segments (cuMemAlloc). Stops early once
    /// `goal` bytes are freed (`u64::MAX` for all). Returns (bytes freed, large-pool driver
    /// calls that freed memory, first driver error).
    pub fn release_cached(
        &mut self,
        driver: &dyn Driver,
        dev: i32,
        budget: &Budget,
        goal: u64,
    ) -> (u64, u64, Option<crate::driver::DriverError>) {
        self.flush_recent();
        let before = budget.reserved();
        let mut calls = 0;
        let mut error = None;
        if let Some(seg) = self.seg.as_mut() {
            let free: Vec<(u64, u64)> = self.large.free_ranges().collect();
            for (a, s) in free {
                if before - budget.reserved() >= goal {
                    break;
                }
                let (n, e) = seg.unmap_inside(driver, dev, budget, a, s);
                calls += n as u64;
                if e.is_some() {
                    error = e;
                    break;
                }
            }
        } else {
            // Largest segments first, so fewer calls reach the goal.
            let mut free: Vec<(u64, u64)> = self
                .segments
                .iter()
                .filter(|(&p, &s)| matches!(self.large.containing(p), Some((a, r)) if a == p && r.free && r.size == s))
                .map(|(&p, &s)| (s, p))
                .collect();
            free.sort_unstable_by(|a, b| b.cmp(a));
            for (s, p) in free {
                if before - budget.reserved() >= goal {
                    break;
                }
                if let Err(e) = driver.free(dev, p) {
                    error = Some(e);
                    break;
                }
                self.large.remove_segment(p, s);
                self.segments.remove(&p);
                self.idle_seg_bytes -= s;
                budget.sub(s);
                calls += 1;
            }
        }
        (before - budget.reserved(), calls, error)
    }

    /// Bytes of device memory this stream holds (mapped pages or segments).
    pub fn large_reserved(&self) -> u64 {
        match &self.seg {
            Some(s) => (s.mapped_pages * s.page) as u64,
            None => self.segments.values().sum(),
        }
    }

    /// `(cached, largest_free)` of the large blocks: the bytes of large-block memory the
    /// stream could give back now (mapped pages, or whole cuMemAlloc segments, that no
    /// active block touches), and the largest free large block backed by device memory
    /// (longest run of idle mapped pages, or largest free range or kept-aside block).
    /// The structures keep them with the blocks of `recent` still pinned; those (at most
    /// `RECENT_MAX`) are discounted here: O(1) with `recent` empty, else
    /// O(RECENT_MAX^2 + RECENT_MAX log n).
    pub fn figures(&self) -> (u64, u64) {
        match &self.seg {
            Some(s) if self.recent.is_empty() => (s.idle_bytes(), s.largest_idle()),
            Some(s) => s.figures_with_aside(&self.recent),
            None => {
                let mut idle = self.idle_seg_bytes;
                let mut segs = [0 as DevPtr; RECENT_MAX];
                let mut largest = self.large.largest_free();
                for (i, &(a, s)) in self.recent.iter().take(RECENT_MAX).enumerate() {
                    largest = largest.max(s);
                    segs[i] = self.large.containing(a).map_or(0, |(_, r)| r.seg);
                }
                let segs = &segs[..self.recent.len().min(RECENT_MAX)];
                for (i, &g) in segs.iter().enumerate() {
                    // Each segment once; idle when all its pinned blocks are aside.
                    if segs[..i].contains(&g) {
                        continue;
                    }
                    let aside = segs.iter().filter(|&&x| x == g).count() as u32;
                    if self.seg_pins.get(&g) == Some(&aside) {
                        idle += self.segments.get(&g).copied().unwrap_or(0);
                    }
                }
                (idle, largest)
            }
        }
    }

    /// `figures()` computed by walking every range and page: what
    /// the incremental figures must equal (`DevicePool::check`).
    pub fn figures_by_walk(&self) -> (u64, u64) {
        let busy = |a: u64, r: &super::arena::Range| {
            !r.free && !self.recent.iter().any(|&(p, s)| p == a && s == r.size)
        };
        match &self.seg {
            Some(seg) => {
                let page = seg.page as u64;
                let pages = seg.size / seg.page;
                let mut touched = vec![false; pages];
                for (a, r) in self.large.ranges().filter(|(a, r)| busy(*a, r)) {
                    let first = ((a - seg.base) / page) as usize;
                    let last = (a + r.size - seg.base).div_ceil(page) as usize;
                    touched[first..last].iter_mut().for_each(|t| *t = true);
                }
                let (mut idle, mut run, mut longest) = (0u64, 0u64, 0u64);
                for (i, &t) in touched.iter().enumerate() {
                    if !t && seg.covers(seg.base + i as u64 * page, page) {
                        idle += page;
                        run += page;
                        longest = longest.max(run);
                    } else {
                        run = 0;
                    }
                }
                (idle, longest)
            }
            None => {
                let mut idle = 0;
                for (&p, &s) in &self.segments {
                    if !self.large.ranges().any(|(a, r)| r.seg == p && busy(a, &r)) {
                        idle += s;
                    }
                }
                let longest = self
                    .large
                    .ranges()
                    .filter(|(a, r)| !busy(*a, r))
                    .map(|(_, r)| r.size)
                    .max()
                    .unwrap_or(0);
                (idle, longest)
            }
        }
    }

    /// Gives all device memory back (the pool is going away).
    pub fn destroy(&mut self, driver: &dyn Driver, dev: i32, budget: &Budget) {
        if let Some(mut seg) = self.seg.take() {
            seg.destroy(driver, dev, budget);
        }
        for (&p, &s) in &self.segments {
            if driver.free(dev, p).is_ok() {
                budget.sub(s);
            }
        }
        self.segments.clear();
        self.seg_pins.clear();
        self.idle_seg_bytes = 0;
    }
}
