//! Unmapping after the arena lock is released.
//!
//! A munmap of a few megabytes that were in use frees every page and shoots down the TLB
//! entries of every CPU the process ran on; it also takes the kernel's mmap lock for
//! writing, so it waits for the page faults of other threads. Done under the arena lock,
//! it made every thread that needed the arena wait for all of that. So a mapping leaving
//! the pool is unregistered under the lock (out of the pagemap and every list, its bytes
//! taken off the accounting) and handed back as an [`Unmap`], which the holder drops after
//! releasing the lock. Nothing can reach the range meanwhile, and the kernel cannot hand it
//! to anyone else before the munmap, so nothing sees the difference but the timing.

use crate::source::os;

/// A mapping of the pool that nothing references any more: only its munmap is left, done
/// when this is dropped (after the arena lock, by the holder's choice of when to drop).
#[must_use = "dropping it unmaps at once; keep it until the arena lock is released"]
pub struct Unmap {
    base: usize,
    len: usize,
}

impl Unmap {
    /// Nothing to unmap.
    pub const NONE: Unmap = Unmap { base: 0, len: 0 };

    /// # Safety
    /// `[base, base + len)` is a mapping made by `source::os` that nothing uses or can find
    /// any more (unregistered under the arena lock).
    pub unsafe fn new(base: usize, len: usize) -> Unmap {
        Unmap { base, len }
    }

    /// Bytes it unmaps.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it unmaps nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Unmap {
    fn drop(&mut self) {
        // SAFETY: `new`'s contract: the range is ours and unreachable; it is unmapped once,
        // since the value is dropped once.
        unsafe { os::unmap(self.base as *mut u8, self.len) };
    }
}

/// Room for the mappings one call can give up: the huge cache's slots.
const CAP: usize = super::huge::CACHE_SLOTS;

/// Several [`Unmap`]s, unmapped when dropped.
#[must_use = "dropping it unmaps at once; keep it until the arena lock is released"]
pub struct Unmaps {
    list: [Unmap; CAP],
    n: usize,
}

impl Unmaps {
    pub const EMPTY: Unmaps = Unmaps {
        list: [Unmap::NONE; CAP],
        n: 0,
    };

    /// Adds one; when full (never: one call empties at most every cache slot), it is
    /// unmapped at once rather than lost.
    pub fn push(&mut self, u: Unmap) {
        match self.list.get_mut(self.n) {
            Some(slot) => {
                *slot = u;
                self.n += 1;
            }
            None => drop(u),
        }
    }

    /// Bytes they unmap.
    pub fn bytes(&self) -> usize {
        self.list[..self.n].iter().map(Unmap::len).sum()
    }

    /// Unmaps them now (under the lock, for callers without a better moment); returns the
    /// bytes unmapped.
    pub fn unmap_now(self) -> usize {
        self.bytes()
    }
}
