//! One pool per device, thread-safe (one lock per device).
//!
//! - Every request goes to the stream's arena (best fit in its expandable segment, or in
//!   cuMemAlloc segments): requests up to 1 MiB rounded to 512 B, as PyTorch's small
//!   pool rounds them, so small blocks of every size share device pages; larger ones
//!   rounded as PyTorch rounds them.
//! - A block freed on its own stream is reusable on that stream at once; a block that
//!   `record_stream` marked as used elsewhere waits for events on those streams.
//! - When memory runs out: release cached memory that can serve the request (after a
//!   device synchronize), retry; release all cached memory (waiting for pending events),
//!   retry; then fail with PyTorch's out-of-memory message. Retries and OOMs are counted.
//! - CUDA graphs ([`graph_pool`]): while a capture is underway, allocations its filter
//!   accepts come from the graph's private pool (stream pools tagged with its id), whose
//!   memory nothing else gets until the pool is released and empty; nothing a capture
//!   forbids (event queries, synchronizes) happens meanwhile.
//!
//! Invariants (checked by [`DevicePool::check`]): live blocks never overlap and are
//! 512-byte aligned; every block of an expandable segment lies on mapped pages; the
//! budget's reserved bytes equal the stream pools' mapped pages or segments; the
//! statistics equal the sums over live blocks; each private pool's block count is the
//! number of its blocks.

pub mod arena;
pub mod budget;
pub mod expandable;
pub mod graph_filter;
pub mod graph_pool;
pub mod history;
pub mod live;
pub mod oom;
pub mod pending;
pub mod stats;
pub mod stream_pool;
pub mod walk;

use crate::config::PluginConfig;
use crate::driver::{DevPtr, Driver, DriverError, StreamId};
use budget::Budget;
use expandable::MapError;
use graph_pool::{GraphPools, Owner};
use live::{Live, LiveMap};
use parking_lot::Mutex;
use pending::PendingFrees;
use poolside::stats::layout::DeviceSection;
use std::sync::Arc;
use stream_pool::StreamPool;

/// Why an allocation failed. The pool is consistent in every case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// Out of device memory (or over the memory fraction): PyTorch's message.
    OutOfMemory(String),
    /// A driver call failed for another reason.
    Driver(String),
}

impl AllocError {
    pub fn message(&self) -> &str {
        match self {
            AllocError::OutOfMemory(m) | AllocError::Driver(m) => m,
        }
    }
}

/// Why a free, record_stream or lookup was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownPointer {
    NotAllocated,
}

/// Inside-the-lock outcome of one attempt.
enum Attempt {
    Ok(DevPtr),
    NoMemory,
    Failed(DriverError),
}

struct State {
    budget: Arc<Budget>,
    streams: Vec<StreamPool>,
    live: LiveMap,
    pending: PendingFrees,
    stats: DeviceSection,
    /// Device calls that allocated or freed device memory.
    large_allocs: u64,
    large_frees: u64,
    /// Frees of addresses the pool never handed out.
    invalid_frees: u64,
    /// CUDA graphs: captures underway and private pools.
    graph: GraphPools,
    /// Trace entries for PyTorch's memory snapshot (history.rs).
    history: history::Ring,
    /// The driver's free memory as last asked (stats.rs).
    free_probe: stats::FreeProbe,
}

/// The pool of one device.
pub struct DevicePool {
    pub dev: i32,
    driver: Arc<dyn Driver>,
    cfg: PluginConfig,
    expandable: bool,
    granularity: usize,
    /// Address space reserved per stream (expandable mode).
    reserve_bytes: usize,
    total: u64,
    state: Mutex<State>,
}

