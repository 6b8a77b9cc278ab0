//! Address to metadata, in O(1) and without locks.
//!
//! Every 64 KiB unit of the 48-bit address space has one word: 0 when poolside owns nothing
//! there, a `*mut Page` (the head of the span holding the unit), or a `*mut Huge` for a
//! dedicated mapping (told apart by the owner word both keep at one offset, not by a tag
//! bit, which would cost every free a test). A free costs two dependent loads to find its
//! span. Two levels: a static top array of 16,384 words, and 2 MiB leaves reserved on first use
//! (`MAP_NORESERVE`: only the 4 KiB pages holding live entries are ever touched) and never
//! unmapped, so a reader can never see a leaf vanish.
//!
//! Spans set every unit they cover ([`set`]), since a free may name any block inside them.
//! A huge mapping sets only the unit holding its base ([`set_one`]): the only pointer that
//! can be freed, resized or measured is its base, so one word registers it whatever its
//! size (a 2^46-byte block costs what a 32 MiB one does), and a pointer further inside it
//! finds 0, like any other pointer poolside did not return. [`clear_one`] removes that word
//! and hands the leaf's 4 KiB page back to the kernel once it holds no entry at all, so
//! freed huge blocks leave no pagemap memory behind.
//!
//! Entries are published with Release after the metadata they point to is initialised, and
//! read with Acquire. A pointer poolside did not allocate finds 0 (or, inside the first unit
//! of a huge mapping, a `Huge` whose base is not it), which is how foreign pointers are
//! recognised. Every writer of entries holds the arena lock: that is what lets [`clear_one`]
//! drop a page of zero entries without losing an entry set meanwhile. A reader racing with
//! the drop reads 0 before and after it. Mapping a leaf ([`prepare`]) needs no lock: leaves
//! are published by compare-exchange and never dropped, so the huge paths prepare one
//! outside the lock, before a move, and set the entry under it.

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
    // Addresses of 48 bits or more give an index past the array, so the range check is
    // the bounds check (LLVM still emits it as `addr >> 48 != 0`).
    let top = addr >> (UNIT_SHIFT + LEAF_BITS);
    if top >= TOP.len() {
        return 0;
    }
    let leaf = TOP[top].load(Ordering::Acquire);
    if leaf.is_null() {
        return 0;
    }
    let slot = addr >> UNIT_SHIFT;
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

/// Sets the entry of the one unit holding `addr` (the base of a huge mapping) to `value`.
/// False (changing nothing) when its leaf cannot be mapped; never fails after [`prepare`]
/// for the same address.
pub fn set_one(addr: usize, value: usize) -> bool {
    if addr >> ADDR_BITS != 0 {
        return false;
    }
    let slot = addr >> UNIT_SHIFT;
    let Some(leaf) = leaf_for(slot) else {
        return false;
    };
    leaf[slot & (LEAF_LEN - 1)].store(value, Ordering::Release);
    true
}

/// Maps the leaf that will hold the entry of `addr`, so that a later [`set_one`] cannot
/// fail. False when it cannot be mapped.
pub fn prepare(addr: usize) -> bool {
    addr >> ADDR_BITS == 0 && leaf_for(addr >> UNIT_SHIFT).is_some()
}

/// Entries per OS page of a leaf.
const PAGE_ENTRIES: usize = os::OS_PAGE / core::mem::size_of::<usize>();

/// Clears the entry of the unit holding `addr` (set by [`set_one`]), and returns the
/// leaf's OS page holding it to the kernel when no entry in that page is set any more.
pub fn clear_one(addr: usize) {
    if addr >> ADDR_BITS != 0 {
        return;
    }
    let slot = addr >> UNIT_SHIFT;
    let leaf = TOP[slot >> LEAF_BITS].load(Ordering::Acquire);
    if leaf.is_null() {
        return;
    }
    // SAFETY: leaves are never unmapped once published; the index is below LEAF_LEN.
    let leaf = unsafe { &*leaf };
    let i = slot & (LEAF_LEN - 1);
    leaf[i].store(0, Ordering::Release);
    let first = i & !(PAGE_ENTRIES - 1);
    let page = &leaf[first..first + PAGE_ENTRIES];
    if page.iter().all(|e| e.load(Ordering::Relaxed) == 0) {
        // SAFETY: the page lies inside our leaf mapping and every entry in it is 0; no entry
        // can be set meanwhile (all writers hold the arena lock, as the caller does), and
        // after the purge the page reads as zero, which is what it holds now.
        unsafe { os::purge(page.as_ptr() as *mut u8, os::OS_PAGE) };
    }
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

    /// Resident pages of the leaf OS page holding the entry of `addr` (mincore).
    fn entry_page_resident(addr: usize) -> bool {
        let slot = addr >> UNIT_SHIFT;
        let leaf = TOP[slot >> LEAF_BITS].load(Ordering::Acquire);
        assert!(!leaf.is_null());
        // SAFETY: the leaf is published and the index is in range.
        let e = unsafe { &(*leaf)[slot & (LEAF_LEN - 1)] } as *const AtomicUsize as usize;
        let page = e & !(os::OS_PAGE - 1);
        let mut v = 0u8;
        // SAFETY: the page lies inside a mapping of ours; v receives one byte.
        let r = unsafe { libc::mincore(page as *mut libc::c_void, os::OS_PAGE, &mut v) };
        assert_eq!(r, 0);
        v & 1 == 1
    }

    #[test]
    fn one_entry_per_huge_block_and_its_page_returned() {
        // An address range no other test uses; two bases 32 MiB apart share a leaf page.
        let base = 0x6b00_0000_0000usize;
        let other = base + (1 << 25) - (1 << UNIT_SHIFT);
        assert!(prepare(base));
        assert!(set_one(base, 0x1000));
        assert!(set_one(other, 0x2000));
        assert_eq!(lookup(base + 5), 0x1000);
        // Only the base unit is registered.
        assert_eq!(lookup(base + (1 << UNIT_SHIFT)), 0);
        assert!(entry_page_resident(base));
        clear_one(base);
        assert_eq!(lookup(base), 0);
        // The other entry in the page keeps it.
        assert_eq!(lookup(other), 0x2000);
        assert!(entry_page_resident(base));
        clear_one(other);
        // (Checked before any read: reading the page again maps the kernel's zero page.)
        assert!(
            !entry_page_resident(base),
            "an all-zero leaf page is returned"
        );
        assert_eq!(lookup(other), 0);
        // And it still reads, and can be set again.
        assert!(set_one(base, 0x3000));
        assert_eq!(lookup(base), 0x3000);
        clear_one(base);
        clear_one(usize::MAX);
    }
}
