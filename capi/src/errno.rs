//! errno access without allocating. `__errno_location` reads libc's own initial-exec TLS,
//! which the loader sets up before any code of ours can run.

use libc::c_int;

/// Sets the calling thread's errno.
#[inline]
pub fn set(e: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = e };
}

/// Runs `f` and leaves errno as it was before (`free` must not change errno, POSIX.1-2024,
/// yet the engine's slow paths make syscalls such as munmap that may fail).
#[inline(always)]
pub fn preserving<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: as in `set`; the slot belongs to this thread for its whole life.
    let slot = unsafe { libc::__errno_location() };
    // SAFETY: the slot is valid and only this thread uses it.
    let saved = unsafe { *slot };
    let r = f();
    // SAFETY: as above.
    unsafe { *slot = saved };
    r
}
