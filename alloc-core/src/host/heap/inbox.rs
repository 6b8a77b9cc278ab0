//! A heap's inbox: the blocks other threads free, on their way back to the owner.
//!
//! A bounded ring of block pointers (Vyukov's bounded queue: many freeing threads, one
//! owner), with lock-free stacks through the blocks' first words for when the ring is
//! full. A stack alone is cheaper to push but slow to drain: each link was written last by
//! the freeing thread, so the owner takes a cache miss per block, and it cannot start one
//! before the previous one ends, since it is following the links. The ring's slots are
//! read in order, so the owner's misses overlap. For the same reason there are
//! [`STACKS`] overflow stacks (a block's address picks one), which the owner walks side by
//! side: the next links of all of them are loaded before any block is handed on, so
//! their misses overlap too.
//!
//! Invariants: slot `i % RING` holds `seq == i` when free for the push that claims
//! position `i`, and `seq == i + 1` once that push has published its block; the owner,
//! taking position `i`, sets `seq = i + RING` for the push one lap later. `tail` is the
//! next position to claim, `head` the next to take; only the owner moves `head`. A slot
//! stores its `seq` less its index, so that a zeroed inbox is a valid empty one and the
//! ring's pages cost no memory until blocks come through them.
//!
//! The ring is large (16,384 slots, 256 KiB of address space per heap) because a thread
//! that drops a collection another thread built frees tens of thousands of that heap's
//! blocks at once: with 256 slots most of them went to the stack, and draining it was 45%
//! of the Rust workload's CPU time (perf), all in the one load that follows each link.
//!
//! A fork while another thread sits between claiming a slot and publishing it leaves the
//! slot unpublished in the child: the child's drain stops there, the ring fills, and later
//! frees take the overflow stacks. At most `RING` blocks are never reused; nothing breaks.

use crate::host::page::Block;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Slots in the ring.
const RING: usize = 16384;

/// Overflow stacks. With more threads than cores the owner is often descheduled while
/// another thread frees a whole collection it built, and the ring fills: `perf` of
/// `benches/rust_workload.sh` (8 threads on 2 vCPUs) put 36% of all samples on the one
/// load of the next link in a single stack's walk.
const STACKS: usize = 8;

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
    _pad0: [u8; 56],
    /// Blocks freed while the ring was full (Treiber stacks; [`stack_of`] picks one).
    overflow: [AtomicPtr<Block>; STACKS],
    /// Next position to take (the owner only; atomic so that no `&mut` is ever needed).
    head: AtomicUsize,
    _pad2: [u8; 56],
    slots: [Slot; RING],
}

/// The overflow stack a block goes to: a multiplicative hash of its address, so that
/// neighbouring blocks of a page spread over the stacks.
#[inline(always)]
fn stack_of(b: *mut Block) -> usize {
    (b as usize >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - STACKS.ilog2())
}

impl Slot {
    /// The slot's `seq` (see the module documentation); `index` is its place in the ring.
    #[inline(always)]
    fn seq(&self, index: usize, order: Ordering) -> usize {
        self.seq.load(order).wrapping_add(index)
    }

    #[inline(always)]
    fn set_seq(&self, index: usize, seq: usize, order: Ordering) {
        self.seq.store(seq.wrapping_sub(index), order);
    }
}

