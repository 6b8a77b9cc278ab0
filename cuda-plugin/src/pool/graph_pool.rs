//! CUDA graphs: private pools, the way PyTorch's caching allocator keeps them.
//!
//! A captured graph bakes in the addresses its kernels use, and every replay writes there
//! again. So between `begin_allocate_to_pool(id, filter)` and `end_allocate_to_pool(id)`,
//! allocations on streams the filter accepts (PyTorch's filter: "this stream is capturing
//! into this graph", or "this thread" for cudagraph trees' warm-up) come from the private
//! pool `id`; other streams and threads keep using the general pool. A private block freed
//! at any time goes back to its private pool, never to the general pool, so an ordinary
//! tensor can never take memory a replay writes. Pools are shared by passing the same id
//! again (`torch.cuda.graph(pool=...)`, `make_graphed_callables`): each begin counts one
//! use, each `release_pool` (the graph destroyed) one less, as PyTorch's `PrivatePool`
//! `use_count`. At zero the pool's memory is freed once its last block is freed.
//!
//! A private pool is a set of stream pools tagged [`Owner::Private`] in the device's list
//! (one per stream that allocated into it), so a block's stream index keeps naming its
//! pool. When a released pool empties, its stream pools give all their memory back and
//! become [`Owner::Spare`], ready for the next private pool on the same stream (only their
//! address-space reservation stays).
//!
//! Nothing illegal during stream capture happens while a capture is underway on the
//! device (PyTorch's rule, per device): no event query, event wait or synchronize (pending
//! record_stream frees wait until the last capture ends; the out-of-memory path skips its
//! release-and-retry steps, which synchronize, and fails at once; empty_cache does nothing
//! then); a block used on other streams and freed during capture gets its events recorded
//! only after the capture (an event recorded during capture may not be queried). New
//! device memory is still mapped mid-capture (cuMemCreate + cuMemMap + cuMemSetAccess, or
//! cuMemAlloc, which are not stream-ordered and so are not captured): the calls run with the
//! thread's capture mode exchanged to relaxed, as PyTorch's `cudaMallocMaybeCapturing` does
//! around cudaMalloc, because a global-mode capture forbids them otherwise. That memory
//! belongs to the private pool and is not unmapped before `release_pool`, so every replay
//! finds it.

use super::live::Live;
use super::{AllocError, DevicePool, State};
use crate::driver::{DevPtr, Driver, StreamId};

pub use super::graph_filter::{Filter, FilterCall, FilterDrop};

/// PyTorch's `MempoolId_t` (`std::pair<unsigned long long, unsigned long long>`).
pub type MempoolId = (u64, u64);

/// Whose memory a stream pool holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The general pool of its stream.
    General,
    /// A graph's private pool.
    Private(MempoolId),
    /// A private pool's stream pool after the pool was freed: no device memory, waiting
    /// to serve another private pool on the same stream.
    Spare,
}

/// A capture underway.
pub struct Capture {
    pub id: MempoolId,
    pub filter: Filter,
}

/// A private pool's bookkeeping (its memory is in its stream pools).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrivatePool {
    pub id: MempoolId,
    /// Captures begun into it minus releases: while above zero its memory stays reserved
    /// for the graphs, free blocks included.
    pub use_count: u32,
    /// Blocks handed out from it and not yet back in it (live or pending).
    pub blocks: u64,
}

/// Why a graph-pool call was refused (PyTorch raises for the same misuse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraphError {
    AlreadyCapturing(MempoolId),
    NotCapturing(MempoolId),
    UnknownPool(MempoolId),
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GraphError::AlreadyCapturing((a, b)) => write!(
                f,
                "poolside: beginAllocateToPool: already allocating to pool ({a}, {b})"
            ),
            GraphError::NotCapturing((a, b)) => write!(
                f,
                "poolside: endAllocateToPool: not allocating to pool ({a}, {b})"
            ),
            GraphError::UnknownPool((a, b)) => {
                write!(f, "poolside: releasePool: no pool ({a}, {b}) in use")
            }
        }
    }
}

/// The graph state of one device (inside its pool lock).
#[derive(Default)]
pub struct GraphPools {
    /// Captures underway, oldest first.
    pub captures: Vec<Capture>,
    /// Private pools that hold a use or a block.
    pub pools: Vec<PrivatePool>,
    /// Some released pool has no block left: its memory can be freed (once no capture is
    /// underway).
    pub freeable: bool,
    /// Blocks used on other streams (record_stream) and freed during a capture: their
    /// events are recorded once no capture is underway, as PyTorch defers them (an event
    /// recorded during capture may not be queried). Counted as active, no longer allocated.
    pub deferred: Vec<(DevPtr, Live)>,
}

