//! The exported functions. Names are part of the contract with the Python package
//! (poolside.torch) and with PyTorch: keep them.

use super::global::global;
use crate::driver::{DevPtr, StreamId};
use poolside::stats::layout::DeviceSection;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU32, Ordering};

/// Warnings about bad frees printed so far (capped, so a buggy caller cannot flood stderr).
static FREE_WARNINGS: AtomicU32 = AtomicU32::new(0);
const MAX_FREE_WARNINGS: u32 = 10;

/// Copies `msg` into `buf` (NUL-terminated, cut at a character boundary).
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
unsafe fn write_err(buf: *mut c_char, len: usize, msg: &str) {
    if buf.is_null() || len == 0 {
        return;
    }
    let mut n = msg.len().min(len - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: the caller gave `len` writable bytes at `buf`; n + 1 <= len.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
}

/// Allocates `size` bytes on `device` for `stream`. Returns NULL with a message in
/// `errbuf` on failure (out of memory, bad device, driver error); NULL without a message
/// for size 0. Called by `poolside_cuda_malloc`, which throws on that NULL.
///
/// # Safety
/// `errbuf` is NULL or points to `errlen` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn poolside_cuda_malloc_impl(
    size: usize,
    device: c_int,
    stream: *mut c_void,
    errbuf: *mut c_char,
    errlen: usize,
) -> *mut c_void {
    if size == 0 {
        return std::ptr::null_mut();
    }
    let g = match global() {
        Ok(g) => g,
        Err(e) => {
            // SAFETY: forwarded from the caller.
            unsafe { write_err(errbuf, errlen, &format!("poolside: {e}")) };
            return std::ptr::null_mut();
        }
    };
    let pool = match g.pool(device) {
        Ok(p) => p,
        Err(e) => {
            // SAFETY: forwarded from the caller.
            unsafe { write_err(errbuf, errlen, &format!("poolside: {e}")) };
            return std::ptr::null_mut();
        }
    };
    match pool.malloc(size, stream as StreamId) {
        Ok(p) => p as *mut c_void,
        Err(e) => {
            // SAFETY: forwarded from the caller.
            unsafe { write_err(errbuf, errlen, e.message()) };
            std::ptr::null_mut()
        }
    }
}

fn warn_free(msg: &str) {
    if FREE_WARNINGS.fetch_add(1, Ordering::Relaxed) < MAX_FREE_WARNINGS {
        eprintln!("poolside: warning: {msg} (ignored)");
    }
}

/// Frees a block from `poolside_cuda_malloc`. `size` and `stream` are PyTorch's record of
/// the allocation; the pool keeps its own. NULL is ignored; an unknown pointer is
/// reported on stderr and ignored.
#[no_mangle]
pub extern "C" fn poolside_cuda_free(
    ptr: *mut c_void,
    size: usize,
    device: c_int,
    stream: *mut c_void,
) {
    let _ = (size, stream);
    if ptr.is_null() {
        return;
    }
    let Ok(g) = global() else {
        warn_free("free without a working driver");
        return;
    };
    match g.pool(device) {
        Ok(pool) => {
            if pool.free(ptr as DevPtr).is_err() {
                warn_free(&format!(
                    "free of {ptr:p} on device {device}, which poolside did not allocate"
                ));
            }
        }
        Err(e) => warn_free(&format!("free of {ptr:p}: {e}")),
    }
}

/// PyTorch's init hook: called at CUDA lazy init (and with 0 at allocator creation).
/// Loads the driver; a failure is printed once and reported again by each allocation.
#[no_mangle]
pub extern "C" fn poolside_cuda_init(device_count: c_int) {
    match global() {
        Ok(g) => {
            if device_count > 0 && device_count as usize != g.device_count() {
                eprintln!(
                    "poolside: warning: PyTorch sees {device_count} device(s), the driver {} (using the driver's count)",
                    g.device_count()
                );
            }
        }
        Err(e) => eprintln!("poolside: error: {e}"),
    }
}

/// torch.cuda.empty_cache(): every device's pool returns its cached memory.
#[no_mangle]
pub extern "C" fn poolside_cuda_empty_cache() {
    if let Ok(g) = global() {
        for p in g.pools() {
            p.empty_cache();
        }
    }
}

/// torch.cuda.set_per_process_memory_fraction(fraction, device).
#[no_mangle]
pub extern "C" fn poolside_cuda_set_memory_fraction(fraction: f64, device: c_int) {
    let r = global()
        .map_err(|e| e.to_string())
        .and_then(|g| g.pool(device))
        .and_then(|p| p.set_memory_fraction(fraction));
    if let Err(e) = r {
        eprintln!("poolside: warning: set_memory_fraction: {e} (ignored)");
    }
}

/// The allocation containing `ptr`: returns its start and stores its size in `*size`.
/// NULL (and size 0) for a pointer poolside did not allocate.
///
/// # Safety
/// `size` is NULL or points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn poolside_cuda_base_alloc(
    ptr: *mut c_void,
    size: *mut usize,
) -> *mut c_void {
    let found = global()
        .ok()
        .and_then(|g| g.pools().find_map(|p| p.base_alloc(ptr as DevPtr)));
    let (base, len) = found.unwrap_or((0, 0));
    if !size.is_null() {
        // SAFETY: the caller passes a writable size_t or NULL.
        unsafe { *size = len as usize };
    }
    base as *mut c_void
}

/// tensor.record_stream(stream): the block at `ptr` is used on `stream` too, so its
/// memory is reused only after work queued there by the time it is freed completes.
#[no_mangle]
pub extern "C" fn poolside_cuda_record_stream(ptr: *mut c_void, stream: *mut c_void) {
    let Ok(g) = global() else { return };
    if !g
        .pools()
        .any(|p| p.record_stream(ptr as DevPtr, stream as StreamId).is_ok())
    {
        warn_free(&format!(
            "record_stream of {ptr:p}, which poolside did not allocate"
        ));
    }
}

/// Copies `device`'s statistics into `*out`. Returns 0, 1 for a bad device (or no
/// driver), 2 for a NULL `out`.
///
/// # Safety
/// `out` is NULL or points to a writable `DeviceSection`.
#[no_mangle]
pub unsafe extern "C" fn poolside_cuda_memory_stats(
    device: c_int,
    out: *mut DeviceSection,
) -> c_int {
    if out.is_null() {
        return 2;
    }
    let Ok(pool) = global()
        .map_err(|e| e.to_string())
        .and_then(|g| g.pool(device))
    else {
        return 1;
    };
    // SAFETY: out is a writable DeviceSection (checked non-null).
    unsafe { out.write(pool.stats()) };
    0
}

/// Peak values back to current ones (torch.cuda.reset_peak_memory_stats).
#[no_mangle]
pub extern "C" fn poolside_cuda_reset_peak_stats(device: c_int) {
    if let Ok(pool) = global()
        .map_err(|e| e.to_string())
        .and_then(|g| g.pool(device))
    {
        pool.reset_peak_stats();
    }
}
