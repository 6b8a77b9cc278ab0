//! Shared benchmark helpers: the allocators under test, behind one interface.

use std::alloc::{GlobalAlloc, Layout, System};

/// An allocator under test, named for the report.
pub struct Subject {
    pub name: &'static str,
    pub alloc: &'static (dyn GlobalAlloc + Sync),
}

static POOLSIDE: poolside::Poolside = poolside::Poolside;
static SYSTEM: System = System;

/// poolside and std's System allocator; the bench adds mimalloc (a dev-dependency).
pub fn base_subjects() -> Vec<Subject> {
    vec![
        Subject {
            name: "poolside",
            alloc: &POOLSIDE,
        },
        Subject {
            name: "system",
            alloc: &SYSTEM,
        },
    ]
}

/// Allocates `size` bytes (align 8) or aborts: a benchmark must not measure failures.
#[inline(always)]
pub fn must_alloc(a: &dyn GlobalAlloc, size: usize) -> *mut u8 {
    // SAFETY: size is non-zero in every benchmark; align 8 is valid.
    let p = unsafe { a.alloc(Layout::from_size_align_unchecked(size, 8)) };
    assert!(!p.is_null(), "allocation of {size} bytes failed");
    p
}

/// Frees a block from `must_alloc`.
///
/// # Safety
/// `p` came from `must_alloc(a, size)`.
#[inline(always)]
pub unsafe fn free(a: &dyn GlobalAlloc, p: *mut u8, size: usize) {
    // SAFETY: forwarded.
    unsafe { a.dealloc(p, Layout::from_size_align_unchecked(size, 8)) }
}

pub mod rust_workload;
