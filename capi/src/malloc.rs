//! malloc, calloc, free, cfree, malloc_usable_size.
//!
//! Invariants:
//! - every block of 16 bytes or more is 16-byte aligned, smaller ones 8-byte aligned
//!   ([`natural_align`]): what glibc guarantees for every object that can need it, since an
//!   object with 16-byte alignment has a size that is a multiple of 16;
//! - a null result always comes with errno = ENOMEM, and only after the pool gave back
//!   everything it could, unless no memory given back could help ([`alloc_or_retry`]);
//! - `free` and `cfree` never change errno and ignore null and foreign pointers.

use crate::errno;
use libc::{c_void, size_t};
use poolside::host;

/// The alignment a plain allocation of `size` bytes gets.
#[inline(always)]
pub fn natural_align(size: usize) -> usize {
    if size <= 8 {
        8
    } else {
        16
    }
}

/// Marks a failed allocation: errno = ENOMEM, null.
#[cold]
#[inline(never)]
pub fn fail_nomem() -> *mut c_void {
    errno::set(libc::ENOMEM);
    core::ptr::null_mut()
}

/// Allocates `size` bytes aligned to `align` (a power of two); null with ENOMEM.
///
/// When the engine fails, the OS refused memory (mmap failed: address-space limit, map
/// count, or no memory). The pool may still hold free segments and cached mappings, which
/// count against those limits; giving them back (`collect(true)`) and trying once more
/// turns many such failures into successes. Requests beyond PTRDIFF_MAX skip that: they
/// can never succeed, and probing with them is common. So do requests the kernel refuses
/// outright (in overcommit mode 0, above RAM + swap): giving back memory cannot help them.
#[inline(always)]
pub fn alloc_or_retry(size: usize, align: usize, zeroed: bool) -> *mut c_void {
    let p = if zeroed {
        host::alloc_zeroed(size, align)
    } else {
        host::alloc(size, align)
    };
    if p.is_null() {
        return retry(size, align, zeroed);
    }
    p as *mut c_void
}

#[cold]
#[inline(never)]
fn retry(size: usize, align: usize, zeroed: bool) -> *mut c_void {
    if size > isize::MAX as usize || poolside::sys::kernel_refuses_outright(size) {
        return fail_nomem();
    }
    host::collect(true);
    let p = if zeroed {
        host::alloc_zeroed(size, align)
    } else {
        host::alloc(size, align)
    };
    if p.is_null() {
        return fail_nomem();
    }
    p as *mut c_void
}

/// malloc's body, shared by every entry point that allocates with natural alignment: the
/// engine's fast path inline, everything else behind one tail call, so that the common
/// case runs without a stack frame.
#[inline(always)]
pub fn alloc_natural(size: usize) -> *mut c_void {
    let p = host::alloc_fast_natural(size);
    if !p.is_null() {
        return p as *mut c_void;
    }
    alloc_natural_slow(size)
}

/// [`alloc_natural`] past the fast path.
#[cold]
#[inline(never)]
fn alloc_natural_slow(size: usize) -> *mut c_void {
    // First the engine's short slow path; the rest behind a tail call, so that this part
    // runs without a stack frame too (see host::alloc_own_frees_natural).
    let p = host::alloc_own_frees_natural(size);
    if !p.is_null() {
        return p as *mut c_void;
    }
    alloc_natural_rest(size)
}

/// [`alloc_natural_slow`] past the engine's short slow path.
#[cold]
#[inline(never)]
fn alloc_natural_rest(size: usize) -> *mut c_void {
    alloc_or_retry(size, natural_align(size), false)
}

/// calloc's body: overflow of `n * size` is an allocation failure.
///
/// The natural alignment goes through the size, as in malloc's fast path
/// (`host::alloc_fast_natural`): rounded up to 8 or 16 bytes with a mask, at alignment 8,
/// so that no branch picks between the engine's paths for the two alignments. A block of
/// a class that is a multiple of 16 is 16-aligned, and large and huge blocks are
/// page-aligned.
#[inline]
pub fn alloc_zeroed_array(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        return fail_nomem();
    };
    if total > isize::MAX as usize {
        // Nothing that large can succeed, and the rounding below must not wrap.
        return fail_nomem();
    }
    let mask = 7 | ((total > 8) as usize) << 3;
    alloc_or_retry((total + mask) & !mask, 8, true)
}

/// free's body.
///
/// # Safety
/// `p` is null, foreign, or a live block of this library not freed since.
#[inline(always)]
pub unsafe fn release(p: *mut c_void) {
    // SAFETY: forwarded contract; the engine ignores null and foreign pointers.
    unsafe { host::free_with::<KeepErrno>(p as *mut u8) }
}

/// Runs a free's slow part (the only one that makes system calls) with errno kept.
struct KeepErrno;

impl host::SlowFree for KeepErrno {
    #[inline(always)]
    fn run(f: impl FnOnce()) {
        slow_free(f)
    }
}

/// A free's slow part, out of line: the fast path then only tail-calls it, and needs no
/// stack frame or saved registers of its own (saving errno around the call kept four
/// registers and a frame on every free: 12 of its 45 instructions under CPython).
#[cold]
#[inline(never)]
fn slow_free(f: impl FnOnce()) {
    errno::preserving(f)
}

/// malloc_usable_size's body: exact, 0 for null and foreign pointers.
#[inline]
pub fn usable(p: *const c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    host::usable_size(p as *const u8)
}

#[no_mangle]
pub extern "C" fn malloc(size: size_t) -> *mut c_void {
    alloc_natural(size)
}

#[no_mangle]
pub extern "C" fn calloc(n: size_t, size: size_t) -> *mut c_void {
    alloc_zeroed_array(n, size)
}

/// # Safety
/// `p` is null, foreign, or a live block of this library not freed since.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { release(p) }
}

/// The old name of free, still called by some programs.
///
/// # Safety
/// As for [`free`].
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { release(p) }
}

#[no_mangle]
pub extern "C" fn malloc_usable_size(p: *mut c_void) -> size_t {
    usable(p)
}
