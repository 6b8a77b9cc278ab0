//! aligned_alloc, posix_memalign, memalign, valloc, pvalloc.
//!
//! Alignment rules, per function:
//! - `aligned_alloc`: a power of two, else NULL with EINVAL (C17; glibc 2.38 and later);
//!   the size need not be a multiple of the alignment (C17 DR 460);
//! - `posix_memalign`: a power of two multiple of `sizeof(void *)`, else it returns EINVAL
//!   and leaves `*memptr` alone; on ENOMEM it also leaves `*memptr` alone;
//! - `memalign`: glibc's leniency: an alignment that is not a power of two is rounded up to
//!   the next one; only one above 2^63 (no such power fits in size_t) fails with EINVAL;
//! - `valloc`: page alignment; `pvalloc`: page alignment and the size rounded up to whole
//!   pages (at least one).
//!
//! Every block is at least naturally aligned (see `malloc::natural_align`), so a small
//! alignment never gives less than malloc would.

use crate::errno;
use crate::malloc::{alloc_or_retry, fail_nomem, natural_align};
use libc::{c_int, c_void, size_t};
use poolside::source::os::OS_PAGE;

/// Allocates with `align` (a power of two).
#[inline]
pub fn alloc_aligned(align: usize, size: usize) -> *mut c_void {
    debug_assert!(align.is_power_of_two());
    alloc_or_retry(size, align.max(natural_align(size)), false)
}

/// aligned_alloc's body.
#[inline]
pub fn aligned_alloc_checked(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        errno::set(libc::EINVAL);
        return core::ptr::null_mut();
    }
    alloc_aligned(align, size)
}

/// memalign's body (glibc's rounding of bad alignments).
#[inline]
pub fn memalign_lenient(align: usize, size: usize) -> *mut c_void {
    match align.checked_next_power_of_two() {
        Some(a) => alloc_aligned(a.max(1), size),
        None => {
            errno::set(libc::EINVAL);
            core::ptr::null_mut()
        }
    }
}

/// pvalloc's body.
#[inline]
pub fn pvalloc_pages(size: usize) -> *mut c_void {
    match size.max(1).checked_next_multiple_of(OS_PAGE) {
        Some(rounded) => alloc_aligned(OS_PAGE, rounded),
        None => fail_nomem(),
    }
}

/// posix_memalign's body.
///
/// # Safety
/// `memptr` is valid for a pointer-sized write.
#[inline]
pub unsafe fn posix_memalign_into(memptr: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align < core::mem::size_of::<*mut c_void>() {
        return libc::EINVAL;
    }
    // posix_memalign reports failure by its result; errno is left as it was.
    let p = errno::preserving(|| alloc_or_retry(size, align.max(natural_align(size)), false));
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a writable pointer slot.
    unsafe { *memptr = p };
    0
}

#[no_mangle]
pub extern "C" fn aligned_alloc(align: size_t, size: size_t) -> *mut c_void {
    aligned_alloc_checked(align, size)
}

/// # Safety
/// `memptr` is valid for a pointer-sized write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: size_t,
    size: size_t,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { posix_memalign_into(memptr, align, size) }
}

#[no_mangle]
pub extern "C" fn memalign(align: size_t, size: size_t) -> *mut c_void {
    memalign_lenient(align, size)
}

#[no_mangle]
pub extern "C" fn valloc(size: size_t) -> *mut c_void {
    alloc_aligned(OS_PAGE, size)
}

#[no_mangle]
pub extern "C" fn pvalloc(size: size_t) -> *mut c_void {
    pvalloc_pages(size)
}
