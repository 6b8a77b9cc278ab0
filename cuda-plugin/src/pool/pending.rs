//! Stream safety: blocks that `record_stream` marked as used on other streams.
//!
//! Freeing such a block records an event on each of those streams and parks the block
//! as pending; `process_pending` returns it to its stream's pool once the events have
//! completed.

use super::live::{Live, Pending};
use super::{DevicePool, State, UnknownPointer};
use crate::driver::{DevPtr, StreamId};

impl DevicePool {
    /// Frees a block that other streams used: records an event on each and parks the
    /// block until they complete.
    pub(super) fn free_used_elsewhere(&self, st: &mut State, ptr: DevPtr, live: Live) {
        let mut events = Vec::with_capacity(live.uses.len());
        let mut failed = false;
        for &s in &live.uses {
            match self.driver.record_event(self.dev, s) {
                Ok(e) => events.push(e),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            // Without events, only a full synchronize makes reuse safe; if even that
            // fails, the block stays out of the pool (counted as active) rather than
            // risk handing out memory still in use.
            for e in events.drain(..) {
                self.driver.destroy_event(self.dev, e);
            }
            if self.driver.synchronize(self.dev).is_ok() {
                self.return_block(st, ptr, &live);
            } else {
                st.pending.push(Pending { ptr, live, events });
            }
        } else {
            st.pending.push(Pending { ptr, live, events });
        }
    }

    /// Returns pending blocks whose events completed (all of them, waiting, with
    /// `wait`).
    pub(super) fn process_pending(&self, st: &mut State, wait: bool) {
        let mut i = 0;
        while i < st.pending.len() {
            let p = &st.pending[i];
            let mut done = true;
            let mut broken = false;
            for &e in &p.events {
                let r = if wait {
                    self.driver.sync_event(self.dev, e).map(|_| true)
                } else {
                    self.driver.query_event(self.dev, e)
                };
                match r {
                    Ok(true) => {}
                    Ok(false) => {
                        done = false;
                        break;
                    }
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                // An event we cannot ask about: a synchronize answers for all of them.
                done = self.driver.synchronize(self.dev).is_ok();
            }
            if done {
                let p = st.pending.swap_remove(i);
                for e in p.events {
                    self.driver.destroy_event(self.dev, e);
                }
                self.return_block(st, p.ptr, &p.live);
            } else {
                i += 1;
            }
        }
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
        let Some(l) = st.live.get_mut(&base) else {
            return Err(UnknownPointer::NotAllocated);
        };
        if stream != own && !l.uses.contains(&stream) {
            l.uses.push(stream);
        }
        Ok(())
    }

    /// Blocks waiting for events.
    pub fn pending(&self) -> usize {
        self.state.lock().pending.len()
    }
}
