//! realloc and reallocarray, with glibc's conventions:
//! - `realloc(NULL, n)` is `malloc(n)` (so `realloc(NULL, 0)` is a unique block);
//! - `realloc(p, 0)` frees `p` and returns NULL, errno untouched (glibc's
//!   REALLOC_ZERO_BYTES_FREES);
//! - on failure the old block is intact, NULL is returned and errno is ENOMEM;
//! - a pointer this library did not allocate cannot be resized (its size is unknown): the
//!   call fails with ENOMEM and leaves it alone, instead of reading foreign memory.

use crate::malloc::{alloc_natural, fail_nomem, natural_align, release};
use libc::{c_void, size_t};
use poolside::host;

/// realloc's body.
///
/// # Safety
/// `p` is null, foreign, or a live block of this library not freed since.
#[inline]
pub unsafe fn resize(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return alloc_natural(size);
    }
    if size == 0 {
        // SAFETY: forwarded contract.
        unsafe { release(p) };
        return core::ptr::null_mut();
    }
    // Sizes beyond PTRDIFF_MAX can never be allocated; the engine would fail later anyway,
    // but answering here keeps its size arithmetic far from overflow.
    // A foreign block is checked for here because the engine's realloc takes only its
    // own blocks.
    if size > isize::MAX as usize || !host::owns(p as *const u8) {
        return fail_nomem();
    }
    // SAFETY: p is a live block of ours (owns, and the caller's contract says it was not
    // freed), and natural_align is a power of two.
    let mut q = unsafe { host::realloc(p as *mut u8, size, natural_align(size)) };
    if q.is_null() {
        // As in malloc::alloc_or_retry: give back what the pool holds, try once more
        // (unless the kernel refuses the size outright).
        if poolside::sys::kernel_refuses_outright(size) {
            return fail_nomem();
        }
        host::collect(true);
        // SAFETY: the failed realloc left p live and intact.
        q = unsafe { host::realloc(p as *mut u8, size, natural_align(size)) };
        if q.is_null() {
            return fail_nomem();
        }
    }
    q as *mut c_void
}

/// reallocarray's body: overflow of `n * size` fails with ENOMEM and leaves `p` alone.
///
/// # Safety
/// As for [`resize`].
#[inline]
pub unsafe fn resize_array(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(total) => unsafe { resize(p, total) },
        None => fail_nomem(),
    }
}

/// # Safety
/// `p` is null, foreign, or a live block of this library not freed since.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: size_t) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { resize(p, size) }
}

/// # Safety
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: size_t, size: size_t) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { resize_array(p, n, size) }
}