impl GraphPools {
    /// Whether a capture is underway on the device: no event query, wait or synchronize.
    #[inline]
    pub fn capturing(&self) -> bool {
        !self.captures.is_empty()
    }

    fn find(&mut self, id: MempoolId) -> Option<&mut PrivatePool> {
        self.pools.iter_mut().find(|p| p.id == id)
    }

    /// Starts routing to pool `id` (made on first use; its use count goes up).
    pub fn begin(&mut self, id: MempoolId, filter: Filter) -> Result<(), (GraphError, Filter)> {
        if self.captures.iter().any(|c| c.id == id) {
            return Err((GraphError::AlreadyCapturing(id), filter));
        }
        match self.find(id) {
            Some(p) => p.use_count += 1,
            None => self.pools.push(PrivatePool {
                id,
                use_count: 1,
                blocks: 0,
            }),
        }
        self.captures.push(Capture { id, filter });
        Ok(())
    }

    /// Stops routing to pool `id`; returns its filter (dropped by the caller, outside
    /// anything that must not call C++).
    pub fn end(&mut self, id: MempoolId) -> Result<Filter, GraphError> {
        let i = self
            .captures
            .iter()
            .position(|c| c.id == id)
            .ok_or(GraphError::NotCapturing(id))?;
        Ok(self.captures.remove(i).filter)
    }

    /// One graph using pool `id` is gone.
    pub fn release(&mut self, id: MempoolId) -> Result<(), GraphError> {
        let p = self
            .find(id)
            .filter(|p| p.use_count > 0)
            .ok_or(GraphError::UnknownPool(id))?;
        p.use_count -= 1;
        if p.use_count == 0 && p.blocks == 0 {
            self.freeable = true;
        }
        Ok(())
    }

    /// The pool the allocation on `stream` must come from: the newest capture whose
    /// filter accepts it, or None (the general pool).
    pub fn route(&self, stream: StreamId) -> Result<Option<MempoolId>, String> {
        for c in self.captures.iter().rev() {
            if c.filter.accepts(stream).map_err(|e| {
                format!("poolside: the CUDA graph capture's stream filter failed: {e}")
            })? {
                return Ok(Some(c.id));
            }
        }
        Ok(None)
    }

    /// A block was handed out from a stream pool owned by `owner`.
    #[inline]
    pub fn on_alloc(&mut self, owner: Owner) {
        if let Owner::Private(id) = owner {
            if let Some(p) = self.find(id) {
                p.blocks += 1;
            }
        }
    }

    /// A block went back to a stream pool owned by `owner`.
    #[inline]
    pub fn on_return(&mut self, owner: Owner) {
        if let Owner::Private(id) = owner {
            if let Some(p) = self.find(id) {
                p.blocks -= 1;
                if p.blocks == 0 && p.use_count == 0 {
                    self.freeable = true;
                }
            }
        }
    }

    /// Whether a stream pool's free memory must stay reserved (its private pool is still
    /// used by a graph): the out-of-memory path and empty_cache leave it alone.
    pub fn keeps(&self, owner: Owner) -> bool {
        match owner {
            Owner::Private(id) => self.pools.iter().any(|p| p.id == id && p.use_count > 0),
            Owner::General | Owner::Spare => false,
        }
    }

    /// Takes out the pools that are released and empty (their memory is to be freed).
    pub fn take_freeable(&mut self) -> Vec<MempoolId> {
        self.freeable = false;
        let done: Vec<MempoolId> = self
            .pools
            .iter()
            .filter(|p| p.use_count == 0 && p.blocks == 0)
            .map(|p| p.id)
            .collect();
        self.pools.retain(|p| p.use_count > 0 || p.blocks > 0);
        done
    }
}

/// Exchanges the calling thread's stream-capture mode for relaxed while it lives (see the
/// module documentation), and puts the previous mode back when dropped.
pub struct RelaxedCapture<'a> {
    driver: &'a dyn Driver,
    prev: Option<u32>,
}

impl<'a> RelaxedCapture<'a> {
    pub fn new(driver: &'a dyn Driver) -> RelaxedCapture<'a> {
        RelaxedCapture {
            driver,
            prev: driver.relax_capture_mode(),
        }
    }
}

impl Drop for RelaxedCapture<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.prev {
            self.driver.restore_capture_mode(m);
        }
    }
}

impl DevicePool {
    /// PyTorch's beginAllocateToPool: allocations on streams `filter` accepts come from
    /// private pool `id` until `end_allocate_to_pool(id)`. A refusal (a capture into `id`
    /// is already underway) gives the filter back.
    pub fn begin_allocate_to_pool(
        &self,
        id: MempoolId,
        filter: Filter,
    ) -> Result<(), (String, Filter)> {
        let mut st = self.state.lock();
        st.graph
            .begin(id, filter)
            .map_err(|(e, f)| (e.to_string(), f))?;
        // A pool used again keeps its free memory: no longer cached (statistics).
        Self::publish_gauges(&mut st);
        Ok(())
    }