impl DevicePool {
    /// A pool for device `dev`. Uses cuMemAlloc segments when expandable segments are
    /// off or the device lacks virtual memory management.
    pub fn new(
        driver: Arc<dyn Driver>,
        dev: i32,
        cfg: &PluginConfig,
    ) -> Result<DevicePool, String> {
        let count = driver.device_count().map_err(|e| e.to_string())?;
        if dev < 0 || dev >= count {
            return Err(format!(
                "invalid device {dev}: {count} CUDA device(s) visible"
            ));
        }
        driver.open_device(dev).map_err(|e| e.to_string())?;
        let (free, total) = driver.mem_info(dev).map_err(|e| e.to_string())?;
        let expandable = cfg.expandable_segments && driver.vmm_supported(dev);
        let granularity = if expandable {
            driver.granularity(dev).map_err(|e| e.to_string())?
        } else {
            2 << 20
        };
        // PyTorch reserves about 1.125x the device per stream segment.
        let reserve_bytes = ((total + total / 8) as usize).div_ceil(granularity) * granularity;
        let mut stats = stats::empty(dev);
        stats.total_memory = total;
        stats.free_memory = free;
        let mut free_probe = stats::FreeProbe::default();
        free_probe.answer(free, 0);
        let budget = Arc::new(Budget::default());
        if cfg.memory_fraction > 0.0 {
            let l = (cfg.memory_fraction * total as f64) as u64;
            budget.set_limit(l);
            stats.limit_bytes = l;
        }
        stats::publish(&stats);
        Ok(DevicePool {
            dev,
            driver,
            cfg: cfg.clone(),
            expandable,
            granularity,
            reserve_bytes,
            total,
            state: Mutex::new(State {
                budget,
                streams: Vec::new(),
                live: LiveMap::default(),
                pending: PendingFrees::default(),
                stats,
                large_allocs: 0,
                large_frees: 0,
                invalid_frees: 0,
                graph: GraphPools::default(),
                history: history::Ring::default(),
                free_probe,
            }),
        })
    }

    /// Whether large blocks come from expandable segments.
    pub fn is_expandable(&self) -> bool {
        self.expandable
    }

    /// Allocates `size` bytes for use on `stream`. Size 0 gives address 0.
    pub fn malloc(&self, size: usize, stream: StreamId) -> Result<DevPtr, AllocError> {
        if size == 0 {
            return Ok(0);
        }
        let mut st = self.state.lock();
        // While a capture is underway, nothing that capture forbids (graph_pool.rs).
        let capturing = st.graph.capturing();
        let _relaxed = capturing.then(|| graph_pool::RelaxedCapture::new(self.driver.as_ref()));
        if !st.pending.is_empty() && !capturing {
            self.process_pending(&mut st, false);
        }
        if self.cfg.gc_threshold > 0.0 && st.budget.limit() > 0 && !capturing {
            self.collect_garbage(&mut st);
        }
        let idx = if capturing {
            self.capture_index(&mut st, stream)?
        } else {
            match self.stream_index(&mut st, stream) {
                Ok(i) => i,
                Err(e) => return Err(AllocError::Driver(format!("poolside: {e}"))),
            }
        };
        let rounded = if size as u64 <= stream_pool::SMALL_MAX {
            size.div_ceil(512) as u64 * 512
        } else {
            match self.cfg.round_size(size) {
                // A block larger than the device can never be served: refuse it before
                // it reaches any size arithmetic below, and without emptying the cache
                // for nothing. Everything after this line works on sizes <= total.
                Some(r) if r as u64 <= self.total => r as u64,
                _ => return Err(self.out_of_memory(&mut st, size)),
            }
        };
        let misses_before = st.stats.misses;
        for step in 0..3 {
            match self.attempt(&mut st, idx, size, rounded) {
                Attempt::Ok(p) => {
                    if step == 0 && st.stats.misses == misses_before {
                        // Served from the cache: only the block gauges changed.
                        Self::publish_gauges(&mut st);
                    } else {
                        self.publish(&mut st);
                    }
                    return Ok(p);
                }
                Attempt::Failed(e) => {
                    self.publish(&mut st);
                    return Err(AllocError::Driver(format!(
                        "poolside: CUDA error while allocating {}: {e}",
                        oom::format_size(size as u64)
                    )));
                }
                // Releasing cached memory synchronizes: not during a capture.
                Attempt::NoMemory if step < 2 && !capturing => {
                    st.stats.alloc_retries += 1;
                    if step == 0 {
                        // 1: release cached memory that can serve the request.
                        self.release_cached(&mut st, rounded.max(self.granularity as u64));
                    } else {
                        // 2: wait for every pending free, then release everything.
                        self.process_pending(&mut st, true);
                        self.release_cached(&mut st, u64::MAX);
                    }
                }
                Attempt::NoMemory => break,
            }
        }
        Err(self.out_of_memory(&mut st, size))
    }

    /// Counts an out-of-memory, publishes, and builds PyTorch's message for it.
    fn out_of_memory(&self, st: &mut State, size: usize) -> AllocError {
        st.stats.ooms += 1;
        self.refresh_free_memory(st, true);
        Self::trace_oom(st, size);
        self.publish(st);
        let s = &st.stats;
        AllocError::OutOfMemory(oom::message(&oom::OomFacts {
            device: self.dev,
            requested: size as u64,
            total: self.total,
            free: s.free_memory,
            allocated: s.allocated_bytes.current,
            reserved: s.reserved_bytes.current,
            limit: st.budget.limit(),
        }))
    }

