//! The device as an `alloc_core` memory source, so that the engine's detached size-class
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
use alloc_core::source::MemorySource;
use parking_lot::Mutex;
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
            match self.driver.unmap(self.dev, p, self.granularity) {
                Ok(()) => {
                    self.budget.sub(self.granularity as u64);
                    self.device_frees.fetch_add(1, Relaxed);
                }
                Err(e) => self.fail(e),
            }
            p += self.granularity as u64;
        }
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
            if let Err(e) = self.driver.release(self.dev, p, size) {
                self.fail(e);
            }
        } else {
            match self.driver.free(self.dev, p) {
                Ok(()) => {
                    self.budget.sub(size as u64);
                    self.device_frees.fetch_add(1, Relaxed);
                }
                Err(e) => self.fail(e),
            }
        }
    }

    unsafe fn commit(&self, ptr: NonNull<u8>, size: usize) -> bool {
        if !self.vmm {
            return true;
        }
        let base = ptr.as_ptr() as DevPtr;
        let mut done = 0usize;
        while done < size {
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
            self.unmap_pages(ptr.as_ptr() as DevPtr, size);
        }
    }
}
