//! The `poolside_*` C API (`include/poolside.h`).
//!
//! These work whether or not the library replaces malloc: a program can link
//! libpoolside.a, or dlopen libpoolside.so, and use poolside for some blocks only. Blocks
//! from `poolside_malloc` and friends are the same as those of the preloaded `malloc`, so
//! under the preload either `free` works for either; without it, free them with
//! `poolside_free`.

use crate::aligned::aligned_alloc_checked;
use crate::malloc::{alloc_natural, alloc_zeroed_array, release, usable};
use crate::realloc::resize;
use libc::{c_char, c_int, c_void, size_t};
use poolside::host;

/// Allocates `size` bytes (16-byte aligned from 16 bytes up). NULL with errno ENOMEM when
/// out of memory. `poolside_malloc(0)` returns a unique block.
#[no_mangle]
pub extern "C" fn poolside_malloc(size: size_t) -> *mut c_void {
    alloc_natural(size)
}

/// Allocates `n * size` zeroed bytes. NULL with errno ENOMEM when out of memory or when
/// `n * size` overflows.
#[no_mangle]
pub extern "C" fn poolside_calloc(n: size_t, size: size_t) -> *mut c_void {
    alloc_zeroed_array(n, size)
}

/// Resizes as glibc's realloc: `p == NULL` allocates, `size == 0` frees and returns NULL,
/// failure returns NULL with errno ENOMEM and leaves `p` intact.
///
/// # Safety
/// `p` is NULL or a live block from this library.
#[no_mangle]
pub unsafe extern "C" fn poolside_realloc(p: *mut c_void, size: size_t) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { resize(p, size) }
}

/// Allocates `size` bytes aligned to `align`, a power of two (else NULL with errno EINVAL).
#[no_mangle]
pub extern "C" fn poolside_aligned_alloc(align: size_t, size: size_t) -> *mut c_void {
    aligned_alloc_checked(align, size)
}

/// Frees a block of this library. NULL and pointers it does not own are ignored. errno is
/// preserved.
///
/// # Safety
/// `p` is NULL, not from this library, or a live block from it not freed since.
#[no_mangle]
pub unsafe extern "C" fn poolside_free(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { release(p) }
}

/// The exact usable size of a live block; 0 for NULL and for pointers not from this
/// library.
#[no_mangle]
pub extern "C" fn poolside_usable_size(p: *const c_void) -> size_t {
    usable(p)
}

/// 1 when `p` lies in memory this library hands out as blocks (every live block's start
/// does), 0 for NULL and for memory it does not manage. The engine answers by page, so a
/// pointer into a block, or to a freed block, may also answer 1.
#[no_mangle]
pub extern "C" fn poolside_owns(p: *const c_void) -> c_int {
    (!p.is_null() && host::owns(p as *const u8)) as c_int
}

/// Gives back what the calling thread's heap holds needlessly: blocks other threads freed
/// to it, the heaps of exited threads, and empty pages. Cheap enough to call often.
#[no_mangle]
pub extern "C" fn poolside_collect() {
    host::collect(false);
}

/// As `poolside_collect`, and also returns every free page of the process to the OS now,
/// instead of after the purge delay.
#[no_mangle]
pub extern "C" fn poolside_purge() {
    host::collect(true);
}

/// The library version, "MAJOR.MINOR.PATCH" (a static string).
#[no_mangle]
pub extern "C" fn poolside_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}
