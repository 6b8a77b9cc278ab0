//! The device as an `poolside` memory source, so that the engine's detached size-class
//! pool serves small blocks from device pages.
//!
//! Two modes:
//! - virtual memory (expandable segments): reserve = cuMemAddressReserve, commit = one
//!   cuMemCreate + cuMemMap + cuMemSetAccess per granularity page, decommit = cuMemUnmap +
//!   cuMemRelease, release = cuMemAddressFree;
//! - cuMemAlloc: a reservation is one cuMemAlloc of a single page (the pool is built with
//!   one page per chunk), commit and decommit do nothing, release is cuMemFree.
//!
//! A failure cannot travel through `MemorySource`'s boolean results, so the last driver
//! error is kept for the pool to report (`take_error`); no error means the cap (memory
//! fraction) said no, which is an out-of-memory too.

use super::budget::Budget;
use crate::driver::{DevPtr, Driver, DriverError};
use parking_lot::Mutex;
use poolside::source::MemorySource;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The device memory of one device, for one small pool.
pub struct DeviceSource {
    pub driver: Arc<dyn Driver>,
    pub dev: i32,
    pub budget: Arc<Budget>,
    /// True for virtual memory management, false for cuMemAlloc.
    pub vmm: bool,
    pub granularity: usize,
    /// The last failure of a driver call made for the pool.
    pub error: Mutex<Option<DriverError>>,
    /// Driver calls that allocated or freed device memory.
    pub device_allocs: AtomicU64,
    pub device_frees: AtomicU64,
    /// Pages whose unmap failed: still mapped and counted in the budget. A commit of one
    /// of them just takes it back; every decommit and release first retries them.
    pub stuck: Mutex<Vec<DevPtr>>,
    /// cuMemAlloc chunks whose cuMemFree failed: retried at the next reserve or release,
    /// counted in the budget until freed.
    pub stuck_chunks: Mutex<Vec<(DevPtr, usize)>>,
}

impl DeviceSource {
    /// The failure behind the last `None` from the pool, if a driver call caused it.
    pub fn take_error(&self) -> Option<DriverError> {
        self.error.lock().take()
    }

    fn fail(&self, e: DriverError) {
        *self.error.lock() = Some(e);
    }

    fn unmap_pages(&self, ptr: DevPtr, size: usize) {
        let mut p = ptr;
        while p < ptr + size as u64 {
            self.unmap_page(p);
            p += self.granularity as u64;
        }
    }

    /// Unmaps one page; remembers it as stuck when the driver refuses.
    fn unmap_page(&self, p: DevPtr) -> bool {
        match self.driver.unmap(self.dev, p, self.granularity) {
            Ok(()) => {
                self.budget.sub(self.granularity as u64);
                self.device_frees.fetch_add(1, Relaxed);
                true
            }
            Err(e) => {
                self.stuck.lock().push(p);
                self.fail(e);
                false
            }
        }
    }

    /// Retries unmapping stuck pages.
    fn retry_stuck(&self) {
        let pages = std::mem::take(&mut *self.stuck.lock());
        for p in pages {
            self.unmap_page(p);
        }
    }

    /// Frees a cuMemAlloc chunk; remembers it when the driver refuses.
    fn free_chunk(&self, p: DevPtr, size: usize) {
        match self.driver.free(self.dev, p) {
            Ok(()) => {
                self.budget.sub(size as u64);
                self.device_frees.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.stuck_chunks.lock().push((p, size));
                self.fail(e);
            }
        }
    }

    /// Bytes of stuck pages and chunks (still held from the driver, not in the pool).
    pub fn stuck_bytes(&self) -> u64 {
        self.stuck.lock().len() as u64 * self.granularity as u64
            + self
                .stuck_chunks
                .lock()
                .iter()
                .map(|c| c.1 as u64)
                .sum::<u64>()
    }
}

// SAFETY: reservations come from the driver and belong to this source until released;
// the driver calls are thread-safe and allocate only host metadata of the driver, never
// from the pool this source serves.
unsafe impl MemorySource for DeviceSource {
    const CPU_ACCESSIBLE: bool = false;
    const RESERVE_COMMITS: bool = false;

    fn granularity(&self) -> usize {
        self.granularity
    }

    fn reserve(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if self.vmm {
            match self.driver.reserve(self.dev, size, align) {
                Ok(p) => NonNull::new(p as *mut u8),
                Err(e) => {
                    self.fail(e);
                    None
                }
            }
        } else {
            for (q, s) in std::mem::take(&mut *self.stuck_chunks.lock()) {
                self.free_chunk(q, s);
            }
            if !self.budget.try_add(size as u64) {
                return None;
            }
            match self.driver.malloc(self.dev, size) {
                Ok(p) if p % 512 == 0 && p != 0 => {
                    self.device_allocs.fetch_add(1, Relaxed);
                    NonNull::new(p as *mut u8)
                }
                Ok(p) => {
                    // Not usable for 512-byte blocks: give it back.
                    let _ = self.driver.free(self.dev, p);
                    self.budget.sub(size as u64);
                    None
                }
                Err(e) => {
                    self.budget.sub(size as u64);
                    self.fail(e);
                    None
                }
            }
        }
    }

    unsafe fn release(&self, base: NonNull<u8>, size: usize) {
        let p = base.as_ptr() as DevPtr;
        if self.vmm {
            self.retry_stuck();
            let inside = |&q: &DevPtr| q >= p && q < p + size as u64;
            if self.stuck.lock().iter().any(inside) {
                // Pages still mapped: freeing the reservation would fail; leak the
                // address space (not memory: the stuck pages stay counted) instead.
                return;
            }
            if let Err(e) = self.driver.release(self.dev, p, size) {
                self.fail(e);
            }
        } else {
            for (q, s) in std::mem::take(&mut *self.stuck_chunks.lock()) {
                self.free_chunk(q, s);
            }
            self.free_chunk(p, size);
        }
    }

    unsafe fn commit(&self, ptr: NonNull<u8>, size: usize) -> bool {
        if !self.vmm {
            return true;
        }
        let base = ptr.as_ptr() as DevPtr;
        let mut done = 0usize;
        while done < size {
            let page = base + done as u64;
            let was_stuck = {
                let mut stuck = self.stuck.lock();
                let at = stuck.iter().position(|&q| q == page);
                at.map(|i| stuck.swap_remove(i)).is_some()
            };
            if was_stuck {
                // Still mapped and counted: take it back as it is.
                done += self.granularity;
                continue;
            }
            if !self.budget.try_add(self.granularity as u64) {
                self.unmap_pages(base, done);
                return false;
            }
            if let Err(e) = self
                .driver
                .map(self.dev, base + done as u64, self.granularity)
            {
                self.budget.sub(self.granularity as u64);
                self.unmap_pages(base, done);
                self.fail(e);
                return false;
            }
            self.device_allocs.fetch_add(1, Relaxed);
            done += self.granularity;
        }
        true
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, size: usize) {
        if self.vmm {
            self.retry_stuck();
            self.unmap_pages(ptr.as_ptr() as DevPtr, size);
        }
    }
}
