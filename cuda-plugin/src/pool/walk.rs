//! The pool's segments and blocks, listed as PyTorch's memory snapshot lists its own
//! (`SegmentInfo` / `BlockInfo` of c10/cuda/CUDACachingAllocator).
//!
//! What a segment is here:
//! - cuMemAlloc mode: one cuMemAlloc segment; those of 2 MiB, made for blocks up to
//!   1 MiB, are listed as PyTorch's small pool (`segment_type` "small");
//! - expandable segments: one contiguous run of mapped memory of the stream's
//!   reservation (as PyTorch reports an expandable segment: one entry per mapped range),
//!   small and large blocks alike, since they share its pages; listed as "large".
//!
//! Blocks tile their segment in address order: the blocks handed out (`active_allocated`),
//! the blocks freed but waiting on `record_stream` events or on the end of a CUDA graph
//! capture (`active_pending_free`), and the rest (`inactive`), adjacent inactive pieces
//! merged. The sizes add up: a segment's `total_size` is the sum of its blocks, and the
//! segments of a device add up to its reserved bytes (less pages whose unmap failed,
//! which no pool holds any more).

use super::graph_pool::Owner;
use super::stream_pool::StreamPool;
use super::stream_pool::SMALL_BUFFER;
use super::DevicePool;
use std::collections::BTreeMap;

/// A block's state, by PyTorch's snapshot name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockState {
    ActiveAllocated,
    ActivePendingFree,
    Inactive,
}

impl BlockState {
    pub fn name(self) -> &'static str {
        match self {
            BlockState::ActiveAllocated => "active_allocated",
            BlockState::ActivePendingFree => "active_pending_free",
            BlockState::Inactive => "inactive",
        }
    }
}

/// One block of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub address: u64,
    pub size: u64,
    /// Bytes asked for (0 for an inactive block).
    pub requested_size: u64,
    pub state: BlockState,
}

/// One segment and its blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub device: i32,
    pub address: u64,
    pub total_size: u64,
    /// The stream (`cudaStream_t` value) whose pool holds it.
    pub stream: u64,
    /// Large pool, or small pool (a 2 MiB cuMemAlloc segment for blocks up to 1 MiB).
    pub large: bool,
    pub expandable: bool,
    /// The CUDA graph private pool owning it, (0, 0) for the general pool.
    pub pool_id: (u64, u64),
    pub blocks: Vec<BlockInfo>,
}

impl SegmentInfo {
    /// Bytes of `active_allocated` blocks.
    pub fn allocated_size(&self) -> u64 {
        self.sum(|b| b.state == BlockState::ActiveAllocated, |b| b.size)
    }

    /// Bytes of active blocks (allocated or pending free).
    pub fn active_size(&self) -> u64 {
        self.sum(|b| b.state != BlockState::Inactive, |b| b.size)
    }

    /// Requested bytes of active blocks.
    pub fn requested_size(&self) -> u64 {
        self.sum(|b| b.state != BlockState::Inactive, |b| b.requested_size)
    }

    fn sum(&self, keep: impl Fn(&BlockInfo) -> bool, f: impl Fn(&BlockInfo) -> u64) -> u64 {
        self.blocks.iter().filter(|b| keep(b)).map(f).sum()
    }

    /// Appends a block at the segment's end, merging it into an inactive predecessor.
    fn push(&mut self, size: u64, requested_size: u64, state: BlockState) {
        if size == 0 {
            return;
        }
        let address = self.address + self.total_size;
        self.total_size += size;
        if let Some(last) = self.blocks.last_mut() {
            if state == BlockState::Inactive && last.state == BlockState::Inactive {
                last.size += size;
                return;
            }
        }
        self.blocks.push(BlockInfo {
            address,
            size,
            requested_size,
            state,
        });
    }
}

/// Handed-out blocks by address: (size, requested, state).
type Owned = BTreeMap<u64, (u64, u64, BlockState)>;

impl DevicePool {
    /// Every segment of this device with its blocks, by stream pool, then address.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let st = self.state.lock();
        let mut owned = Owned::new();
        for (&p, l) in &st.live {
            owned.insert(p, (l.size, l.requested, BlockState::ActiveAllocated));
        }
        for b in st.pending.iter() {
            let l = &b.live;
            owned.insert(b.ptr, (l.size, l.requested, BlockState::ActivePendingFree));
        }
        for (p, l) in &st.graph.deferred {
            owned.insert(*p, (l.size, l.requested, BlockState::ActivePendingFree));
        }
        let mut out = Vec::new();
        for pool in &st.streams {
            let new = |address: u64, large: bool| SegmentInfo {
                device: self.dev,
                address,
                total_size: 0,
                stream: pool.stream,
                large,
                expandable: self.expandable,
                pool_id: match pool.owner {
                    Owner::Private(id) => id,
                    _ => (0, 0),
                },
                blocks: Vec::new(),
            };
            self.large_segments(pool, &owned, &new, &mut out);
        }
        out
    }

    /// The large pool's segments: cuMemAlloc segments, or mapped runs of the reservation.
    fn large_segments(
        &self,
        pool: &StreamPool,
        owned: &Owned,
        new: &impl Fn(u64, bool) -> SegmentInfo,
        out: &mut Vec<SegmentInfo>,
    ) {
        // The segment being built and the arena segment it lies in.
        let mut cur: Option<(SegmentInfo, u64)> = None;
        let add = |out: &mut Vec<SegmentInfo>,
                   cur: &mut Option<(SegmentInfo, u64)>,
                   seg: u64,
                   addr: u64,
                   b: (u64, u64, BlockState)| {
            let continues = cur
                .as_ref()
                .is_some_and(|(c, s)| *s == seg && c.address + c.total_size == addr);
            if !continues {
                out.extend(cur.take().map(|c| c.0));
            }
            let small = pool.seg.is_none() && pool.segments.get(&seg) == Some(&SMALL_BUFFER);
            let (c, _) = cur.get_or_insert_with(|| (new(addr, !small), seg));
            c.push(b.0, b.1, b.2);
        };
        for (a, r) in pool.large.ranges() {
            let block = match owned.get(&a) {
                Some(&o) if !r.free && o.0 == r.size => o,
                // Free, or kept aside for reuse (StreamPool::recent).
                _ => (r.size, 0, BlockState::Inactive),
            };
            let Some(seg) = pool.seg.as_ref().filter(|_| r.free) else {
                // A cuMemAlloc range, or a used range of the reservation (always mapped).
                add(out, &mut cur, r.seg, a, block);
                continue;
            };
            // A free range of the reservation: its mapped pieces, page by page.
            let page = seg.page as u64;
            let mut p = a;
            while p < a + r.size {
                let end = ((p / page + 1) * page).min(a + r.size);
                if seg.covers(p / page * page, page) {
                    add(out, &mut cur, r.seg, p, (end - p, 0, BlockState::Inactive));
                } else if let Some((c, _)) = cur.take() {
                    out.push(c);
                }
                p = end;
            }
        }
        out.extend(cur.map(|c| c.0));
    }
}
