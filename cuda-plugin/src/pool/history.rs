//! The allocator's history, as PyTorch's `torch.cuda.memory._record_memory_history` keeps
//! it: a bounded ring of trace entries per device, read by the memory snapshot
//! (`abi/snapshot.rs`, `poolside.torch.memory_snapshot`).
//!
//! Entries and their meaning follow PyTorch's `TraceEntry` (c10/cuda/CUDACachingAllocator):
//! - `alloc`, `free_requested`, `free_completed`: a block's address and its *requested*
//!   bytes; `free_requested` when the caller frees it, `free_completed` when the pool can
//!   hand it out again (at once, or after the events of `record_stream` completed);
//! - `segment_alloc` / `segment_free`: a cuMemAlloc segment made or freed, its address and
//!   size;
//! - `segment_map` / `segment_unmap`: pages of an expandable segment mapped or unmapped,
//!   one entry per contiguous run;
//! - `oom`: `addr` holds the free device memory the driver reported, `size` the request.
//!   The stream of an `oom` entry is 0 (the pool does not keep it past the failed tries).
//!
//! Cost: while recording is off every recording point is one relaxed load of [`ENABLED`]
//! and a not-taken branch. While it is on, an entry costs a clock read and a store into
//! the ring, which never holds more than `max_entries` entries (the oldest is overwritten,
//! as in PyTorch). Python stack frames are not recorded (see python/README.md).
//!
//! Recording is process-wide, as in PyTorch (`recordHistory` applies to every device):
//! the switch and the bound are globals, the rings live in each pool's state under its
//! lock.

use super::stream_pool::StreamPool;
use super::{DevicePool, State};
use crate::driver::DevPtr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};

/// Whether trace entries are recorded.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The ring's bound (at least 1).
static MAX_ENTRIES: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Actions not recorded: bit `Action as u32`.
static SKIP: AtomicU32 = AtomicU32::new(0);

/// Turns recording on or off for every device, keeping at most `max_entries` entries per
/// device (0 counts as 1, as in PyTorch) and skipping the actions whose bit is set in
/// `skip` (`1 << Action as u32`). Callers clear or trim the rings of existing pools
/// ([`DevicePool::clear_history`], [`DevicePool::bound_history`]).
pub fn set_recording(enabled: bool, max_entries: usize, skip: u32) {
    MAX_ENTRIES.store(max_entries.max(1), Relaxed);
    SKIP.store(skip, Relaxed);
    ENABLED.store(enabled, Relaxed);
}

/// Whether recording is on.
#[inline]
pub fn recording() -> bool {
    ENABLED.load(Relaxed)
}

/// What happened (PyTorch's `TraceEntry::Action`, by its snapshot name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Alloc = 0,
    FreeRequested = 1,
    FreeCompleted = 2,
    SegmentAlloc = 3,
    SegmentFree = 4,
    SegmentMap = 5,
    SegmentUnmap = 6,
    Oom = 7,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Alloc,
        Action::FreeRequested,
        Action::FreeCompleted,
        Action::SegmentAlloc,
        Action::SegmentFree,
        Action::SegmentMap,
        Action::SegmentUnmap,
        Action::Oom,
    ];

    /// The name PyTorch's snapshot gives it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Alloc => "alloc",
            Action::FreeRequested => "free_requested",
            Action::FreeCompleted => "free_completed",
            Action::SegmentAlloc => "segment_alloc",
            Action::SegmentFree => "segment_free",
            Action::SegmentMap => "segment_map",
            Action::SegmentUnmap => "segment_unmap",
            Action::Oom => "oom",
        }
    }

    /// The action called `name`.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// One recorded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    pub action: Action,
    /// Block or segment address; for `oom`, the free device memory.
    pub addr: u64,
    pub size: u64,
    /// The stream (`cudaStream_t` value) of the block or segment.
    pub stream: u64,
    /// Microseconds since the Unix epoch, as PyTorch's `time_us`.
    pub time_us: u64,
}

/// A device's entries: a ring of at most `MAX_ENTRIES`.
///
/// Invariant: `entries.len() <= bound` where bound is the value of `MAX_ENTRIES` when the
/// last entry was pushed; once full, `next` is the index of the oldest entry (the one the
/// next push overwrites); before that, `next` is 0.
#[derive(Default)]
pub struct Ring {
    entries: Vec<TraceEntry>,
    next: usize,
}

impl Ring {
    /// Records one entry when recording is on.
    #[inline]
    pub fn record(&mut self, action: Action, addr: u64, size: u64, stream: u64) {
        if recording() {
            self.push(action, addr, size, stream);
        }
    }

