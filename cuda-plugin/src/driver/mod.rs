//! The CUDA driver calls the pool needs, behind one trait with two implementations:
//! [`real::RealDriver`] (the CUDA driver through cudarc, loaded at run time) and
//! [`sim::SimDriver`] (host memory standing in for a device, for tests and trace replay).
//!
//! Addresses, streams and events are plain integers so that both implementations share
//! every type; a stream is PyTorch's `cudaStream_t` (the same handle as `CUstream`).

pub mod real;
pub mod select;
pub mod sim;
pub mod sim_streams;

use std::fmt;

/// A device address.
pub type DevPtr = u64;
/// A stream handle (`cudaStream_t` / `CUstream`); 0 is the legacy default stream.
pub type StreamId = u64;
/// An event handle.
pub type EventId = u64;

/// A failed driver call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverError {
    /// The driver function that failed (e.g. "cuMemCreate").
    pub call: &'static str,
    /// CUresult code (2 = CUDA_ERROR_OUT_OF_MEMORY).
    pub code: i32,
    /// The driver's name for the code.
    pub name: String,
}

/// CUDA_ERROR_OUT_OF_MEMORY.
pub const CUDA_ERROR_OUT_OF_MEMORY: i32 = 2;

impl DriverError {
    /// Whether the call failed for lack of device memory (then the pool frees cache and
    /// retries; any other failure is reported as is).
    pub fn is_oom(&self) -> bool {
        self.code == CUDA_ERROR_OUT_OF_MEMORY
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {} ({})", self.call, self.name, self.code)
    }
}

/// Result of a driver call.
pub type DResult<T> = Result<T, DriverError>;

/// The driver calls, per device ordinal. Implementations are thread-safe.
///
/// `map` and `unmap` work on whole pages of `granularity` bytes, one physical allocation
/// per page, so any page can be unmapped alone.
pub trait Driver: Send + Sync {
    /// "cuda" or "sim", for messages.
    fn name(&self) -> &'static str;
    /// Devices visible.
    fn device_count(&self) -> DResult<i32>;
    /// (free, total) bytes of device memory.
    fn mem_info(&self, dev: i32) -> DResult<(u64, u64)>;
    /// Whether the device supports virtual memory management (cuMemCreate and friends).
    fn vmm_supported(&self, dev: i32) -> bool;
    /// The physical allocation granularity (a power of two).
    fn granularity(&self, dev: i32) -> DResult<usize>;
    /// Reserves `size` bytes of device address space aligned to `align`.
    fn reserve(&self, dev: i32, size: usize, align: usize) -> DResult<DevPtr>;
    /// Frees a reservation (every page in it must be unmapped).
    fn release(&self, dev: i32, ptr: DevPtr, size: usize) -> DResult<()>;
    /// Backs `[ptr, ptr + size)` (one page) with new physical memory, readable and
    /// writable by the device (cuMemCreate + cuMemMap + cuMemSetAccess). On failure
    /// nothing stays mapped or allocated.
    fn map(&self, dev: i32, ptr: DevPtr, size: usize) -> DResult<()>;
    /// Unmaps one page mapped by `map` and frees its physical memory.
    fn unmap(&self, dev: i32, ptr: DevPtr, size: usize) -> DResult<()>;
    /// cuMemAlloc.
    fn malloc(&self, dev: i32, size: usize) -> DResult<DevPtr>;
    /// cuMemFree.
    fn free(&self, dev: i32, ptr: DevPtr) -> DResult<()>;
    /// Makes device `dev` usable; the real driver retains its primary context here. The
    /// pool calls it once, when it is created, before any other call that names the
    /// device, so a process that uses one GPU leaves the others' contexts alone.
    fn open_device(&self, dev: i32) -> DResult<()>;
    /// A new event (timing disabled), for the pool to record again and again.
    fn create_event(&self, dev: i32) -> DResult<EventId>;
    /// Records `event` on `stream`: it completes once the work queued there so far has.
    fn record_event(&self, dev: i32, event: EventId, stream: StreamId) -> DResult<()>;
    /// Whether the event has completed.
    fn query_event(&self, dev: i32, event: EventId) -> DResult<bool>;
    /// Waits for the event.
    fn sync_event(&self, dev: i32, event: EventId) -> DResult<()>;
    /// Destroys the event.
    fn destroy_event(&self, dev: i32, event: EventId);
    /// Waits for all work on the device.
    fn synchronize(&self, dev: i32) -> DResult<()>;
    /// Sets the calling thread's stream-capture mode to relaxed
    /// (cuThreadExchangeStreamCaptureMode) and returns the mode it had, so that the pool
    /// may map memory while a graph capture is underway (PyTorch does the same around
    /// cudaMalloc). None when there is no such mode to change.
    fn relax_capture_mode(&self) -> Option<u32> {
        None
    }
    /// Puts back the mode `relax_capture_mode` returned.
    fn restore_capture_mode(&self, _mode: u32) {}
}
