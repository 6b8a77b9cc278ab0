//! Stream safety: blocks that `record_stream` marked as used on other streams.
//!
//! Freeing such a block records an event on each of those streams and parks the block as
//! pending; `process_pending` returns it to its stream's pool once the events have
//! completed.
//!
//! Invariant: a pending block returns to its pool only after every event recorded for it
//! has completed, or after a device synchronize that succeeded after its free. When an
//! event cannot be created, recorded, queried or waited for, the block is marked
//! `needs_sync` and waits for such a synchronize; it is never released without one.
//!
//! Cost: events come from a per-device pool and go back to it once complete; the list of
//! streams a block was used on becomes, in place, its list of events, and emptied lists
//! are kept for the next `record_stream`. Once warm, neither free nor malloc allocates.
//!
//! Failures are counted in the device statistics (`event_record_failures`,
//! `event_query_failures`, `sync_fallbacks`) and warned about once per pool. Fallback
//! synchronizes back off: after each one the pool waits 1, 2, 4, ... up to
//! [`MAX_BACKOFF`] calls of `process_pending` (one per malloc while blocks are pending)
//! before the next, so a query that keeps failing does not turn every malloc into a device
//! synchronize under the pool lock. Waiting paths (empty_cache, the out-of-memory retry)
//! synchronize regardless.

use super::live::Live;
use super::{DevicePool, State, UnknownPointer};
use crate::driver::{DevPtr, Driver, DriverError, EventId, StreamId};

/// Most `process_pending` calls between two fallback synchronizes.
pub const MAX_BACKOFF: u64 = 1024;

const WARNED_RECORD: u8 = 1;
const WARNED_QUERY: u8 = 2;
const WARNED_SYNC: u8 = 4;

/// A freed block waiting for the streams that used it.
pub struct PendingBlock {
    pub ptr: DevPtr,
    pub live: Live,
    /// One event per stream that used the block; empty when `needs_sync`.
    pub events: Vec<EventId>,
    /// An event failed: only a device synchronize can release the block.
    pub needs_sync: bool,
}

/// The pending blocks of one device and what keeps them cheap.
pub struct PendingFrees {
    blocks: Vec<PendingBlock>,
    /// Events ready to be recorded again.
    free_events: Vec<EventId>,
    /// Emptied stream lists, for the next `record_stream`.
    spare_lists: Vec<Vec<u64>>,
    /// `process_pending` calls so far: the back-off's clock.
    tick: u64,
    /// No fallback synchronize before this tick (waiting paths excepted).
    next_sync: u64,
    /// Ticks to wait after the next fallback synchronize.
    backoff: u64,
    /// Kinds of failure already warned about.
    warned: u8,
}

impl Default for PendingFrees {
    fn default() -> Self {
        PendingFrees {
            blocks: Vec::new(),
            free_events: Vec::new(),
            spare_lists: Vec::new(),
            tick: 0,
            next_sync: 0,
            backoff: 1,
            warned: 0,
        }
    }
}

impl PendingFrees {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PendingBlock> {
        self.blocks.iter()
    }

    /// Events held for reuse.
    pub fn pooled_events(&self) -> usize {
        self.free_events.len()
    }

    /// Checks that every block can still be released only safely.
    pub fn check(&self) -> Result<(), String> {
        match self
            .blocks
            .iter()
            .find(|b| !b.needs_sync && b.events.is_empty())
        {
            Some(b) => Err(format!(
                "pending block {:#x} has no event and needs no synchronize",
                b.ptr
            )),
            None => Ok(()),
        }
    }

    /// Destroys every event (the pool is going away).
    pub fn destroy(&mut self, driver: &dyn Driver, dev: i32) {
        for b in self.blocks.drain(..) {
            for e in b.events {
                driver.destroy_event(dev, e);
            }
        }
        for e in self.free_events.drain(..) {
            driver.destroy_event(dev, e);
        }
    }

    /// Takes the events of a completed block back for reuse, and keeps its list.
    fn recycle(&mut self, mut events: Vec<EventId>) {
        self.free_events.extend_from_slice(&events);
        events.clear();
        if events.capacity() > 0 {
            self.spare_lists.push(events);
        }
    }
}

/// Outcome of asking about one block's events.
enum Status {
    Done,
    NotYet,
    Failed(DriverError),
}

impl DevicePool {
    /// Frees a block that other streams used: records an event on each and parks the
    /// block until they complete.
    pub(super) fn free_used_elsewhere(&self, st: &mut State, ptr: DevPtr, mut live: Live) {
        // The list of streams becomes the list of events, in place: no allocation.
        let mut list = std::mem::take(&mut live.uses);
        let mut failure = None;
        for i in 0..list.len() {
            match self.record_on(st, list[i]) {
                Ok(e) => list[i] = e,
                Err(e) => {
                    // Events recorded so far stay valid: back to the pool.
                    list.truncate(i);
                    failure = Some(e);
                    break;
                }
            }
        }
        let needs_sync = failure.is_some();
        if let Some(e) = failure {
            st.stats.event_record_failures += 1;
            self.warn_once(st, WARNED_RECORD, &e);
            st.pending.recycle(list);
            list = Vec::new();
        }
        st.pending.blocks.push(PendingBlock {
            ptr,
            live,
            events: list,
            needs_sync,
        });
        if needs_sync {
            self.sync_fallback(st, false);
        }
    }

