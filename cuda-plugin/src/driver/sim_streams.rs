//! The simulated device's streams and events: work that completes later.
//!
//! Each stream counts the work launched on it and the work finished. Tests launch work
//! with [`SimDriver::launch`](super::sim::SimDriver::launch), naming the bytes it touches,
//! and finish it with [`SimDriver::advance`](super::sim::SimDriver::advance); nothing
//! finishes on its own. A device synchronize finishes all work of the device; an event
//! synchronize finishes the event's stream up to the event.
//!
//! As in CUDA, an event recorded on a stream completes once the stream has finished the
//! work launched before the record (so an event on an idle stream is complete at once),
//! recording again moves it, and an event never recorded counts as complete.
//!
//! Because launched work names its bytes, [`Streams::in_use_elsewhere`] tells a test
//! whether memory handed to one stream is still being used by unfinished work of another:
//! the race `record_stream` exists to prevent.

use super::{DevPtr, EventId, StreamId};
use std::collections::HashMap;

#[derive(Default)]
struct Queue {
    launched: u64,
    finished: u64,
    /// (work number, start, length) of unfinished work that touches memory.
    touches: Vec<(u64, DevPtr, u64)>,
}

impl Queue {
    fn finish_to(&mut self, upto: u64) {
        if upto > self.finished {
            self.finished = upto.min(self.launched);
            let f = self.finished;
            self.touches.retain(|&(n, _, _)| n > f);
        }
    }
}

struct Event {
    dev: i32,
    /// The stream and the work count it waits for; None until recorded.
    target: Option<(StreamId, u64)>,
}

/// Streams and events of every simulated device.
pub struct Streams {
    queues: HashMap<(i32, StreamId), Queue>,
    events: HashMap<EventId, Event>,
    next_event: EventId,
    /// Events created so far (a pool that reuses events stops creating them).
    pub created: u64,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            queues: HashMap::new(),
            events: HashMap::new(),
            next_event: 1,
            created: 0,
        }
    }
}

impl Streams {
    /// A new event of device `dev`, not recorded yet.
    pub fn create(&mut self, dev: i32) -> EventId {
        let id = self.next_event;
        self.next_event += 1;
        self.created += 1;
        self.events.insert(id, Event { dev, target: None });
        id
    }

    /// Records `e` on `stream`; false for an unknown event or one of another device.
    pub fn record(&mut self, dev: i32, e: EventId, stream: StreamId) -> bool {
        let launched = self.queues.get(&(dev, stream)).map_or(0, |q| q.launched);
        match self.events.get_mut(&e) {
            Some(ev) if ev.dev == dev => {
                ev.target = Some((stream, launched));
                true
            }
            _ => false,
        }
    }

    /// Whether `e` has completed; None for an unknown event.
    pub fn query(&self, e: EventId) -> Option<bool> {
        let ev = self.events.get(&e)?;
        Some(match ev.target {
            None => true,
            Some((s, n)) => self
                .queues
                .get(&(ev.dev, s))
                .is_none_or(|q| q.finished >= n),
        })
    }

    /// Waits for `e`: its stream finishes the work launched before the record.
    pub fn wait(&mut self, e: EventId) -> bool {
        let Some(ev) = self.events.get(&e) else {
            return false;
        };
        if let Some((s, n)) = ev.target {
            if let Some(q) = self.queues.get_mut(&(ev.dev, s)) {
                q.finish_to(n);
            }
        }
        true
    }

    /// Destroys `e`; false if it did not exist.
    pub fn destroy(&mut self, e: EventId) -> bool {
        self.events.remove(&e).is_some()
    }

    /// Events created and not destroyed.
    pub fn live_events(&self) -> usize {
        self.events.len()
    }

    /// Launches one piece of work on `stream`, touching `[ptr, ptr + len)` if len > 0.
    pub fn launch(&mut self, dev: i32, stream: StreamId, ptr: DevPtr, len: u64) {
        let q = self.queues.entry((dev, stream)).or_default();
        q.launched += 1;
        if len > 0 {
            let n = q.launched;
            q.touches.push((n, ptr, len));
        }
    }

    /// Finishes the oldest `n` unfinished pieces of work on `stream`.
    pub fn advance(&mut self, dev: i32, stream: StreamId, n: u64) {
        if let Some(q) = self.queues.get_mut(&(dev, stream)) {
            q.finish_to(q.finished.saturating_add(n));
        }
    }

    /// Finishes all work on `stream` of every device (`None`: on every stream).
    pub fn finish(&mut self, stream: Option<StreamId>) {
        for (&(_, s), q) in self.queues.iter_mut() {
            if stream.is_none_or(|x| x == s) {
                q.finish_to(u64::MAX);
            }
        }
    }

    /// A device synchronize: all work of `dev` finishes.
    pub fn synchronize(&mut self, dev: i32) {
        for (&(d, _), q) in self.queues.iter_mut() {
            if d == dev {
                q.finish_to(u64::MAX);
            }
        }
    }

    /// Whether `stream` has unfinished work.
    pub fn busy(&self, dev: i32, stream: StreamId) -> bool {
        self.queues
            .get(&(dev, stream))
            .is_some_and(|q| q.finished < q.launched)
    }

    /// Whether unfinished work on a stream other than `stream` touches `[ptr, ptr + len)`.
    pub fn in_use_elsewhere(&self, dev: i32, ptr: DevPtr, len: u64, stream: StreamId) -> bool {
        self.queues.iter().any(|(&(d, s), q)| {
            d == dev
                && s != stream
                && q.touches
                    .iter()
                    .any(|&(_, p, l)| p < ptr + len && ptr < p + l)
        })
    }
}