    /// One try at serving the request from stream pool `idx`.
    fn attempt(&self, st: &mut State, idx: usize, size: usize, rounded: u64) -> Attempt {
        let pool = &mut st.streams[idx];
        let mapped_before = pool.seg.as_ref().map_or(0, |s| s.mapped_pages);
        let (ptr, block, fresh) = match pool.alloc_large(
            self.driver.as_ref(),
            self.dev,
            &st.budget,
            &self.cfg,
            rounded,
        ) {
            Ok(b) => {
                if b.fresh {
                    st.large_allocs += match &pool.seg {
                        Some(s) => (s.mapped_pages - mapped_before) as u64,
                        None => 1,
                    };
                }
                (b.addr, b.size, b.fresh)
            }
            Err(MapError::Cap) => return Attempt::NoMemory,
            Err(MapError::Driver(e)) if e.is_oom() => return Attempt::NoMemory,
            Err(MapError::Driver(e)) => return Attempt::Failed(e),
        };
        st.live.insert(
            ptr,
            Live {
                requested: size as u64,
                size: block,
                stream: idx as u32,
                uses: Vec::new(),
            },
        );
        st.graph.on_alloc(st.streams[idx].owner);
        self.trace_alloc(st, idx, ptr, size as u64, fresh);
        let s = &mut st.stats;
        stats::add(&mut s.requested_bytes, size as u64);
        stats::add(&mut s.allocated_bytes, block);
        stats::add(&mut s.active_bytes, block);
        stats::add(&mut s.allocations, 1);
        if fresh {
            s.misses += 1;
        } else {
            s.hits += 1;
        }
        Attempt::Ok(ptr)
    }

    /// The index of `stream`'s pool, made on first use.
    #[inline]
    fn stream_index(&self, st: &mut State, stream: StreamId) -> Result<usize, String> {
        if let Some(i) = st
            .streams
            .iter()
            .position(|p| p.stream == stream && p.owner == Owner::General)
        {
            return Ok(i);
        }
        self.add_stream(st, stream)
    }

    /// Makes `stream`'s pool. Out of line: it is made once per stream, and keeping it out
    /// of `malloc`'s stack frame keeps the fast path small.
    #[cold]
    #[inline(never)]
    fn add_stream(&self, st: &mut State, stream: StreamId) -> Result<usize, String> {
        let p = StreamPool::new(
            &self.driver,
            self.dev,
            stream,
            self.expandable,
            self.granularity,
            self.reserve_bytes,
        )?;
        st.streams.push(p);
        Ok(st.streams.len() - 1)
    }

    /// Frees the block at `ptr`. A block used on other streams (record_stream) returns
    /// to the pool once events recorded on them now have completed. An address the pool
    /// did not hand out is counted and refused; nothing changes.
    pub fn free(&self, ptr: DevPtr) -> Result<(), UnknownPointer> {
        if ptr == 0 {
            return Ok(());
        }
        let mut st = self.state.lock();
        let Some(live) = st.live.remove(&ptr) else {
            st.invalid_frees += 1;
            return Err(UnknownPointer::NotAllocated);
        };
        Self::trace_free(&mut st, ptr, live.requested, live.stream, false);
        // As PyTorch: the block leaves allocated (and requested, allocations) at free;
        // it stays active until it is back in its pool (record_stream events pending).
        let s = &mut st.stats;
        s.requested_bytes.current -= live.requested;
        s.allocated_bytes.current -= live.size;
        s.allocations.current -= 1;
        if live.uses.is_empty() {
            self.return_block(&mut st, ptr, &live);
            Self::publish_gauges(&mut st);
            return Ok(());
        }
        if st.graph.capturing() {
            // Events recorded now could not be queried: after the capture (graph_pool.rs).
            st.graph.deferred.push((ptr, live));
            Self::publish_gauges(&mut st);
            return Ok(());
        }
        self.free_used_elsewhere(&mut st, ptr, live);
        self.publish(&mut st);
        Ok(())
    }

