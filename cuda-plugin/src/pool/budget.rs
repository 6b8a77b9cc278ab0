//! The device memory one pool holds, against its cap (memory fraction).
//!
//! Every byte the pool gets from the driver (mapped pages, cuMemAlloc segments) is added
//! here before the driver call and removed when given back, so `reserved` is exactly the
//! pool's device memory. Only the device's pool lock holder changes it; atomics make it
//! readable without the lock (statistics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Reserved bytes and the cap.
#[derive(Default, Debug)]
pub struct Budget {
    reserved: AtomicU64,
    /// 0 = no cap.
    limit: AtomicU64,
}

impl Budget {
    /// Takes `n` bytes if the cap allows.
    pub fn try_add(&self, n: u64) -> bool {
        let r = self.reserved.load(Relaxed);
        let l = self.limit.load(Relaxed);
        if l != 0 && r + n > l {
            return false;
        }
        self.reserved.store(r + n, Relaxed);
        true
    }

    /// Gives `n` bytes back.
    pub fn sub(&self, n: u64) {
        self.reserved.fetch_sub(n, Relaxed);
    }

    pub fn reserved(&self) -> u64 {
        self.reserved.load(Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Relaxed)
    }

    pub fn set_limit(&self, l: u64) {
        self.limit.store(l, Relaxed);
    }
}
