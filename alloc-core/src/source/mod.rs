//! Memory sources: where a pool's memory comes from.
//!
//! The engine never asks "is this host or device memory?". It reserves address space,
//! commits and decommits ranges of it, and releases it, through [`MemorySource`]. The host
//! implementation ([`os::OsSource`]) maps anonymous memory; the CUDA plugin implements the
//! same trait over cuMemAddressReserve / cuMemCreate / cuMemMap.
//!
//! A source whose memory the CPU cannot touch sets [`MemorySource::CPU_ACCESSIBLE`] to
//! false; the engine then keeps every byte of its bookkeeping in host memory taken from
//! [`os`], never inside the managed range.

pub mod os;

use core::ptr::NonNull;

/// A provider of address space and the memory behind it.
///
/// # Safety
/// Implementations promise that:
/// - a range returned by `reserve` is aligned as asked, belongs to nobody else until it is
///   passed to `release`, and never overlaps another live reservation;
/// - after `commit` returns true, the range is backed until `decommit` or `release`;
/// - they are callable from any thread, and never allocate through the pool they serve.
pub unsafe trait MemorySource: Sync {
    /// Whether the CPU may read and write the memory. When false, the engine stores no
    /// metadata in it (no intrusive free lists).
    const CPU_ACCESSIBLE: bool;
    /// Whether `reserve` hands back memory that is already usable (commit is then free).
    const RESERVE_COMMITS: bool;

    /// The unit of commit and decommit, a power of two.
    fn granularity(&self) -> usize;

    /// Reserves `size` bytes of address space aligned to `align` (a power of two, at least
    /// the granularity). `None` when the source is exhausted.
    fn reserve(&self, size: usize, align: usize) -> Option<NonNull<u8>>;

    /// Returns a reservation made by `reserve`.
    ///
    /// # Safety
    /// `base` and `size` are exactly those of one live reservation, no longer used.
    unsafe fn release(&self, base: NonNull<u8>, size: usize);

    /// Backs `[ptr, ptr + size)` with memory; false when no memory is left.
    ///
    /// # Safety
    /// The range lies inside one live reservation and is granularity-aligned.
    unsafe fn commit(&self, ptr: NonNull<u8>, size: usize) -> bool;

    /// Drops the memory behind `[ptr, ptr + size)`; the range stays reserved, and reads
    /// zero (host) or must be committed again (device) before use.
    ///
    /// # Safety
    /// The range lies inside one live reservation, is granularity-aligned, and holds no
    /// live data.
    unsafe fn decommit(&self, ptr: NonNull<u8>, size: usize);
}