    /// Puts a block back into its stream's pool and updates the counters.
    fn return_block(&self, st: &mut State, ptr: DevPtr, live: &Live) {
        Self::trace_free(st, ptr, live.requested, live.stream, true);
        st.streams[live.stream as usize].free_large(ptr, live.size);
        st.stats.active_bytes.current -= live.size;
        st.graph.on_return(st.streams[live.stream as usize].owner);
        if st.graph.freeable {
            self.free_released_pools(st);
        }
    }

    /// Releases cached device memory, after a synchronize (freed blocks may still be in
    /// use by queued work), until `goal` bytes are freed.
    fn release_cached(&self, st: &mut State, goal: u64) -> u64 {
        if self.driver.synchronize(self.dev).is_err() {
            return 0;
        }
        let mut freed = 0;
        let budget = st.budget.clone();
        for pool in st.streams.iter_mut() {
            if freed >= goal {
                break;
            }
            if st.graph.keeps(pool.owner) {
                // A graph's memory, free blocks included: its replays write there.
                continue;
            }
            let before = self.pieces_if_recording(pool);
            let (n, calls, _err) =
                pool.release_cached(self.driver.as_ref(), self.dev, &budget, goal - freed);
            if let Some(before) = before {
                self.trace_released(&mut st.history, pool, before);
            }
            freed += n;
            st.large_frees += calls;
        }
        freed
    }

    /// With a memory fraction and garbage_collection_threshold set: release cached memory
    /// once the pool holds more than the threshold of the allowed memory.
    fn collect_garbage(&self, st: &mut State) {
        let limit = st.budget.limit() as f64;
        let threshold = (self.cfg.gc_threshold * limit) as u64;
        let reserved = st.budget.reserved();
        let cached = reserved.saturating_sub(st.stats.active_bytes.current);
        if reserved > threshold && cached >= self.granularity as u64 {
            self.release_cached(st, reserved - threshold);
        }
    }

    /// The live block containing `ptr`: (start, size).
    fn base_of(st: &State, ptr: DevPtr) -> Option<(DevPtr, u64)> {
        if let Some(l) = st.live.get(&ptr) {
            return Some((ptr, l.size));
        }
        for pool in &st.streams {
            if let Some((a, r)) = pool.large.containing(ptr) {
                if !r.free && st.live.contains_key(&a) {
                    return Some((a, r.size));
                }
            }
        }
        None
    }

    /// The allocation containing `ptr` (PyTorch's getBaseAllocation): its start and size;
    /// for a large block of a cuMemAlloc segment, the whole segment (what IPC needs).
    pub fn base_alloc(&self, ptr: DevPtr) -> Option<(DevPtr, u64)> {
        let st = self.state.lock();
        let (b, s) = Self::base_of(&st, ptr)?;
        for pool in &st.streams {
            if let Some((&sb, &ss)) = pool.segments.range(..=b).next_back() {
                if b < sb + ss {
                    return Some((sb, ss));
                }
            }
        }
        Some((b, s))
    }

    /// torch.cuda.empty_cache: waits for pending frees and returns all cached memory.
    pub fn empty_cache(&self) {
        let mut st = self.state.lock();
        if st.graph.capturing() {
            // Waiting and releasing synchronize, which a capture forbids.
            return;
        }
        self.process_pending(&mut st, true);
        self.release_cached(&mut st, u64::MAX);
        self.refresh_free_memory(&mut st, true);
        self.publish(&mut st);
    }