    /// PyTorch's endAllocateToPool: the capture into `id` is over. Its pool keeps its
    /// memory for the graph. After the last capture, deferred frees get their events and
    /// released pools are freed.
    pub fn end_allocate_to_pool(&self, id: MempoolId) -> Result<(), String> {
        let filter = {
            let mut st = self.state.lock();
            let filter = st.graph.end(id).map_err(|e| e.to_string())?;
            if !st.graph.capturing() {
                let deferred = std::mem::take(&mut st.graph.deferred);
                let any = !deferred.is_empty();
                for (ptr, live) in deferred {
                    self.free_used_elsewhere(&mut st, ptr, live);
                }
                self.free_released_pools(&mut st);
                if any {
                    self.publish(&mut st);
                }
            }
            filter
        };
        // The filter's C++ destructor runs outside the pool lock.
        drop(filter);
        Ok(())
    }

    /// PyTorch's releasePool: one graph using pool `id` is gone. After the last, the
    /// pool's memory is freed once its last block is freed (now, if it has none).
    pub fn release_pool(&self, id: MempoolId) -> Result<(), String> {
        let mut st = self.state.lock();
        st.graph.release(id).map_err(|e| e.to_string())?;
        self.free_released_pools(&mut st);
        // A pool no graph uses gives its free memory back on demand: cached now.
        Self::publish_gauges(&mut st);
        Ok(())
    }

    /// The private pool of the live block at `ptr`, if it came from one.
    pub fn private_pool_of(&self, ptr: DevPtr) -> Option<MempoolId> {
        let st = self.state.lock();
        let l = st.live.get(&ptr)?;
        match st.streams[l.stream as usize].owner {
            Owner::Private(id) => Some(id),
            _ => None,
        }
    }

    /// The private pools that hold a use or a block: (id, use count, blocks).
    pub fn private_pools(&self) -> Vec<PrivatePool> {
        self.state.lock().graph.pools.clone()
    }

    /// Whether a capture is underway on this device.
    pub fn capturing(&self) -> bool {
        self.state.lock().graph.capturing()
    }

    /// Checks that each private pool's block count is the number of its blocks (live,
    /// pending or deferred) and that no stream pool of a pool that is gone holds memory
    /// as a private pool.
    pub(super) fn check_graph(&self, st: &State) -> Result<(), String> {
        let owner_of = |l: &Live| st.streams[l.stream as usize].owner;
        let owners = st
            .live
            .values()
            .chain(st.pending.iter().map(|p| &p.live))
            .chain(st.graph.deferred.iter().map(|d| &d.1))
            .map(owner_of);
        let mut counts: Vec<(MempoolId, u64)> = Vec::new();
        for o in owners {
            if let Owner::Private(id) = o {
                match counts.iter_mut().find(|c| c.0 == id) {
                    Some(c) => c.1 += 1,
                    None => counts.push((id, 1)),
                }
            }
        }
        for p in &st.graph.pools {
            let n = counts.iter().find(|c| c.0 == p.id).map_or(0, |c| c.1);
            if n != p.blocks {
                return Err(format!(
                    "private pool {:?} counts {} blocks, holds {n}",
                    p.id, p.blocks
                ));
            }
        }
        for sp in st.streams.iter() {
            if let Owner::Private(id) = sp.owner {
                if !st.graph.pools.iter().any(|p| p.id == id) {
                    return Err(format!(
                        "stream pool of freed private pool {id:?} not spare"
                    ));
                }
            }
        }
        match counts
            .iter()
            .find(|c| !st.graph.pools.iter().any(|p| p.id == c.0))
        {
            Some(c) => Err(format!("{} blocks of unknown private pool {:?}", c.1, c.0)),
            None => Ok(()),
        }
    }

    /// While a capture is underway: the index of the stream pool serving `stream`, the
    /// private pool's when a capture's filter accepts it.
    pub(super) fn capture_index(
        &self,
        st: &mut State,
        stream: StreamId,
    ) -> Result<usize, AllocError> {
        let Some(id) = st.graph.route(stream).map_err(AllocError::Driver)? else {
            return self
                .stream_index(st, stream)
                .map_err(|e| AllocError::Driver(format!("poolside: {e}")));
        };
        let owner = Owner::Private(id);
        if let Some(i) = st
            .streams
            .iter()
            .position(|p| p.stream == stream && p.owner == owner)
        {
            return Ok(i);
        }
        let i = match st
            .streams
            .iter()
            .position(|p| p.stream == stream && p.owner == Owner::Spare)
        {
            Some(i) => i,
            None => self
                .add_stream(st, stream)
                .map_err(|e| AllocError::Driver(format!("poolside: {e}")))?,
        };
        st.streams[i].owner = owner;
        Ok(i)
    }

