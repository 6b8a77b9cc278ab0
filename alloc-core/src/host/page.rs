//! Page (span) metadata and the block free lists inside it.
//!
//! A span is a run of 64 KiB units inside one segment. A span either holds blocks of one
//! size class for one thread heap (a "small" span), or one large block (owner
//! [`LARGE_OWNER`]). Its metadata lives in the segment's out-of-line `pages` array at the
//! index of its first unit; the pagemap maps every unit of the span to that head.
//!
//! Blocks are carved lazily: `capacity` blocks exist, of `reserved` that fit; the rest of
//! the span has never been touched (and costs no RSS) until the free list runs dry.

use super::heap::Heap;
use crate::source::os::OS_PAGE;
use core::ptr;

/// A free block: its first word links to the next free block of the same page.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
}

/// Owner value of a span that holds one large block: an address no heap can have, never
/// dereferenced.
pub const LARGE_OWNER: *mut Heap = core::ptr::without_provenance_mut(1);

/// Owner value of an empty span kept in a heap's span cache (`heap::spans`): like a span
/// back in the arena, it holds no block, and a pointer into it is foreign.
pub const CACHED_OWNER: *mut Heap = core::ptr::without_provenance_mut(2);

/// Owner word of a huge record (`huge::Huge::owner`), which sits at the offset of
/// [`Page::heap`], so that a free reads one word at one offset from whatever its pagemap
/// entry points at, and only then tells a span from a huge mapping.
pub const HUGE_OWNER: *mut Heap = core::ptr::without_provenance_mut(3);

/// Whether an owner word names a thread heap, not null or one of the values above: the
/// one comparison a free makes before it pushes a block into another heap's inbox.
#[inline(always)]
pub fn is_heap(owner: *mut Heap) -> bool {
    owner as usize > HUGE_OWNER as usize
}

/// Flag: the span is handed out (small or large).
pub const IN_USE: u8 = 1;
/// Flag: a small span with no free block, unlinked from its heap's bin.
pub const FULL: u8 = 2;
/// Flag: a small span that stays its bin's current page when it empties (every span of
/// blocks up to 32 KiB, `heap::KEEP_EMPTY_MAX`; of bigger blocks, only the heap's one
/// `kept` page, while the others go to its spare slot).
pub const KEEP_EMPTY: u8 = 4;

/// How many blocks of a page are handed out.
///
/// Kept as two monotone counts, blocks popped and blocks freed back, rather than one
/// `used` gauge: the pop count then also tells the idle sweep whether a page served any
/// allocation since it last looked, and it is the page's allocation count, which the
/// statistics read on their slow path, so the allocation fast path updates no statistics
/// counter of its own.
///
/// While a page is full (flag [`FULL`]), `popped` is not its pop count but `freed + 1`
/// ([`hold_full`](Uses::hold_full)), so that the first block freed back makes
/// [`give`](Uses::give) say "empty", and the free fast path, which tests nothing else, takes
/// the slow path that relinks the page (it then calls [`release_full`](Uses::release_full)).
/// That spares every free a test of the flags. Nothing reads the counts of a full page:
/// its pops were counted as it went full, and its live blocks are its capacity.
#[repr(C)]
pub struct Uses {
    popped: u64,
    freed: u64,
}

impl Uses {
    pub const ZERO: Uses = Uses {
        popped: 0,
        freed: 0,
    };
    /// Counts a block handed out.
    #[inline(always)]
    pub fn take(&mut self) {
        self.popped += 1;
    }
    /// Counts a block freed back; true when none is left out.
    #[inline(always)]
    pub fn give(&mut self) -> bool {
        self.freed += 1;
        self.freed == self.popped
    }
    /// Makes the next [`give`](Self::give) return true, for a page going full (its pops
    /// counted and every one of its blocks out).
    #[inline]
    pub fn hold_full(&mut self) {
        self.popped = self.freed + 1;
    }
    /// The counts again, after the one [`give`](Self::give) since
    /// [`hold_full`](Self::hold_full): `capacity` blocks were out then, one is back.
    #[inline]
    pub fn release_full(&mut self, capacity: u32) {
        self.popped = self.freed - 1 + capacity as u64;
    }
    /// Blocks handed out and not freed back.
    #[inline]
    pub fn live(&self) -> u64 {
        self.popped - self.freed
    }
    /// Blocks ever handed out since the page was initialised.
    #[inline]
    pub fn pops(&self) -> u64 {
        self.popped
    }
}

