//! The life of heaps: one per running thread, created or adopted on the thread's first
//! allocation, parked when the thread exits, and adopted by the next new thread. So a
//! program that starts and ends 100,000 threads uses a handful of heaps, and its RSS stays
//! flat. Blocks that other threads free to a parked heap are reclaimed by whoever holds
//! the pool lock next on a slow path.

use super::{drain_remote, fold, release_empty_pages, sentinel, set_current, Heap};
use crate::host::{init, stats, tls};
use crate::size_class::NUM_CLASSES;
use crate::sys::SpinLock;
use core::ptr;

/// Parked heaps and counts. Lock order: HEAPS, then ARENA, then the stats lock.
pub struct Pool {
    parked: *mut Heap,
    active: usize,
    abandoned: usize,
}
// SAFETY: guarded by its lock.
unsafe impl Send for Pool {}

pub static HEAPS: SpinLock<Pool> = SpinLock::new(Pool {
    parked: ptr::null_mut(),
    active: 0,
    abandoned: 0,
});

/// The heap of this thread, creating or adopting one. Null when out of memory.
#[cold]
pub fn thread_heap() -> *mut Heap {
    let h = tls::get();
    if !h.is_null() {
        return h;
    }
    init::ensure();
    let heap = {
        let mut pool = HEAPS.lock();
        let h = pool.parked;
        if !h.is_null() {
            // SAFETY: parked heaps are live and owned by the pool.
            pool.parked = unsafe { (*h).next };
            pool.abandoned -= 1;
        }
        pool.active += 1;
        h
    };
    let heap = if heap.is_null() { new_heap() } else { heap };
    if heap.is_null() {
        HEAPS.lock().active -= 1;
        return heap;
    }
    tls::set(heap);
    init::register_thread(heap);
    init::install_fork_handlers();
    // SAFETY: the heap is ours now.
    unsafe { drain_remote(heap) };
    let pool = HEAPS.lock();
    stats::publish_heaps(pool.active, pool.abandoned);
    heap
}

fn new_heap() -> *mut Heap {
    let Some(mem) = crate::host::meta::alloc(core::mem::size_of::<Heap>()) else {
        return ptr::null_mut();
    };
    let h = mem.as_ptr() as *mut Heap;
    // SAFETY: fresh zeroed memory, page-aligned (enough for the bins' 128) and sized for a
    // Heap, not shared yet; zero is valid for every field (a zeroed inbox is an empty one)
    // but the bins' current pages, which we point at the sentinel.
    unsafe {
        for c in 0..NUM_CLASSES {
            set_current(h, c, sentinel());
        }
    }
    h
}

/// Parks the heap of an exiting thread.
///
/// # Safety
/// `heap` is the calling thread's heap, and the thread will not use it again without
/// adopting it anew.
pub unsafe fn abandon(heap: *mut Heap) {
    // SAFETY: forwarded.
    unsafe {
        drain_remote(heap);
        release_empty_pages(heap, true);
        fold(heap);
    }
    tls::set(ptr::null_mut());
    let mut pool = HEAPS.lock();
    // SAFETY: the heap is no longer used by this thread.
    unsafe { (*heap).next = pool.parked };
    pool.parked = heap;
    pool.active -= 1;
    pool.abandoned += 1;
    stats::publish_heaps(pool.active, pool.abandoned);
}

/// Frees the blocks other threads handed back to parked heaps, and returns their empty
/// pages. Without this, memory freed after its allocating thread exited would wait for a
/// new thread to adopt the heap.
pub fn reclaim_parked(pool: &Pool) {
    let mut h = pool.parked;
    while !h.is_null() {
        // SAFETY: holding the pool lock, nobody can adopt a parked heap, so we may act as
        // its owner; parked heaps are live.
        unsafe {
            if (*h).inbox.has_blocks() {
                drain_remote(h);
                release_empty_pages(h, true);
                fold(h);
            }
            h = (*h).next;
        }
    }
}