    /// An event from the pool (or a new one) recorded on `stream`.
    fn record_on(&self, st: &mut State, stream: StreamId) -> Result<EventId, DriverError> {
        let e = match st.pending.free_events.pop() {
            Some(e) => e,
            None => self.driver.create_event(self.dev)?,
        };
        match self.driver.record_event(self.dev, e, stream) {
            Ok(()) => Ok(e),
            Err(err) => {
                // The event may be what broke: do not reuse it.
                self.driver.destroy_event(self.dev, e);
                Err(err)
            }
        }
    }

    /// Returns pending blocks whose events completed (all of them, waiting, with
    /// `wait`). A block whose event cannot be asked about waits for a device synchronize,
    /// tried now if the back-off allows it (always when waiting).
    pub(super) fn process_pending(&self, st: &mut State, wait: bool) {
        st.pending.tick += 1;
        let counted = (st.stats.event_query_failures, st.stats.sync_fallbacks);
        let mut needs_sync = false;
        let mut i = 0;
        while i < st.pending.blocks.len() {
            let b = &st.pending.blocks[i];
            if b.needs_sync {
                needs_sync = true;
                i += 1;
                continue;
            }
            let mut status = Status::Done;
            for &e in &b.events {
                let r = if wait {
                    self.driver.sync_event(self.dev, e).map(|_| true)
                } else {
                    self.driver.query_event(self.dev, e)
                };
                match r {
                    Ok(true) => {}
                    Ok(false) => {
                        status = Status::NotYet;
                        break;
                    }
                    Err(err) => {
                        status = Status::Failed(err);
                        break;
                    }
                }
            }
            match status {
                Status::Done => {
                    let b = st.pending.blocks.swap_remove(i);
                    st.pending.recycle(b.events);
                    // Events work: a later failure may fall back at once again.
                    st.pending.backoff = 1;
                    self.return_block(st, b.ptr, &b.live);
                }
                Status::NotYet => i += 1,
                Status::Failed(err) => {
                    st.stats.event_query_failures += 1;
                    self.warn_once(st, WARNED_QUERY, &err);
                    let b = &mut st.pending.blocks[i];
                    b.needs_sync = true;
                    // Which event broke is unknown: none of them is reused.
                    for e in b.events.drain(..) {
                        self.driver.destroy_event(self.dev, e);
                    }
                    needs_sync = true;
                    i += 1;
                }
            }
        }
        if needs_sync {
            self.sync_fallback(st, wait);
        }
        if counted != (st.stats.event_query_failures, st.stats.sync_fallbacks) {
            self.publish(st);
        }
    }

    /// A device synchronize in place of failed events, unless the back-off says not yet
    /// (`force` ignores it). Success releases every pending block: all the work they
    /// waited for was queued before it.
    fn sync_fallback(&self, st: &mut State, force: bool) {
        let p = &mut st.pending;
        if !force && p.tick < p.next_sync {
            return;
        }
        p.next_sync = p.tick + p.backoff;
        p.backoff = (p.backoff * 2).min(MAX_BACKOFF);
        st.stats.sync_fallbacks += 1;
        if let Err(e) = self.driver.synchronize(self.dev) {
            self.warn_once(st, WARNED_SYNC, &e);
            return;
        }
        while let Some(b) = st.pending.blocks.pop() {
            st.pending.recycle(b.events);
            self.return_block(st, b.ptr, &b.live);
        }
    }

    /// Says once per pool and kind of failure what happened and what it costs.
    #[cold]
    fn warn_once(&self, st: &mut State, kind: u8, e: &DriverError) {
        if st.pending.warned & kind != 0 {
            return;
        }
        st.pending.warned |= kind;
        let what = match kind {
            WARNED_RECORD => "blocks used on other streams are released after a device synchronize (counted in event_record_failures, sync_fallbacks)",
            WARNED_QUERY => "blocks used on other streams are released after a device synchronize (counted in event_query_failures, sync_fallbacks)",
            _ => "blocks used on other streams stay out of the pool until a synchronize succeeds (counted in sync_fallbacks)",
        };
        eprintln!("poolside: warning: cuda:{}: {e}; {what}", self.dev);
    }

    /// Marks the block at `ptr` as used on `stream` too.
    pub fn record_stream(&self, ptr: DevPtr, stream: StreamId) -> Result<(), UnknownPointer> {
        let mut st = self.state.lock();
        let base = match st.live.contains_key(&ptr) {
            true => ptr,
            false => {
                Self::base_of(&st, ptr)
                    .ok_or(UnknownPointer::NotAllocated)?
                    .0
            }
        };
        let own = {
            let l = &st.live[&base];
            st.streams[l.stream as usize].stream
        };
        let st = &mut *st;
        let Some(l) = st.live.get_mut(&base) else {
            return Err(UnknownPointer::NotAllocated);
        };
        if stream != own && !l.uses.contains(&stream) {
            if l.uses.capacity() == 0 {
                if let Some(v) = st.pending.spare_lists.pop() {
                    l.uses = v;
                }
            }
            l.uses.push(stream);
        }
        Ok(())
    }

    /// Blocks waiting for events or a synchronize.
    pub fn pending(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Events the pool holds for reuse.
    pub fn pooled_events(&self) -> usize {
        self.state.lock().pending.pooled_events()
    }
}
