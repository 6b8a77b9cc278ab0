//! The Rust half of PyTorch's CUDA graph hooks. The entries PyTorch calls are C++
//! (cpp/graph.cpp: their parameters are `std::pair` and `std::function`); they call these
//! with plain C types and throw, towards PyTorch, when one returns nonzero. The filter
//! arrives as a C predicate over a heap copy of the `std::function`; it belongs to the pool
//! once `begin` returns 0, and is freed through `drop` when the capture ends or the pool
//! goes away.

use super::global::global;
use crate::pool::graph_pool::{Filter, FilterCall, FilterDrop};
use std::ffi::{c_char, c_int, c_void};

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

/// Runs `f` on `device`'s pool.
fn on_pool(
    device: c_int,
    f: impl FnOnce(&crate::pool::DevicePool) -> Result<(), String>,
) -> Result<(), String> {
    global()
        .map_err(|e| format!("poolside: {e}"))
        .and_then(|g| g.pool(device).map_err(|e| format!("poolside: {e}")))
        .and_then(f)
}

/// 0, or 1 with the message in `errbuf`.
///
/// # Safety
/// `errbuf` is NULL or points to `errlen` writable bytes.
unsafe fn answer(r: Result<(), String>, errbuf: *mut c_char, errlen: usize) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            // SAFETY: forwarded from the caller.
            unsafe { write_err(errbuf, errlen, &e) };
            1
        }
    }
}

/// beginAllocateToPool(device, (id_first, id_second), filter). On 0 the pool owns the
/// filter; otherwise the caller still does.
///
/// # Safety
/// `call(ctx, ..)` and `drop(ctx)` are valid and never unwind (cpp/graph.cpp's are
/// noexcept); `ctx` stays valid until `drop(ctx)`. `errbuf` is NULL or points to `errlen`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn poolside_cuda_begin_allocate_to_pool_impl(
    device: c_int,
    id_first: u64,
    id_second: u64,
    call: FilterCall,
    ctx: *mut c_void,
    drop: FilterDrop,
    errbuf: *mut c_char,
    errlen: usize,
) -> c_int {
    let r = on_pool(device, |p| {
        // SAFETY: the caller's contract for call, ctx and drop.
        let filter = unsafe { Filter::from_c(call, ctx, drop) };
        p.begin_allocate_to_pool((id_first, id_second), filter)
            .map_err(|(e, filter)| {
                // The caller keeps the context: the filter must not free it.
                std::mem::forget(filter);
                e
            })
    });
    // SAFETY: forwarded from the caller.
    unsafe { answer(r, errbuf, errlen) }
}

/// endAllocateToPool(device, (id_first, id_second)).
///
/// # Safety
/// `errbuf` is NULL or points to `errlen` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn poolside_cuda_end_allocate_to_pool_impl(
    device: c_int,
    id_first: u64,
    id_second: u64,
    errbuf: *mut c_char,
    errlen: usize,
) -> c_int {
    let r = on_pool(device, |p| p.end_allocate_to_pool((id_first, id_second)));
    // SAFETY: forwarded from the caller.
    unsafe { answer(r, errbuf, errlen) }
}

/// releasePool(device, (id_first, id_second)).
///
/// # Safety
/// `errbuf` is NULL or points to `errlen` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn poolside_cuda_release_pool_impl(
    device: c_int,
    id_first: u64,
    id_second: u64,
    errbuf: *mut c_char,
    errlen: usize,
) -> c_int {
    let r = on_pool(device, |p| p.release_pool((id_first, id_second)));
    // SAFETY: forwarded from the caller.
    unsafe { answer(r, errbuf, errlen) }
}