    #[cold]
    #[inline(never)]
    fn push(&mut self, action: Action, addr: u64, size: u64, stream: u64) {
        if SKIP.load(Relaxed) & (1 << action as u32) != 0 {
            return;
        }
        let time_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let e = TraceEntry {
            action,
            addr,
            size,
            stream,
            time_us,
        };
        let max = MAX_ENTRIES.load(Relaxed).max(1);
        if self.entries.len() > max {
            self.bound(max);
        }
        if self.entries.len() < max {
            self.entries.push(e);
        } else {
            self.entries[self.next] = e;
            self.next = (self.next + 1) % max;
        }
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> Vec<TraceEntry> {
        let (new, old) = self.entries.split_at(self.next);
        old.iter().chain(new).copied().collect()
    }

    /// Forgets every entry and gives the memory back.
    pub fn clear(&mut self) {
        self.entries = Vec::new();
        self.next = 0;
    }

    /// Keeps the newest `max` entries (at least 1), oldest first.
    pub fn bound(&mut self, max: usize) {
        let max = max.max(1);
        let mut all = self.entries();
        if all.len() > max {
            all.drain(..all.len() - max);
        }
        self.entries = all;
        self.next = 0;
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One piece of device memory a stream pool holds: what releasing it records.
type Piece = (DevPtr, u64, Action);

impl DevicePool {
    /// The recorded entries of this device, oldest first.
    pub fn history(&self) -> Vec<TraceEntry> {
        self.state.lock().history.entries()
    }

    /// Forgets this device's entries.
    pub fn clear_history(&self) {
        self.state.lock().history.clear();
    }

    /// Keeps at most `max` of this device's entries, the newest.
    pub fn bound_history(&self, max: usize) {
        self.state.lock().history.bound(max);
    }

    /// Records a block handed out by stream pool `idx`, after the segment entry for the
    /// device memory that serving it needed (`fresh`).
    #[inline]
    pub(super) fn trace_alloc(
        &self,
        st: &mut State,
        idx: usize,
        ptr: DevPtr,
        requested: u64,
        fresh: bool,
    ) {
        if recording() {
            self.trace_alloc_slow(st, idx, ptr, requested, fresh);
        }
    }

    #[cold]
    #[inline(never)]
    fn trace_alloc_slow(
        &self,
        st: &mut State,
        idx: usize,
        ptr: DevPtr,
        requested: u64,
        fresh: bool,
    ) {
        let pool = &st.streams[idx];
        let stream = pool.stream;
        let ring = &mut st.history;
        if fresh {
            if let Some(seg) = &pool.seg {
                // One entry per contiguous run of newly mapped pages.
                let page = seg.page as u64;
                let mut runs: Vec<(u64, u64)> = Vec::new();
                for &i in &seg.last_mapped {
                    let a = seg.base + i as u64 * page;
                    match runs.last_mut() {
                        Some((s, n)) if *s + *n == a => *n += page,
                        _ => runs.push((a, page)),
                    }
                }
                for (a, n) in runs {
                    ring.record(Action::SegmentMap, a, n, stream);
                }
            } else if let Some(&size) = pool.segments.get(&ptr) {
                ring.record(Action::SegmentAlloc, ptr, size, stream);
            }
        }
        ring.record(Action::Alloc, ptr, requested, stream);
    }

    /// Records a free of the block at `ptr` of stream pool `stream_idx`: requested
    /// (`completed` false) or done.
    #[inline]
    pub(super) fn trace_free(
        st: &mut State,
        ptr: DevPtr,
        requested: u64,
        stream_idx: u32,
        completed: bool,
    ) {
        if recording() {
            let stream = st.streams.get(stream_idx as usize).map_or(0, |p| p.stream);
            let action = if completed {
                Action::FreeCompleted
            } else {
                Action::FreeRequested
            };
            st.history.record(action, ptr, requested, stream);
        }
    }

    /// Records an out-of-memory for a request of `size` bytes.
    #[inline]
    pub(super) fn trace_oom(st: &mut State, size: usize) {
        let free = st.stats.free_memory;
        st.history.record(Action::Oom, free, size as u64, 0);
    }

    /// The device memory `pool` holds, when recording: to compare with what is left
    /// after a release ([`Self::trace_released`]). Merges the blocks kept aside for reuse
    /// back first, as the release itself does first, so that the pages under them are
    /// listed too.
    pub(super) fn pieces_if_recording(&self, pool: &mut StreamPool) -> Option<Vec<Piece>> {
        recording().then(|| {
            pool.flush_recent();
            self.pieces(pool)
        })
    }

    /// cuMemAlloc segments, and mapped pages of the expandable segment that lie in free
    /// ranges (pages under used blocks are never released), sorted by address.
    fn pieces(&self, pool: &StreamPool) -> Vec<Piece> {
        let mut out = Vec::new();
        if let Some(seg) = &pool.seg {
            let page = seg.page as u64;
            for (a, s) in pool.large.free_ranges() {
                let mut p = a.div_ceil(page) * page;
                while p + page <= a + s {
                    if seg.covers(p, page) {
                        out.push((p, page, Action::SegmentUnmap));
                    }
                    p += page;
                }
            }
        }
        out.extend(
            pool.segments
                .iter()
                .map(|(&a, &s)| (a, s, Action::SegmentFree)),
        );
        out.sort_unstable();
        out
    }

    /// Records what `pool` released since `before` was taken: a `segment_free` per
    /// segment or chunk, a `segment_unmap` per contiguous run of unmapped pages.
    pub(super) fn trace_released(&self, ring: &mut Ring, pool: &StreamPool, before: Vec<Piece>) {
        let after = self.pieces(pool);
        let mut run: Option<(u64, u64)> = None;
        let stream = pool.stream;
        for (a, s, action) in before {
            if after.binary_search(&(a, s, action)).is_ok() {
                continue;
            }
            if action == Action::SegmentFree {
                ring.record(action, a, s, stream);
                continue;
            }
            match &mut run {
                Some((start, n)) if *start + *n == a => *n += s,
                _ => {
                    if let Some((start, n)) = run.take() {
                        ring.record(Action::SegmentUnmap, start, n, stream);
                    }
                    run = Some((a, s));
                }
            }
        }
        if let Some((start, n)) = run {
            ring.record(Action::SegmentUnmap, start, n, stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(r: &mut Ring, addr: u64) {
        r.push(Action::Alloc, addr, 1, 0);
    }

    #[test]
    fn ring_keeps_the_newest_in_order() {
        // The globals are not touched: push() reads MAX_ENTRIES, so bound() is used
        // to model smaller limits here; tests/snapshot.rs covers the switch.
        let mut r = Ring::default();
        for a in 0..5 {
            push(&mut r, a);
        }
        r.bound(3);
        assert_eq!(
            r.entries().iter().map(|e| e.addr).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        r.clear();
        assert!(r.is_empty());
    }
}
