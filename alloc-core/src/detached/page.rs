//! The host-side descriptor of one device page.
//!
//! Invariants:
//! - `class == NO_CLASS` exactly when the page holds no blocks and belongs to no class
//!   list; then `used == 0` and every bit of `bits` is clear;
//! - otherwise `capacity = PAGE / class_size(class)`, bit `i` of `bits` is set exactly when
//!   block `i` is live, and `used` counts the set bits;
//! - `first_free` is at most the index of the first word with a clear bit among the first
//!   `capacity` bits, so scanning from it finds the lowest free block.

use super::MAX_BLOCKS_PER_PAGE;

/// Words of the free bitmap.
pub const BITMAP_WORDS: usize = MAX_BLOCKS_PER_PAGE / 64;
/// `class` of a page that serves no class.
pub const NO_CLASS: u16 = u16::MAX;
/// An empty link.
pub const NIL: u32 = u32::MAX;

/// One page: its class, its live blocks, and its links.
#[repr(C)]
pub struct PageMeta {
    /// Size class of the blocks, or [`NO_CLASS`].
    pub class: u16,
    /// Whether the page is backed by memory from the source.
    pub committed: bool,
    pub _pad: u8,
    /// Live blocks.
    pub used: u32,
    /// Blocks the page holds at its class.
    pub capacity: u32,
    /// Lowest bitmap word that may have a clear bit.
    pub first_free: u32,
    /// Links in a class list (pages with free blocks) or in the list of empty committed
    /// pages, as page references (`chunk << 16 | index`).
    pub prev: u32,
    pub next: u32,
    /// Bit `i` set when block `i` is live.
    pub bits: [u64; BITMAP_WORDS],
}

impl PageMeta {
    /// Makes an empty page serve `class` with blocks of `block_size` bytes.
    pub fn assign(&mut self, class: u16, block_size: usize) {
        self.class = class;
        self.used = 0;
        self.capacity = (super::PAGE / block_size) as u32;
        self.first_free = 0;
        // Blocks past the capacity must never be handed out: mark them live for good.
        let cap = self.capacity as usize;
        for (w, word) in self.bits.iter_mut().enumerate() {
            let lo = w * 64;
            *word = if lo + 64 <= cap {
                0
            } else if lo >= cap {
                !0
            } else {
                !0u64 << (cap - lo)
            };
        }
    }

    /// Takes the lowest free block; `None` when the page is full.
    #[inline]
    pub fn take(&mut self) -> Option<usize> {
        let mut w = self.first_free as usize;
        while w < BITMAP_WORDS {
            let word = self.bits[w];
            if word != !0 {
                let bit = (!word).trailing_zeros() as usize;
                self.bits[w] = word | (1 << bit);
                self.used += 1;
                self.first_free = w as u32;
                return Some(w * 64 + bit);
            }
            w += 1;
        }
        self.first_free = BITMAP_WORDS as u32;
        None
    }

    /// Whether block `i` is live.
    #[inline]
    pub fn is_live(&self, i: usize) -> bool {
        i < self.capacity as usize && self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// Returns block `i`, which must be live.
    #[inline]
    pub fn put(&mut self, i: usize) {
        self.bits[i / 64] &= !(1 << (i % 64));
        self.used -= 1;
        if (i / 64) < self.first_free as usize {
            self.first_free = (i / 64) as u32;
        }
    }

    /// Makes the page serve no class (it must hold no live block).
    pub fn clear(&mut self) {
        self.class = NO_CLASS;
        self.used = 0;
        self.capacity = 0;
        self.first_free = 0;
        self.bits = [0; BITMAP_WORDS];
    }
}