/// Most bytes a span gives up to [`first_block_offset`]: under 1.6% of the smallest span.
pub const MAX_COLOR: usize = 1024;

/// Where the first block of a small span starts, counted from the span's start: the
/// span's "color". jemalloc's `opt.cache_oblivious` offsets large allocations for the
/// same reason.
///
/// Spans start on 64 KiB boundaries. Were every first block there, the first block of every
/// class, often among a program's longest-lived and hottest objects, would share its low 12
/// address bits with the others, and so its set in the L1 data cache (sets repeat every
/// 4 KiB on x86's 8- and 12-way L1s), and evict them. Under perl's word count in
/// benches/preload_suite.sh that made poolside miss the L1 28.5 million times against
/// mimalloc's 25.2 (cachegrind), most of the difference in two functions: `Perl_sv_gets`,
/// which copies a line from the I/O buffer into a string, and `Perl_pp_pushmark`, which
/// pushes on the mark stack. With colors, 23.0 million (see BENCHMARKS.md).
///
/// The offset is a multiple of 64 bytes (a cache line) and of the block size's own
/// power-of-two alignment (up to 64 KiB), so blocks keep the alignment that aligned
/// requests rely on (`size_class::class_for`). It cycles with the span's unit number, so
/// neighbouring spans differ, and is at most [`MAX_COLOR`]: for 64-byte steps, 17 colors.
/// Blocks whose size is a multiple of 2 KiB get none.
#[inline]
pub fn first_block_offset(start: usize, block_size: usize) -> usize {
    let step = (1usize << block_size.trailing_zeros().min(super::UNIT_SHIFT)).max(64);
    if step > MAX_COLOR {
        return 0;
    }
    let colors = MAX_COLOR / step + 1;
    (start >> super::UNIT_SHIFT) % colors * step
}

/// Metadata of one span, kept at the span's first unit.
///
/// 128 bytes, aligned to 128: two cache lines, split by who writes them.
///
/// - Bytes 0-63 change only when the span changes hands or state (taken, linked into a
///   bin, full): `heap`, which every free reads to find the block's owner, and what the
///   slow paths read. Threads that free another thread's blocks read this line alone, so
///   it stays shared in their caches.
/// - Bytes 64-111 are the owner's counters and free lists, written by every allocation
///   and free of the span. They used to share a line with `heap`: under
///   `benches/c/mstress.c`, where a quarter of the blocks are freed by another thread, two
///   thirds of free's samples were that load of `heap`, waiting for the line the owner
///   had just written (see BENCHMARKS.md).
///
/// Within the lines, each kind of hot field keeps its own offset modulo 128 (blocks of
/// sizes that are multiples of 128 at 0, their span's color included; heap bins at 32-40,
/// `heap` at 48, free lists at 64-112), so a load on the allocation path never shares its
/// low 12 address bits with a store the previous free left in flight, which on x86 can
/// make the load wait for the store ("4K aliasing"). The pair
/// benchmark could not show this cost apart from a larger one (see size_class::class_of),
/// so that part of the layout is a precaution, not a measured gain.
#[repr(C, align(128))]
pub struct Page {
    // Read-mostly (bytes 0-63).
    /// First byte of the span.
    pub start: *mut u8,
    /// The segment holding the span.
    pub seg: *mut super::segment::Segment,
    /// Links in the owning heap's bin list.
    pub next: *mut Page,
    pub prev: *mut Page,
    /// Block size for small spans; 0 for large ones.
    pub block_size: u32,
    /// Length of the span in units.
    pub units: u32,
    /// Blocks that fit in the span.
    pub reserved: u32,
    /// Size class (small spans).
    pub class: u16,
    pub flags: u8,
    /// Owning heap, [`LARGE_OWNER`], [`CACHED_OWNER`], or null when the span is free
    /// (never [`HUGE_OWNER`], which only huge records hold).
    pub heap: *mut Heap,
    /// Bytes between `start` and the first block (small spans; see [`first_block_offset`]).
    pub color: u32,
    /// Keeps the owner's fields on the next line.
    _pad: u32,
    // The owner's (bytes 64-111).
    /// Free blocks allocations pop from (owner thread only).
    pub free: *mut Block,
    /// Blocks the owner freed, moved to `free` when it runs dry. Two lists instead of one
    /// break the dependency between a free and the next allocation: in an alloc/free loop
    /// each allocation no longer waits for the previous free's stores.
    pub local_free: *mut Block,
    /// Blocks handed out and freed back.
    pub uses: Uses,
    /// Blocks carved so far.
    pub capacity: u32,
    /// The request that last refilled `free`: the size the statistics credit to each
    /// allocation served since (see `heap::counters`).
    pub sample_size: u32,
    /// `uses.pops()` when the heap last counted this page's allocations.
    pub pops_counted: u64,
}

