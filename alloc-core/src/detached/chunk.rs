//! A chunk: one reservation from the memory source, cut into pages, with its page
//! descriptors in a host mapping of their own.
//!
//! Invariants: `meta` points to `pages` descriptors mapped with [`crate::source::os::map`]
//! (zeroed, then set to "uncommitted, no class"); `committed` counts descriptors with
//! `committed == true`; `[base, base + pages * PAGE)` is one live reservation.

use super::page::{PageMeta, NIL, NO_CLASS};
use super::PAGE;
use crate::source::os;
use core::ptr::NonNull;

/// One reservation and its page descriptors.
#[derive(Clone, Copy)]
pub struct Chunk {
    /// Device address of page 0 (0 for an unused slot).
    pub base: usize,
    /// Pages in the chunk.
    pub pages: u32,
    /// Pages backed by memory now.
    pub committed: u32,
    /// The descriptors, in host memory.
    pub meta: *mut PageMeta,
}

impl Chunk {
    /// An unused slot.
    pub const EMPTY: Chunk = Chunk {
        base: 0,
        pages: 0,
        committed: 0,
        meta: core::ptr::null_mut(),
    };

    /// Bytes of host memory holding the descriptors of `pages` pages.
    fn meta_bytes(pages: u32) -> usize {
        let raw = pages as usize * core::mem::size_of::<PageMeta>();
        (raw + os::OS_PAGE - 1) & !(os::OS_PAGE - 1)
    }

    /// Describes a new reservation at `base`; `None` when host memory is short.
    pub fn new(base: NonNull<u8>, pages: u32) -> Option<Chunk> {
        let meta = os::map(Self::meta_bytes(pages))?.as_ptr() as *mut PageMeta;
        for i in 0..pages as usize {
            // SAFETY: the mapping holds `pages` descriptors; zeroed memory is a valid
            // PageMeta (integers and a bool), and only the non-zero fields need setting.
            unsafe {
                let m = &mut *meta.add(i);
                m.class = NO_CLASS;
                m.prev = NIL;
                m.next = NIL;
            }
        }
        Some(Chunk {
            base: base.as_ptr() as usize,
            pages,
            committed: 0,
            meta,
        })
    }

    /// Bytes of address space the chunk covers.
    pub fn bytes(&self) -> usize {
        self.pages as usize * PAGE
    }

    /// Whether `addr` lies inside the chunk.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.base) < self.bytes()
    }

    /// The descriptor of page `i`.
    ///
    /// # Safety
    /// `i < self.pages`, and no other reference to that descriptor is live.
    #[inline]
    pub unsafe fn page<'a>(&self, i: usize) -> &'a mut PageMeta {
        // SAFETY: forwarded; the descriptors live until `free_meta`.
        unsafe { &mut *self.meta.add(i) }
    }

    /// Unmaps the descriptors (the reservation itself is the caller's to release).
    ///
    /// # Safety
    /// No descriptor of this chunk is used afterwards.
    pub unsafe fn free_meta(&mut self) {
        // SAFETY: forwarded; the mapping was made in `new` with the same size.
        unsafe { os::unmap(self.meta as *mut u8, Self::meta_bytes(self.pages)) };
        *self = Chunk::EMPTY;
    }
}