    /// Caps reserved memory at `fraction` of the device (0 < fraction <= 1).
    pub fn set_memory_fraction(&self, fraction: f64) -> Result<(), String> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(format!(
                "invalid memory fraction {fraction}: expected a number in (0, 1]"
            ));
        }
        let mut st = self.state.lock();
        let l = (fraction * self.total as f64) as u64;
        st.budget.set_limit(l);
        st.stats.limit_bytes = l;
        self.publish(&mut st);
        Ok(())
    }

    /// The statistics torch.cuda.memory_stats reports, and more.
    pub fn stats(&self) -> DeviceSection {
        let st = self.state.lock();
        let mut s = st.stats;
        s.seq = 0;
        s
    }

    /// Peaks back to current values.
    pub fn reset_peak_stats(&self) {
        let mut st = self.state.lock();
        stats::reset_peaks(&mut st.stats);
        self.publish(&mut st);
    }

    /// Frees of addresses never handed out, so far.
    pub fn invalid_frees(&self) -> u64 {
        self.state.lock().invalid_frees
    }

    /// After an operation that changed only blocks (no device memory): refreshes the
    /// derived figures that depend on them and copies the section out.
    #[inline]
    fn publish_gauges(st: &mut State) {
        Self::refresh_figures(st);
        stats::publish_gauges(&st.stats);
    }

    /// Refreshes the derived figures and copies them to the shared stats file.
    fn publish(&self, st: &mut State) {
        let reserved = st.budget.reserved();
        let mut segments = 0;
        let mut private = 0;
        for p in &st.streams {
            if let Owner::Private(_) = p.owner {
                private += p.large_reserved();
            }
            segments += p.segments.len() as u64 + p.seg.is_some() as u64;
        }
        let s = &mut st.stats;
        stats::set(&mut s.reserved_bytes, reserved);
        stats::set(&mut s.segments, segments);
        stats::set(&mut s.private_pool_bytes, private);
        // Every byte reserved is held from the driver, mapped pages or cuMemAlloc
        // segments alike.
        s.mapped_bytes = reserved;
        s.device_allocs = st.large_allocs;
        s.device_frees = st.large_frees;
        self.refresh_free_memory(st, false);
        Self::refresh_figures(st);
        stats::publish(&st.stats);
    }

    /// Checks the invariants listed in the module documentation.
    pub fn check(&self) -> Result<(), String> {
        let st = self.state.lock();
        let mut blocks: Vec<(u64, u64)> = st.live.iter().map(|(&p, l)| (p, l.size)).collect();
        st.pending.check()?;
        blocks.extend(st.pending.iter().map(|p| (p.ptr, p.live.size)));
        blocks.extend(st.graph.deferred.iter().map(|(p, l)| (*p, l.size)));
        blocks.sort_unstable();
        for w in blocks.windows(2) {
            if w[0].0 + w[0].1 > w[1].0 {
                return Err(format!(
                    "blocks {:#x}+{} and {:#x} overlap",
                    w[0].0, w[0].1, w[1].0
                ));
            }
        }
        if let Some(&(p, _)) = blocks.iter().find(|(p, _)| p % 512 != 0) {
            return Err(format!("block {p:#x} is not 512-byte aligned"));
        }
        let mut committed = 0;
        for (i, pool) in st.streams.iter().enumerate() {
            committed += pool.large_reserved();
            for (a, r) in pool.large.ranges() {
                if r.free || pool.recent.iter().any(|&(p, s)| p == a && s == r.size) {
                    continue;
                }
                let Some(l) = st
                    .live
                    .get(&a)
                    .or_else(|| st.pending.iter().find(|p| p.ptr == a).map(|p| &p.live))
                    .or_else(|| st.graph.deferred.iter().find(|d| d.0 == a).map(|d| &d.1))
                else {
                    return Err(format!("used range {a:#x} has no owner"));
                };
                if l.stream as usize != i || l.size != r.size {
                    return Err(format!("range {a:#x} disagrees with its block"));
                }
                if let Some(seg) = &pool.seg {
                    if !seg.covers(a, r.size) {
                        return Err(format!("block {a:#x} lies on unmapped pages"));
                    }
                }
            }
        }
        if committed != st.budget.reserved() {
            return Err(format!(
                "reserved {} but pools hold {committed}",
                st.budget.reserved()
            ));
        }
        let live_bytes: u64 = st.live.values().map(|l| l.size).sum::<u64>();
        if live_bytes != st.stats.allocated_bytes.current {
            return Err(format!(
                "allocated {} but blocks hold {live_bytes}",
                st.stats.allocated_bytes.current
            ));
        }
        let waiting: u64 = st.pending.iter().map(|p| p.live.size).sum::<u64>()
            + st.graph.deferred.iter().map(|d| d.1.size).sum::<u64>();
        if live_bytes + waiting != st.stats.active_bytes.current {
            return Err(format!(
                "active {} but blocks hold {live_bytes} live and {waiting} waiting",
                st.stats.active_bytes.current
            ));
        }
        let req: u64 = st.live.values().map(|l| l.requested).sum::<u64>();
        if req != st.stats.requested_bytes.current {
            return Err("requested bytes disagree".into());
        }
        self.check_figures(&st)?;
        self.check_graph(&st)
    }
}

impl Drop for DevicePool {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        st.pending.destroy(self.driver.as_ref(), self.dev);
        let budget = st.budget.clone();
        for pool in st.streams.iter_mut() {
            pool.destroy(self.driver.as_ref(), self.dev, &budget);
        }
    }
}
