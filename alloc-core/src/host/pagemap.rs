//! Address to metadata, in O(1) and without locks.
//!
//! Every 64 KiB unit of the 48-bit address space has one word: 0 when poolside owns nothing
//! there, a `*mut Page` (the head of the span holding the unit), or a `*mut Huge` with bit 0
//! set for a dedicated mapping. A free costs two dependent loads to find its span. Two
//! levels: a static top array of 16,384 words, and 2 MiB leaves reserved on first use
//! (`MAP_NORESERVE`: only the 4 KiB pages holding live entries are ever touched) and never
//! freed, so a reader can never see a leaf vanish.
//!
//! Entries are published with Release after the metadata they point to is initialised, and
//! read with Acquire. A pointer poolside did not allocate finds 0 (or, inside the last unit
//! of a huge mapping, a `Huge` whose base is not it), which is how foreign pointers are
//! recognised.

use super::UNIT_SHIFT;
use crate::source::os;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

const ADDR_BITS: u32 = 48;
const SLOT_BITS: u32 = ADDR_BITS - UNIT_SHIFT;
const LEAF_BITS: u32 = 18;
const TOP_BITS: u32 = SLOT_BITS - LEAF_BITS;
const LEAF_LEN: usize = 1 << LEAF_BITS;

type Leaf = [AtomicUsize; LEAF_LEN];

static TOP: [AtomicPtr<Leaf>; 1 << TOP_BITS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; 1 << TOP_BITS];

/// The entry for the unit holding `addr`, or 0.
#[inline(always)]
pub fn lookup(addr: usize) -> usize {
    if addr >> ADDR_BITS != 0 {
        return 0;
    }
    let slot = addr >> UNIT_SHIFT;
    let leaf = TOP[slot >> LEAF_BITS].load(Ordering::Acquire);
    if leaf.is_null() {
        return 0;
    }
    // SAFETY: leaves are never freed once published, and the index is below LEAF_LEN.
    unsafe { (*leaf)[slot & (LEAF_LEN - 1)].load(Ordering::Acquire) }
}

fn leaf_for(slot: usize) -> Option<&'static Leaf> {
    let top = &TOP[slot >> LEAF_BITS];
    let cur = top.load(Ordering::Acquire);
    if !cur.is_null() {
        // SAFETY: published leaves live forever.
        return Some(unsafe { &*cur });
    }
    let fresh = os::map(core::mem::size_of::<Leaf>())?.as_ptr() as *mut Leaf;
    match top.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: we just published our zeroed mapping (all-zero AtomicUsize are valid).
        Ok(_) => Some(unsafe { &*fresh }),
        Err(winner) => {
            // SAFETY: our mapping was never published, so nobody else can see it.
            unsafe { os::unmap(fresh as *mut u8, core::mem::size_of::<Leaf>()) };
            // SAFETY: the winner's leaf was published and leaves live forever.
            Some(unsafe { &*winner })
        }
    }
}

/// Sets the entry of every unit overlapping `[addr, addr + len)` to `value`. Returns false
/// (changing nothing) when a leaf cannot be mapped.
pub fn set(addr: usize, len: usize, value: usize) -> bool {
    debug_assert!(len > 0 && (addr + len - 1) >> ADDR_BITS == 0);
    let first = addr >> UNIT_SHIFT;
    let last = (addr + len - 1) >> UNIT_SHIFT;
    // Map all needed leaves first so that failure leaves no half-registered range.
    for slot in first..=last {
        if leaf_for(slot).is_none() {
            return false;
        }
    }
    let mut slot = first;
    while slot <= last {
        // Every leaf exists now; store a leaf's worth of entries per top lookup.
        let Some(leaf) = leaf_for(slot) else {
            return false;
        };
        let end = last.min(slot | (LEAF_LEN - 1));
        for s in slot..=end {
            leaf[s & (LEAF_LEN - 1)].store(value, Ordering::Release);
        }
        slot = end + 1;
    }
    true
}

/// Whether `[addr, addr+len)` lies in addressable space the pagemap covers.
pub fn covers(addr: usize, len: usize) -> bool {
    addr.checked_add(len)
        .is_some_and(|end| end >> ADDR_BITS == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_lookup_slots() {
        let base = 0x5a5a_0000_0000usize;
        assert_eq!(lookup(base), 0);
        assert!(set(base, (1 << UNIT_SHIFT) + 1, 0xdead0));
        assert_eq!(lookup(base + 17), 0xdead0);
        assert_eq!(lookup(base + (1 << UNIT_SHIFT)), 0xdead0);
        assert_eq!(lookup(base + (2 << UNIT_SHIFT)), 0);
        // A range crossing a leaf boundary.
        let edge = (1usize << (UNIT_SHIFT + LEAF_BITS)) * 3 - (1 << UNIT_SHIFT);
        assert!(set(edge, 2 << UNIT_SHIFT, 7 << 1));
        assert_eq!(lookup(edge), 14);
        assert_eq!(lookup(edge + (1 << UNIT_SHIFT)), 14);
        assert!(set(edge, 2 << UNIT_SHIFT, 0));
        assert!(set(base, 2 << UNIT_SHIFT, 0));
        assert_eq!(lookup(base), 0);
        assert_eq!(lookup(usize::MAX), 0);
    }
}
