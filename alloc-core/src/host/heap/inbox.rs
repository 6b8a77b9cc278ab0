//! A heap's inbox: the blocks other threads free, on their way back to the owner.
//!
//! A bounded ring of block pointers (Vyukov's bounded queue: many freeing threads, one
//! owner), with a lock-free stack through the blocks' first words for when the ring is
//! full. A stack alone is cheaper to push but slow to drain: each link was written last by
//! the freeing thread, so the owner takes a cache miss per block, and it cannot start one
//! before the previous one ends, since it is following the links. The ring's slots are
//! read in order, so the owner's misses overlap.
//!
//! Invariants: slot `i % RING` holds `seq == i` when free for the push that claims
//! position `i`, and `seq == i + 1` once that push has published its block; the owner,
//! taking position `i`, sets `seq = i + RING` for the push one lap later. `tail` is the
//! next position to claim, `head` the next to take; only the owner moves `head`.

use crate::host::page::Block;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Slots in the ring.
const RING: usize = 256;

#[repr(C)]
struct Slot {
    seq: AtomicUsize,
    block: AtomicPtr<Block>,
}

/// See the module documentation.
#[repr(C, align(64))]
pub struct Inbox {
    /// Next position to claim (freeing threads).
    tail: AtomicUsize,
    /// Blocks freed while the ring was full (a Treiber stack).
    overflow: AtomicPtr<Block>,
    _pad: [u8; 48],
    /// Next position to take (the owner only; atomic so that no `&mut` is ever needed).
    head: AtomicUsize,
    _pad2: [u8; 56],
    slots: [Slot; RING],
}

impl Inbox {
    /// Numbers the slots; the inbox must be zeroed and not yet shared.
    pub fn init(&self) {
        for (i, s) in self.slots.iter().enumerate() {
            s.seq.store(i, Ordering::Relaxed);
        }
    }

    /// Hands `b` to the owner. Lock-free; any thread.
    pub fn push(&self, b: *mut Block) {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos % RING];
            let seq = slot.seq.load(Ordering::Acquire);
            let lead = seq.wrapping_sub(pos) as isize;
            if lead == 0 {
                match self.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        slot.block.store(b, Ordering::Relaxed);
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return;
                    }
                    Err(p) => pos = p,
                }
            } else if lead < 0 {
                // The owner has not taken this slot's block from the last lap: full.
                self.push_overflow(b);
                return;
            } else {
                pos = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    fn push_overflow(&self, b: *mut Block) {
        let mut head = self.overflow.load(Ordering::Relaxed);
        loop {
            // SAFETY: the block is the caller's to write until the push succeeds.
            unsafe { (*b).next = head };
            match self
                .overflow
                .compare_exchange_weak(head, b, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Whether a block is waiting (a hint: a push may be under way).
    pub fn has_blocks(&self) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        self.slots[head % RING].seq.load(Ordering::Relaxed) == head.wrapping_add(1)
            || !self.overflow.load(Ordering::Relaxed).is_null()
    }

    /// Calls `f` on every block published so far.
    ///
    /// # Safety
    /// Only the owner calls this (the heap's thread, or the pool lock's holder for a
    /// parked heap), never twice at once.
    pub unsafe fn drain(&self, mut f: impl FnMut(*mut Block)) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[head % RING];
            if slot.seq.load(Ordering::Acquire) != head.wrapping_add(1) {
                break;
            }
            let b = slot.block.load(Ordering::Relaxed);
            slot.seq.store(head.wrapping_add(RING), Ordering::Release);
            head = head.wrapping_add(1);
            f(b);
        }
        self.head.store(head, Ordering::Relaxed);
        if self.overflow.load(Ordering::Relaxed).is_null() {
            return;
        }
        let mut b = self.overflow.swap(ptr::null_mut(), Ordering::Acquire);
        while !b.is_null() {
            // SAFETY: blocks on the stack are live and were handed to us; the Acquire swap
            // makes their links visible.
            let next = unsafe { (*b).next };
            f(b);
            b = next;
        }
    }
}
