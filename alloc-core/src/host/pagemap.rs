//! Address to metadata, in O(1) and without locks.
//!
//! Every 32 MiB slot of the 48-bit address space has one word: 0 when poolside owns nothing
//! there, a `*mut Segment` for a segment, or a `*mut Huge` with bit 0 set for a dedicated
//! mapping. Two levels: a static top array of 2048 words, and 32 KiB leaves mapped on first
//! use and never freed (so a reader can never see a leaf vanish).
//!
//! Entries are published with Release after the metadata they point to is initialised, and
//! read with Acquire. A pointer poolside did not allocate finds 0 (or, inside the trimmed
//! tail of a huge mapping's last slot, a `Huge` whose range does not contain it), which is
//! how foreign pointers are recognised.

use super::SEGMENT_SHIFT;
use crate::source::os;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

const ADDR_BITS: u32 = 48;
const SLOT_BITS: u32 = ADDR_BITS - SEGMENT_SHIFT;
const LEAF_BITS: u32 = 12;
const TOP_BITS: u32 = SLOT_BITS - LEAF_BITS;
const LEAF_LEN: usize = 1 << LEAF_BITS;

type Leaf = [AtomicUsize; LEAF_LEN];

static TOP: [AtomicPtr<Leaf>; 1 << TOP_BITS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; 1 << TOP_BITS];

/// The entry for the slot holding `addr`, or 0.
#[inline(always)]
pub fn lookup(addr: usize) -> usize {
    if addr >> ADDR_BITS != 0 {
        return 0;
    }
    let slot = addr >> SEGMENT_SHIFT;
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
            // SAFETY: our mapping was never published; the winner's lives forever.
            unsafe { os::unmap(fresh as *mut u8, core::mem::size_of::<Leaf>()) };
            Some(unsafe { &*winner })
        }
    }
}

/// Sets the entry of every slot overlapping `[addr, addr + len)` to `value`. Returns false
/// (changing nothing) when a leaf cannot be mapped.
pub fn set(addr: usize, len: usize, value: usize) -> bool {
    debug_assert!(len > 0 && (addr + len - 1) >> ADDR_BITS == 0);
    let first = addr >> SEGMENT_SHIFT;
    let last = (addr + len - 1) >> SEGMENT_SHIFT;
    // Map all needed leaves first so that failure leaves no half-registered range.
    for slot in first..=last {
        if leaf_for(slot).is_none() {
            return false;
        }
    }
    for slot in first..=last {
        if let Some(leaf) = leaf_for(slot) {
            leaf[slot & (LEAF_LEN - 1)].store(value, Ordering::Release);
        }
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
        let base = 0x5a5a_0000_0000usize & !((1 << SEGMENT_SHIFT) - 1);
        assert_eq!(lookup(base), 0);
        assert!(set(base, (1 << SEGMENT_SHIFT) + 1, 0xdead0));
        assert_eq!(lookup(base + 17), 0xdead0);
        assert_eq!(lookup(base + (1 << SEGMENT_SHIFT)), 0xdead0);
        assert_eq!(lookup(base + (2 << SEGMENT_SHIFT)), 0);
        assert!(set(base, 2 << SEGMENT_SHIFT, 0));
        assert_eq!(lookup(base), 0);
        assert_eq!(lookup(usize::MAX), 0);
    }
}
