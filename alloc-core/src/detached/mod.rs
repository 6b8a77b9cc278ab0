//! Pools whose metadata is detached from the memory they manage: device memory the CPU
//! cannot touch.
//!
//! [`pool::DetachedPool`] is a size-class pool over any [`crate::source::MemorySource`].
//! It serves requests up to [`crate::size_class::MAX_SMALL`] from [`PAGE`]-sized pages,
//! each page holding blocks of one class, so it holds at least one page per class in use.
//! (The CUDA plugin's device pool used it for its small blocks, and no longer does: with
//! many sizes, a page per class cost 4.5x the live bytes on a replayed training trace,
//! where blocks of all sizes sharing pages, as PyTorch packs its small pool, cost 1.1x.) Every byte of bookkeeping (page descriptors and their free bitmaps) lives in
//! host memory taken from [`crate::source::os`], never inside the managed range, so the
//! pool works whether or not `CPU_ACCESSIBLE` is set. Nothing here allocates through a
//! global allocator, formats, or panics.

pub mod chunk;
pub mod page;
pub mod pool;

#[cfg(test)]
mod tests;

pub use pool::{DetachedPool, FreeError, PoolStats};

/// Page size: the unit the pool commits and decommits, and the span of one size class.
/// PyTorch's small pool uses segments of the same size.
pub const PAGE: usize = 2 << 20;
/// Every block is a multiple of this and aligned to it (PyTorch's minimum block size).
pub const MIN_BLOCK: usize = 512;
/// Blocks per page at the smallest class; sizes the free bitmaps.
pub const MAX_BLOCKS_PER_PAGE: usize = PAGE / MIN_BLOCK;

/// The size class serving a request of `size` bytes, or `None` above
/// [`crate::size_class::MAX_SMALL`].
///
/// The request is first rounded up to [`MIN_BLOCK`], then to the smallest class whose
/// block size is a multiple of [`MIN_BLOCK`], so every block of a page-aligned page is
/// [`MIN_BLOCK`]-aligned.
#[inline]
pub fn class_for_request(size: usize) -> Option<usize> {
    if size > crate::size_class::MAX_SMALL {
        return None;
    }
    let rounded = (size.max(1) + MIN_BLOCK - 1) & !(MIN_BLOCK - 1);
    crate::size_class::class_for(rounded, MIN_BLOCK)
}