impl Inbox {
    /// Hands `b` to the owner. Lock-free; any thread.
    pub fn push(&self, b: *mut Block) {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos % RING];
            let seq = slot.seq(pos % RING, Ordering::Acquire);
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
                        slot.set_seq(pos % RING, pos.wrapping_add(1), Ordering::Release);
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
        let stack = &self.overflow[stack_of(b)];
        let mut head = stack.load(Ordering::Relaxed);
        loop {
            // SAFETY: the block is the caller's to write until the push succeeds.
            unsafe { (*b).next = head };
            match stack.compare_exchange_weak(head, b, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Whether a block is waiting (a hint: a push may be under way).
    pub fn has_blocks(&self) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        self.slots[head % RING].seq(head % RING, Ordering::Relaxed) == head.wrapping_add(1)
            || self
                .overflow
                .iter()
                .any(|s| !s.load(Ordering::Relaxed).is_null())
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
            if slot.seq(head % RING, Ordering::Acquire) != head.wrapping_add(1) {
                break;
            }
            let b = slot.block.load(Ordering::Relaxed);
            slot.set_seq(head % RING, head.wrapping_add(RING), Ordering::Release);
            head = head.wrapping_add(1);
            f(b);
        }
        self.head.store(head, Ordering::Relaxed);
        let mut cur = [ptr::null_mut::<Block>(); STACKS];
        let mut any = false;
        for (c, s) in cur.iter_mut().zip(&self.overflow) {
            if !s.load(Ordering::Relaxed).is_null() {
                *c = s.swap(ptr::null_mut(), Ordering::Acquire);
                any = true;
            }
        }
        while any {
            // Every stack's next link first (independent loads), then the blocks: `f` may
            // overwrite a block's first word.
            let mut next = [ptr::null_mut::<Block>(); STACKS];
            for (n, &b) in next.iter_mut().zip(&cur) {
                if !b.is_null() {
                    // SAFETY: blocks on the stacks are live and were handed to us; the
                    // Acquire swap makes their links visible.
                    *n = unsafe { (*b).next };
                }
            }
            any = false;
            for (&b, &n) in cur.iter().zip(&next) {
                if !b.is_null() {
                    f(b);
                }
                any |= !n.is_null();
            }
            cur = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    fn new_inbox() -> Box<Inbox> {
        // SAFETY: a zeroed Inbox is a valid empty one.
        unsafe { Box::new_zeroed().assume_init() }
    }

    /// Every block pushed by several threads comes out exactly once, through the ring and
    /// through the overflow stacks (the owner drains slowly, so the ring fills).
    #[test]
    fn every_block_arrives_once() {
        const THREADS: usize = 4;
        const PER: usize = 20_000;
        let inbox = new_inbox();
        // Blocks: one word each, so the overflow stacks can link through them.
        let mut blocks: Vec<u64> = std::vec![0; THREADS * PER];
        let base = blocks.as_mut_ptr() as usize;
        let mut seen = std::vec![0u8; THREADS * PER];
        let mut got = 0;
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let inbox = &*inbox;
                s.spawn(move || {
                    for i in 0..PER {
                        let b = (base + (t * PER + i) * 8) as *mut Block;
                        inbox.push(b);
                    }
                });
            }
            while got < THREADS * PER {
                // SAFETY: this thread is the only one draining.
                unsafe {
                    inbox.drain(|b| {
                        let k = (b as usize - base) / 8;
                        seen[k] += 1;
                        got += 1;
                    })
                };
                std::thread::yield_now();
            }
        });
        assert!(seen.iter().all(|&n| n == 1));
        assert!(!inbox.has_blocks());
    }

    #[test]
    fn a_full_ring_spills_to_the_stacks_and_every_block_comes_back() {
        // Enough to leave the stacks of unequal lengths, which are walked side by side.
        const SPILL: usize = 1000;
        let inbox = new_inbox();
        let mut blocks: Vec<u64> = std::vec![0; RING + SPILL];
        let ptrs: Vec<*mut Block> = (0..RING + SPILL)
            .map(|i| (&mut blocks[i]) as *mut u64 as *mut Block)
            .collect();
        for &p in &ptrs {
            inbox.push(p);
        }
        assert!(inbox.has_blocks());
        let mut out = Vec::new();
        // SAFETY: single-threaded test: we are the owner.
        unsafe { inbox.drain(|b| out.push(b)) };
        assert_eq!(out.len(), RING + SPILL);
        // The ring gives back its blocks in order; the overflow stacks the rest.
        assert_eq!(&out[..RING], &ptrs[..RING]);
        let mut spilled: Vec<_> = out[RING..].to_vec();
        spilled.sort();
        assert_eq!(&spilled[..], &ptrs[RING..]);
        let mut per_stack = [0; STACKS];
        for &b in &spilled {
            per_stack[stack_of(b)] += 1;
        }
        assert!(per_stack.iter().all(|&n| n > 0), "{per_stack:?}");
        // A second lap reuses the slots.
        inbox.push(ptrs[0]);
        let mut again = Vec::new();
        // SAFETY: as above.
        unsafe { inbox.drain(|b| again.push(b)) };
        assert_eq!(again, std::vec![ptrs[0]]);
    }
}
