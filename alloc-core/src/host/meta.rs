//! Memory for the pool's own metadata: thread heaps and segment metadata.
//!
//! By default each object gets a mapping of its own, in 4 KiB pages that fault in as they
//! are touched, so a small program's metadata stays small. When the host pool gives every
//! segment huge pages from the start (`segment::Thp::eager`: a Rust `#[global_allocator]`,
//! or `huge_pages: always`), metadata is carved from 2 MiB regions advised the same way
//! instead: one fault per region, where a heap's 272 KiB inbox ring took up to 68 faults,
//! twice over (the freeing thread's first read maps the zero page, its write copies it).
//! `perf record -e page-faults` of the Rust workload put 1,000 of its 1,600 faults there.
//!
//! Invariants: the mode is set once, at initialisation, before any metadata exists, so
//! [`free`] knows where a block came from. Carved blocks are page-aligned and zeroed; a
//! freed one (segment metadata, when its segment goes back) waits on a list for the next
//! request of its size and is zeroed again then. Regions are never unmapped.

use crate::source::os::{self, HugeAdvice};
use crate::sys::SpinLock;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};

/// Bytes of a region: one huge page.
const REGION: usize = super::segment::HUGE_PAGE;

/// Carve from huge-page regions (see the module documentation).
static CARVE: AtomicBool = AtomicBool::new(false);

/// A freed block, waiting for a request of its size.
struct Freed {
    next: *mut Freed,
    size: usize,
}

struct Carver {
    /// Next free byte of the current region, and its end (both 0 before the first).
    next: usize,
    end: usize,
    freed: *mut Freed,
}

// SAFETY: the pointers are only followed under the lock.
unsafe impl Send for Carver {}

static CARVER: SpinLock<Carver> = SpinLock::new(Carver {
    next: 0,
    end: 0,
    freed: ptr::null_mut(),
});

/// Sets the mode at initialisation: carve from huge-page regions or not.
pub fn set_carving(on: bool) {
    CARVE.store(on, Ordering::Relaxed);
}

/// Takes the carver's lock before a fork (`init`'s handlers: after ARENA, which
/// `new_segment` holds while it calls [`alloc`], and before STATS_LOCK), so that the child
/// does not inherit it taken by a thread it does not have.
pub fn fork_lock() {
    CARVER.raw_lock();
}

/// Releases the lock [`fork_lock`] took, in the parent and in the child.
///
/// # Safety
/// This thread took it with [`fork_lock`] (in the child: the forking thread did).
pub unsafe fn fork_unlock() {
    // SAFETY: forwarded.
    unsafe { CARVER.raw_unlock() };
}

/// `size` bytes of zeroed, page-aligned memory for metadata, or `None`.
pub fn alloc(size: usize) -> Option<NonNull<u8>> {
    alloc_with(CARVE.load(Ordering::Relaxed), size)
}

fn alloc_with(carve: bool, size: usize) -> Option<NonNull<u8>> {
    let size = (size + os::OS_PAGE - 1) & !(os::OS_PAGE - 1);
    if !carve || size > REGION {
        return os::map(size);
    }
    let mut c = CARVER.lock();
    let mut link: *mut *mut Freed = &mut c.freed;
    // SAFETY: the list holds freed blocks of ours, under the lock; each starts with a
    // Freed written by `free`.
    unsafe {
        while !(*link).is_null() {
            let f = *link;
            if (*f).size == size {
                *link = (*f).next;
                ptr::write_bytes(f as *mut u8, 0, size);
                return NonNull::new(f as *mut u8);
            }
            link = &mut (*f).next;
        }
    }
    if c.end - c.next < size {
        // The rest of the old region (at most a few pages) stays unused.
        let region = os::map_aligned(REGION, REGION)?;
        // SAFETY: a fresh mapping of ours; the advice never changes contents.
        unsafe { os::advise_huge(region.as_ptr(), REGION, HugeAdvice::Huge) };
        c.next = region.as_ptr() as usize;
        c.end = c.next + REGION;
    }
    let p = c.next;
    c.next += size;
    NonNull::new(p as *mut u8)
}

/// Returns a block from [`alloc`].
///
/// # Safety
/// `p` came from `alloc(size)` and nothing uses it any more.
pub unsafe fn free(p: *mut u8, size: usize) {
    // SAFETY: forwarded; the mode has not changed since the block was allocated.
    unsafe { free_with(CARVE.load(Ordering::Relaxed), p, size) }
}

/// # Safety
/// `p` came from `alloc_with(carve, size)` and nothing uses it any more.
unsafe fn free_with(carve: bool, p: *mut u8, size: usize) {
    let size = (size + os::OS_PAGE - 1) & !(os::OS_PAGE - 1);
    if !carve || size > REGION {
        // SAFETY: forwarded: its own mapping, unused.
        unsafe { os::unmap(p, size) };
        return;
    }
    let mut c = CARVER.lock();
    let f = p as *mut Freed;
    // SAFETY: the block is ours, unused, page-aligned and at least a page long.
    unsafe {
        f.write(Freed {
            next: c.freed,
            size,
        })
    };
    c.freed = f;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // Sizes no real metadata has (the process shares the list: heaps and segment metadata
    // round to 69 and 18 pages).
    fn carved_blocks_are_zeroed_aligned_and_reused_by_size() {
        let a = alloc_with(true, 10_000).unwrap().as_ptr();
        let b = alloc_with(true, 5000).unwrap().as_ptr();
        assert_eq!(a as usize % os::OS_PAGE, 0);
        assert_eq!(b as usize % os::OS_PAGE, 0);
        // SAFETY: both are ours, 10,000 and 5,000 bytes long.
        unsafe {
            assert!(core::slice::from_raw_parts(a, 10_000)
                .iter()
                .all(|&x| x == 0));
            a.write_bytes(0xab, 10_000);
            b.write_bytes(0xcd, 5000);
            free_with(true, a, 10_000);
        }
        // Another size does not take it; the same size does, zeroed again.
        let c = alloc_with(true, 4096).unwrap().as_ptr();
        assert_ne!(c, a);
        let d = alloc_with(true, 10_000).unwrap().as_ptr();
        assert_eq!(d, a);
        // SAFETY: d is ours, 10,000 bytes long.
        unsafe {
            assert!(core::slice::from_raw_parts(d, 10_000)
                .iter()
                .all(|&x| x == 0))
        };
        // SAFETY: b is ours and still 0xcd: the reuse of a did not touch it.
        unsafe { assert_eq!(*b, 0xcd) };
    }
}
