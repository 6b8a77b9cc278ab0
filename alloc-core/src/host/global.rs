//! `#[global_allocator] static GLOBAL: Poolside = Poolside;`

use core::alloc::{GlobalAlloc, Layout};

/// The poolside host allocator, for Rust programs.
pub struct Poolside;

// SAFETY: every method forwards to the host pool, which returns blocks of at least the
// layout's size and alignment, or null, and accepts back exactly the blocks it returned.
unsafe impl GlobalAlloc for Poolside {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        super::alloc(layout.size(), layout.align())
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned.
        unsafe { super::free(ptr) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        super::alloc_zeroed(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a live block with this layout.
        unsafe { super::realloc(ptr, new_size, layout.align()) }
    }
}
