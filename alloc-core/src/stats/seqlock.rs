//! A seqlock over a section of the stats file.
//!
//! Writers of one section are serialised by the caller (a lock in process memory, never
//! in the shared file); readers in any process copy the section and retry if the sequence
//! number was odd or moved. Fields are touched through `AtomicU64::from_ptr` so that the
//! concurrent reads and writes are not data races.

use core::sync::atomic::{fence, AtomicU64, Ordering};

/// Views a `u64` field of a shared section as an atomic.
///
/// # Safety
/// `p` is valid, 8-byte aligned, and lives as long as `'a`.
#[inline(always)]
pub unsafe fn atomic<'a>(p: *mut u64) -> &'a AtomicU64 {
    // SAFETY: forwarded; AtomicU64 has the layout of u64.
    unsafe { AtomicU64::from_ptr(p) }
}

/// Adds `v` to a field. Only call between [`begin_write`] and [`end_write`].
///
/// # Safety
/// As for [`atomic`].
#[inline(always)]
pub unsafe fn add(p: *mut u64, v: u64) {
    // SAFETY: forwarded. A load and a store rather than fetch_add: writers are serialised.
    let a = unsafe { atomic(p) };
    a.store(a.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

/// Stores `v` into a field. Only call between [`begin_write`] and [`end_write`].
///
/// # Safety
/// As for [`atomic`].
#[inline(always)]
pub unsafe fn set(p: *mut u64, v: u64) {
    // SAFETY: forwarded.
    unsafe { atomic(p) }.store(v, Ordering::Relaxed);
}

/// Reads a field.
///
/// # Safety
/// As for [`atomic`].
#[inline(always)]
pub unsafe fn get(p: *const u64) -> u64 {
    // SAFETY: forwarded.
    unsafe { atomic(p as *mut u64) }.load(Ordering::Relaxed)
}

/// Marks the section as being written (sequence becomes odd).
///
/// # Safety
/// `seq` points to the section's sequence field; the caller holds the section's writer lock.
#[inline]
pub unsafe fn begin_write(seq: *mut u64) {
    // SAFETY: forwarded.
    let s = unsafe { atomic(seq) };
    s.store(s.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
}

/// Marks the section as consistent again (sequence becomes even).
///
/// # Safety
/// Pairs with [`begin_write`].
#[inline]
pub unsafe fn end_write(seq: *mut u64) {
    // SAFETY: forwarded.
    let s = unsafe { atomic(seq) };
    s.store(s.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
}

/// Copies a section of `T` (made of `u64` words) consistently, retrying while a writer is
/// inside it. Gives up after `tries` attempts and returns `None`.
///
/// # Safety
/// `src` points to a `T` whose first field is the sequence number and whose size is a
/// multiple of 8; `T` is plain data.
pub unsafe fn read<T: Copy>(src: *const T, tries: usize) -> Option<T> {
    let words = core::mem::size_of::<T>() / 8;
    let base = src as *const u64;
    for _ in 0..tries {
        // SAFETY: word 0 is the sequence field.
        let s1 = unsafe { get(base) };
        if s1 & 1 == 1 {
            core::hint::spin_loop();
            continue;
        }
        let mut out = core::mem::MaybeUninit::<T>::uninit();
        let dst = out.as_mut_ptr() as *mut u64;
        for i in 0..words {
            // SAFETY: i < words, inside both objects.
            unsafe { dst.add(i).write(get(base.add(i))) };
        }
        fence(Ordering::Acquire);
        // SAFETY: as above.
        if unsafe { get(base) } == s1 {
            // SAFETY: every word was written; T is plain data.
            return Some(unsafe { out.assume_init() });
        }
    }
    None
}
