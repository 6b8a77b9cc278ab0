//! glibc's internal names for the malloc family.
//!
//! Some programs and libraries call these directly (older ld.so and libc internals did, as
//! do allocators layered on glibc's); each must reach poolside too, or a block would be
//! allocated by one allocator and freed by another.

use crate::aligned::{alloc_aligned, memalign_lenient, posix_memalign_into, pvalloc_pages};
use crate::malloc::{alloc_natural, alloc_zeroed_array, release};
use crate::realloc::resize;
use libc::{c_int, c_void, size_t};
use poolside::source::os::OS_PAGE;

#[no_mangle]
pub extern "C" fn __libc_malloc(size: size_t) -> *mut c_void {
    alloc_natural(size)
}

#[no_mangle]
pub extern "C" fn __libc_calloc(n: size_t, size: size_t) -> *mut c_void {
    alloc_zeroed_array(n, size)
}

/// # Safety
/// `p` is null, foreign, or a live block of this library not freed since.
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: size_t) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { resize(p, size) }
}

/// # Safety
/// `p` is null, foreign, or a live block of this library not freed since.
#[no_mangle]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { release(p) }
}

/// # Safety
/// As for [`__libc_free`].
#[no_mangle]
pub unsafe extern "C" fn __libc_cfree(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { release(p) }
}

#[no_mangle]
pub extern "C" fn __libc_memalign(align: size_t, size: size_t) -> *mut c_void {
    memalign_lenient(align, size)
}

#[no_mangle]
pub extern "C" fn __libc_valloc(size: size_t) -> *mut c_void {
    alloc_aligned(OS_PAGE, size)
}

#[no_mangle]
pub extern "C" fn __libc_pvalloc(size: size_t) -> *mut c_void {
    pvalloc_pages(size)
}

/// # Safety
/// `memptr` is valid for a pointer-sized write.
#[no_mangle]
pub unsafe extern "C" fn __posix_memalign(
    memptr: *mut *mut c_void,
    align: size_t,
    size: size_t,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { posix_memalign_into(memptr, align, size) }
}