const _: () = assert!(core::mem::size_of::<Page>() == 128);
const _: () = assert!(core::mem::offset_of!(Page, heap) == 48);
const _: () = assert!(core::mem::offset_of!(Page, free) == 64);

impl Page {
    /// A page that is not part of any span yet.
    pub const EMPTY: Page = Page {
        start: ptr::null_mut(),
        seg: ptr::null_mut(),
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
        block_size: 0,
        units: 0,
        capacity: 0,
        reserved: 0,
        class: 0,
        sample_size: 0,
        pops_counted: 0,
        free: ptr::null_mut(),
        local_free: ptr::null_mut(),
        heap: ptr::null_mut(),
        color: 0,
        _pad: 0,
        uses: Uses::ZERO,
        flags: 0,
    };

    /// Prepares a head page for blocks of `block_size` owned by `heap`.
    pub fn init_small(
        &mut self,
        heap: *mut Heap,
        class: usize,
        block_size: usize,
        bytes: usize,
        keep_empty: bool,
    ) {
        self.free = ptr::null_mut();
        self.local_free = ptr::null_mut();
        self.uses = Uses::ZERO;
        self.pops_counted = 0;
        self.sample_size = 0;
        self.block_size = block_size as u32;
        self.heap = heap;
        self.class = class as u16;
        self.flags = if keep_empty {
            IN_USE | KEEP_EMPTY
        } else {
            IN_USE
        };
        self.capacity = 0;
        let color = first_block_offset(self.start as usize, block_size);
        self.color = color as u32;
        self.reserved = ((bytes - color) / block_size) as u32;
        self.next = ptr::null_mut();
        self.prev = ptr::null_mut();
    }

    /// Makes an empty span of this heap's spare slot its class's page again. Its counts
    /// carry on: the heap counted the span as part of the class all along.
    pub fn reuse_small(&mut self) {
        debug_assert!(self.uses.live() == 0);
        self.free = ptr::null_mut();
        self.local_free = ptr::null_mut();
        self.flags = IN_USE;
        self.capacity = 0;
        self.next = ptr::null_mut();
        self.prev = ptr::null_mut();
    }

    /// Whether blocks remain that were never carved.
    #[inline]
    pub fn can_extend(&self) -> bool {
        self.capacity < self.reserved
    }