    /// Frees the memory of released private pools that have no block left, unless a
    /// capture is underway (then the end of the last capture does it). Replays of their
    /// graphs may still run: a device synchronize first, as `release_cached` does; if it
    /// fails, the pools wait for the next try.
    pub(super) fn free_released_pools(&self, st: &mut State) {
        if !st.graph.freeable || st.graph.capturing() {
            return;
        }
        if self.driver.synchronize(self.dev).is_err() {
            return;
        }
        let ids = st.graph.take_freeable();
        let budget = st.budget.clone();
        for p in st.streams.iter_mut() {
            let Owner::Private(id) = p.owner else {
                continue;
            };
            if ids.contains(&id) {
                let before = self.pieces_if_recording(p);
                let (_, calls, _) =
                    p.release_cached(self.driver.as_ref(), self.dev, &budget, u64::MAX);
                if let Some(before) = before {
                    self.trace_released(&mut st.history, p, before);
                }
                st.large_frees += calls;
                // Memory a failed driver call kept stays counted in this stream pool; as a
                // spare it is released by the next release_cached.
                p.owner = Owner::Spare;
            }
        }
        self.publish(st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::{c_char, c_int, c_void};

    #[test]
    fn a_throwing_filter_reports_its_message() {
        unsafe extern "C" fn call(
            _: *mut c_void,
            _: *mut c_void,
            e: *mut c_char,
            n: usize,
        ) -> c_int {
            let msg = b"cudaStreamGetCaptureInfo failed\0";
            // SAFETY: e has n >= msg.len() bytes (Filter::accepts passes 256).
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), e as *mut u8, msg.len().min(n)) };
            -1
        }
        unsafe extern "C" fn nothing(_: *mut c_void) {}
        // SAFETY: neither function unwinds; the context is unused.
        let f = unsafe { Filter::from_c(call, std::ptr::null_mut(), nothing) };
        assert_eq!(f.accepts(1), Err("cudaStreamGetCaptureInfo failed".into()));
        let mut g = GraphPools::default();
        assert!(g.begin((1, 0), f).is_ok());
        let e = g.route(1).unwrap_err();
        assert!(
            e.contains("stream filter failed: cudaStreamGetCaptureInfo failed"),
            "{e}"
        );
    }

    #[test]
    fn use_counts_follow_begin_and_release_and_the_newest_capture_routes() {
        let mut g = GraphPools::default();
        g.begin((1, 0), Filter::new(|s| s == 5)).ok().unwrap();
        assert!(matches!(
            g.begin((1, 0), Filter::new(|_| true)),
            Err((GraphError::AlreadyCapturing((1, 0)), _))
        ));
        g.begin((2, 0), Filter::new(|s| s == 5 || s == 6))
            .ok()
            .unwrap();
        assert_eq!(g.route(5), Ok(Some((2, 0))));
        assert_eq!(g.route(6), Ok(Some((2, 0))));
        assert_eq!(g.route(9), Ok(None));
        drop(g.end((2, 0)).unwrap());
        assert_eq!(g.route(5), Ok(Some((1, 0))));
        assert_eq!(g.route(6), Ok(None));
        assert!(matches!(
            g.end((2, 0)),
            Err(GraphError::NotCapturing((2, 0)))
        ));
        drop(g.end((1, 0)).unwrap());
        assert!(!g.capturing());
        // Shared: pool 1 captured again.
        g.begin((1, 0), Filter::new(|_| true)).ok().unwrap();
        drop(g.end((1, 0)).unwrap());
        assert_eq!(
            g.pools.iter().find(|p| p.id == (1, 0)).unwrap().use_count,
            2
        );
        g.on_alloc(Owner::Private((1, 0)));
        g.release((1, 0)).unwrap();
        g.release((1, 0)).unwrap();
        assert!(g.keeps(Owner::Private((2, 0))));
        assert!(!g.keeps(Owner::Private((1, 0))));
        assert!(!g.freeable, "pool 1 still has a block");
        assert_eq!(g.release((1, 0)), Err(GraphError::UnknownPool((1, 0))));
        g.on_return(Owner::Private((1, 0)));
        assert!(g.freeable);
        g.release((2, 0)).unwrap();
        let mut done = g.take_freeable();
        done.sort();
        assert_eq!(done, vec![(1, 0), (2, 0)]);
        assert!(g.pools.is_empty());
    }
}