    /// Carves up to `max_bytes` (at least one block) of never-used blocks onto the free list.
    ///
    /// The carve stops at the last OS page boundary within `max_bytes`, so that a span's
    /// color does not make its first carve write to a second page (each block's link is
    /// written here): with `max_bytes` a multiple of the OS page, the pages a span touches
    /// are the ones a carve from offset 0 touched.
    ///
    /// # Safety
    /// The page is a small span owned by the calling thread, with `can_extend()`.
    pub unsafe fn extend(&mut self, max_bytes: usize) {
        let bs = self.block_size as usize;
        let from = self.color as usize + self.capacity as usize * bs;
        let end = (from + max_bytes) & !(OS_PAGE - 1);
        let n = (end.saturating_sub(from) / bs).clamp(1, (self.reserved - self.capacity) as usize);
        // SAFETY: blocks capacity..capacity+n lie inside the span, which is committed
        // memory owned by this page; nobody else references them yet.
        unsafe {
            let first = self.start.add(from);
            let mut b = first;
            for _ in 1..n {
                let next = b.add(bs);
                (*(b as *mut Block)).next = next as *mut Block;
                b = next;
            }
            (*(b as *mut Block)).next = self.free;
            self.free = first as *mut Block;
        }
        self.capacity += n as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::heap::span_units;
    use crate::host::{UNIT_SHIFT, UNIT_SIZE};
    use crate::size_class::{class_size, NUM_CLASSES};

    #[test]
    fn colors_keep_alignment_lines_and_room() {
        for c in 0..NUM_CLASSES {
            let bs = class_size(c);
            let bytes = span_units(c) * UNIT_SIZE;
            let align = 1usize << bs.trailing_zeros().min(UNIT_SHIFT);
            let mut seen = [false; MAX_COLOR / 64 + 1];
            for unit in 0..64 {
                let off = first_block_offset(unit * UNIT_SIZE, bs);
                assert!(off <= MAX_COLOR, "class {c}");
                assert_eq!(off % 64, 0, "class {c}: off {off} splits a cache line");
                assert_eq!(
                    off % align,
                    0,
                    "class {c}: off {off} breaks {align}-alignment"
                );
                assert!(
                    off * 64 <= bytes,
                    "class {c}: the color costs over 1/64 of the span"
                );
                assert!(
                    off + bs <= bytes,
                    "class {c}: no block fits after the color"
                );
                seen[off / 64] = true;
            }
            let colors = seen.iter().filter(|&&s| s).count();
            let step = align.max(64);
            let want = if step > MAX_COLOR {
                1
            } else {
                MAX_COLOR / step + 1
            };
            assert_eq!(colors, want, "class {c} (block {bs})");
        }
    }

    #[test]
    fn a_colored_first_carve_stays_in_the_first_os_page() {
        let mut buf = std::vec![0u64; UNIT_SIZE / 8];
        let base = buf.as_mut_ptr() as *mut u8;
        for c in 0..NUM_CLASSES {
            let bs = class_size(c);
            if bs > OS_PAGE / 2 {
                break;
            }
            for unit in 0..17 {
                let mut p = Page::EMPTY;
                // A start whose unit number picks the color; the carve only writes
                // through `base`, since offsets are counted from `start`.
                p.start = base;
                p.init_small(ptr::null_mut(), c, bs, UNIT_SIZE, false);
                p.color = first_block_offset(unit * UNIT_SIZE, bs) as u32;
                p.reserved = ((UNIT_SIZE - p.color as usize) / bs) as u32;
                // SAFETY: the page's span is `buf`, a live 64 KiB buffer nobody else uses.
                unsafe { p.extend(OS_PAGE) };
                let (mut n, mut b) = (0, p.free);
                while !b.is_null() {
                    let off = b as usize - base as usize;
                    assert!(off >= p.color as usize && off + bs <= OS_PAGE, "class {c}");
                    n += 1;
                    // SAFETY: the list links blocks inside `buf`, written by extend.
                    b = unsafe { (*b).next };
                }
                assert_eq!(
                    n,
                    (OS_PAGE - p.color as usize) / bs,
                    "class {c}, unit {unit}"
                );
            }
        }
    }
}
