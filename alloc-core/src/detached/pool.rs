//! The size-class pool over a memory source, with all metadata in host memory.
//!
//! Layout: chunks (reservations of `pages_per_chunk` pages) cut into [`PAGE`]-sized pages;
//! a page serves one class at a time. Per class, a doubly linked list of pages with free
//! blocks; one list of committed pages that serve no class. A page that empties while its
//! class has another page with room moves to that list, so any class can take it without
//! a call to the source.
//!
//! Invariants:
//! - a page is in its class list exactly when it serves a class and has a free block;
//! - a page is in the empty list exactly when it is committed and serves no class;
//! - `order[..count]` holds the slots of live chunks sorted by base address;
//! - `live_bytes` and `live_blocks` are the sums over live blocks; `committed_pages` the
//!   sum of the chunks' `committed`; `idle_pages` counts the committed pages without a
//!   live block (what `trim` would decommit), so statistics never walk the pages.
//!
//! Memory handed out is never touched by the pool. Nothing here allocates, formats or
//! panics; a failed commit or reservation is reported as `None` and changes nothing
//! visible.

use super::chunk::Chunk;
use super::page::{PageMeta, NIL, NO_CLASS};
use super::{class_for_request, PAGE};
use crate::size_class::{class_size, NUM_CLASSES};
use crate::source::MemorySource;
use core::ptr::NonNull;

/// Chunks one pool can hold.
pub const MAX_CHUNKS: usize = 1024;
/// Pages one chunk can hold (page references keep 16 bits for the index).
pub const MAX_PAGES_PER_CHUNK: usize = 1 << 16;

/// A block handed out by [`DetachedPool::alloc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub ptr: NonNull<u8>,
    /// Block size (the request rounded to its class).
    pub size: usize,
    /// True when serving it needed fresh memory from the source (a miss).
    pub fresh: bool,
}

/// Why a free was refused. The pool is unchanged in both cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The address is not inside this pool.
    NotOwned,
    /// The address is inside the pool but is not the start of a live block (double free,
    /// or an interior pointer).
    NotAllocated,
}

/// Totals of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes of pages backed by the source (what the pool holds of the device).
    pub committed_bytes: usize,
    /// Bytes of address space reserved.
    pub reserved_address_bytes: usize,
    /// Bytes in live blocks (block sizes).
    pub live_bytes: usize,
    pub live_blocks: usize,
    pub chunks: usize,
    /// Bytes of committed pages holding no live block (`trim` would return them).
    pub idle_bytes: usize,
}

/// A size-class pool over `S`, one owner at a time (the caller locks).
pub struct DetachedPool<S: MemorySource> {
    source: S,
    pages_per_chunk: u32,
    heads: [u32; NUM_CLASSES],
    empty_head: u32,
    chunks: [Chunk; MAX_CHUNKS],
    order: [u16; MAX_CHUNKS],
    count: usize,
    committed_pages: usize,
    live_bytes: usize,
    live_blocks: usize,
    idle_pages: usize,
}

// SAFETY: the raw pointers are host mappings owned by the pool; moving the pool to another
// thread moves that ownership with it.
unsafe impl<S: MemorySource + Send> Send for DetachedPool<S> {}

#[inline]
fn pref(slot: usize, page: usize) -> u32 {
    ((slot as u32) << 16) | page as u32
}

impl<S: MemorySource> DetachedPool<S> {
    /// A pool reserving `pages_per_chunk` pages at a time. `None` when the source's
    /// granularity does not divide [`PAGE`] or `pages_per_chunk` is 0 or too large.
    pub fn new(source: S, pages_per_chunk: usize) -> Option<Self> {
        let g = source.granularity();
        if g == 0 || !g.is_power_of_two() || g > PAGE {
            return None;
        }
        if pages_per_chunk == 0 || pages_per_chunk > MAX_PAGES_PER_CHUNK {
            return None;
        }
        Some(DetachedPool {
            source,
            pages_per_chunk: pages_per_chunk as u32,
            heads: [NIL; NUM_CLASSES],
            empty_head: NIL,
            chunks: [Chunk::EMPTY; MAX_CHUNKS],
            order: [0; MAX_CHUNKS],
            count: 0,
            committed_pages: 0,
            live_bytes: 0,
            live_blocks: 0,
            idle_pages: 0,
        })
    }

    /// The memory source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The descriptor behind a page reference.
    ///
    /// # Safety
    /// `r` refers to a page of a live chunk; no other reference to it is live.
    #[inline]
    unsafe fn meta<'a>(&self, r: u32) -> &'a mut PageMeta {
        let chunk = &self.chunks[(r >> 16) as usize];
        // SAFETY: forwarded.
        unsafe { chunk.page((r & 0xffff) as usize) }
    }

    #[inline]
    fn addr_of(&self, r: u32) -> usize {
        self.chunks[(r >> 16) as usize].base + (r & 0xffff) as usize * PAGE
    }

    /// Pushes page `r` at the head of the list starting at `*head`.
    ///
    /// # Safety
    /// `r` is live and in no list.
    unsafe fn push(&self, head: &mut u32, r: u32) {
        // SAFETY: forwarded; distinct pages have distinct descriptors.
        unsafe {
            let m = self.meta(r);
            m.prev = NIL;
            m.next = *head;
            if *head != NIL {
                self.meta(*head).prev = r;
            }
        }
        *head = r;
    }

    /// Removes page `r` from the list starting at `*head`.
    ///
    /// # Safety
    /// `r` is in that list.
    unsafe fn unlink(&self, head: &mut u32, r: u32) {
        // SAFETY: forwarded; the neighbours are live pages of the same list.
        unsafe {
            let m = self.meta(r);
            if m.prev != NIL {
                self.meta(m.prev).next = m.next;
            } else {
                *head = m.next;
            }
            if m.next != NIL {
                self.meta(m.next).prev = m.prev;
            }
            m.prev = NIL;
            m.next = NIL;
        }
    }

    /// Allocates a block for a request of `size` bytes (at most
    /// [`crate::size_class::MAX_SMALL`]). `None` when the request is too large or the
    /// source has no memory left; the pool is then unchanged.
    #[inline]
    pub fn alloc(&mut self, size: usize) -> Option<Block> {
        let c = class_for_request(size)?;
        let bs = class_size(c);
        let mut fresh = false;
        let mut r = self.heads[c];
        if r == NIL {
            let (p, f) = self.fresh_page()?;
            fresh = f;
            // SAFETY: p is an empty committed page of a live chunk, in no list.
            unsafe {
                self.meta(p).assign(c as u16, bs);
                let mut head = self.heads[c];
                self.push(&mut head, p);
                self.heads[c] = head;
            }
            r = p;
        }
        // SAFETY: r is in class list c, so it is live and has a free block.
        let m = unsafe { self.meta(r) };
        let i = m.take()?;
        if m.used == 1 {
            self.idle_pages -= 1;
        }
        if m.used == m.capacity {
            let mut head = self.heads[c];
            // SAFETY: r is in class list c.
            unsafe { self.unlink(&mut head, r) };
            self.heads[c] = head;
        }
        self.live_bytes += bs;
        self.live_blocks += 1;
        let addr = self.addr_of(r) + i * bs;
        Some(Block {
            ptr: NonNull::new(addr as *mut u8)?,
            size: bs,
            fresh,
        })
    }

    /// An empty committed page in no list, and whether it needed a commit.
    fn fresh_page(&mut self) -> Option<(u32, bool)> {
        if self.empty_head != NIL {
            let r = self.empty_head;
            let mut head = self.empty_head;
            // SAFETY: r heads the empty list.
            unsafe { self.unlink(&mut head, r) };
            self.empty_head = head;
            return Some((r, false));
        }
        // An uncommitted page of a live chunk, else a new chunk.
        let mut slot = None;
        for k in 0..self.count {
            let s = self.order[k] as usize;
            if self.chunks[s].committed < self.chunks[s].pages {
                slot = Some(s);
                break;
            }
        }
        let slot = match slot {
            Some(s) => s,
            None => self.new_chunk()?,
        };
        let chunk = self.chunks[slot];
        for i in 0..chunk.pages as usize {
            // SAFETY: i < pages; no other descriptor reference is live.
            let m = unsafe { chunk.page(i) };
            if !m.committed {
                let addr = chunk.base + i * PAGE;
                // SAFETY: the page lies inside the chunk's live reservation and is
                // PAGE-aligned, hence granularity-aligned.
                let ok = unsafe {
                    self.source
                        .commit(NonNull::new_unchecked(addr as *mut u8), PAGE)
                };
                if !ok {
                    return None;
                }
                m.committed = true;
                self.chunks[slot].committed += 1;
                self.committed_pages += 1;
                self.idle_pages += 1;
                return Some((pref(slot, i), true));
            }
        }
        None
    }

    /// Reserves a new chunk and returns its slot.
    fn new_chunk(&mut self) -> Option<usize> {
        if self.count == MAX_CHUNKS {
            return None;
        }
        let slot = self.chunks.iter().position(|c| c.base == 0)?;
        let bytes = self.pages_per_chunk as usize * PAGE;
        let base = self.source.reserve(bytes, PAGE)?;
        let Some(chunk) = Chunk::new(base, self.pages_per_chunk) else {
            // SAFETY: the reservation was just made and nothing uses it.
            unsafe { self.source.release(base, bytes) };
            return None;
        };
        self.chunks[slot] = chunk;
        // Keep `order` sorted by base.
        let at = self.order[..self.count]
            .partition_point(|&s| self.chunks[s as usize].base < chunk.base);
        self.order.copy_within(at..self.count, at + 1);
        self.order[at] = slot as u16;
        self.count += 1;
        Some(slot)
    }

    /// The slot of the chunk holding `addr`.
    #[inline]
    fn chunk_of(&self, addr: usize) -> Option<usize> {
        let order = &self.order[..self.count];
        let k = order.partition_point(|&s| self.chunks[s as usize].base <= addr);
        if k == 0 {
            return None;
        }
        let s = order[k - 1] as usize;
        if self.chunks[s].contains(addr) {
            Some(s)
        } else {
            None
        }
    }

    /// Whether `ptr` lies inside one of the pool's chunks.
    pub fn owns(&self, ptr: *const u8) -> bool {
        self.chunk_of(ptr as usize).is_some()
    }

    /// The live block containing `ptr` (its start and block size).
    pub fn block_of(&self, ptr: *const u8) -> Option<(usize, usize)> {
        let addr = ptr as usize;
        let s = self.chunk_of(addr)?;
        let chunk = &self.chunks[s];
        let off = addr - chunk.base;
        // SAFETY: the page index is inside the chunk.
        let m = unsafe { chunk.page(off / PAGE) };
        if m.class == NO_CLASS {
            return None;
        }
        let bs = class_size(m.class as usize);
        let i = (off % PAGE) / bs;
        if !m.is_live(i) {
            return None;
        }
        Some((chunk.base + (off / PAGE) * PAGE + i * bs, bs))
    }

    /// The start of the page holding `ptr`, when `ptr` lies inside the pool.
    pub fn page_of(&self, ptr: *const u8) -> Option<usize> {
        let addr = ptr as usize;
        let base = self.chunks[self.chunk_of(addr)?].base;
        Some(base + (addr - base) / PAGE * PAGE)
    }

    /// Calls `f(page start, block size)` for every committed page, in address order; the
    /// block size is 0 for a page that serves no class. For listings (memory snapshots):
    /// which of a page's blocks are live is the caller's to know.
    pub fn for_each_committed_page(&self, mut f: impl FnMut(usize, usize)) {
        for k in 0..self.count {
            let chunk = self.chunks[self.order[k] as usize];
            for i in 0..chunk.pages as usize {
                // SAFETY: i < pages; the reference is dropped before the next one is made.
                let m = unsafe { chunk.page(i) };
                if m.committed {
                    let bs = if m.class == NO_CLASS {
                        0
                    } else {
                        class_size(m.class as usize)
                    };
                    f(chunk.base + i * PAGE, bs);
                }
            }
        }
    }

    /// Returns the block starting at `ptr`; gives its block size.
    #[inline]
    pub fn free(&mut self, ptr: NonNull<u8>) -> Result<usize, FreeError> {
        let addr = ptr.as_ptr() as usize;
        let s = self.chunk_of(addr).ok_or(FreeError::NotOwned)?;
        let off = addr - self.chunks[s].base;
        let r = pref(s, off / PAGE);
        // SAFETY: r is a page of live chunk s.
        let m = unsafe { self.meta(r) };
        if m.class == NO_CLASS {
            return Err(FreeError::NotAllocated);
        }
        let c = m.class as usize;
        let bs = class_size(c);
        let in_page = off % PAGE;
        if !in_page.is_multiple_of(bs) || !m.is_live(in_page / bs) {
            return Err(FreeError::NotAllocated);
        }
        let was_full = m.used == m.capacity;
        m.put(in_page / bs);
        let now_empty = m.used == 0;
        self.idle_pages += now_empty as usize;
        self.live_bytes -= bs;
        self.live_blocks -= 1;
        let mut head = self.heads[c];
        if was_full {
            // SAFETY: a full page is in no list.
            unsafe { self.push(&mut head, r) };
        }
        if now_empty {
            // SAFETY: r is a page of a live chunk; the earlier reference is no longer used.
            let m = unsafe { self.meta(r) };
            if m.prev != NIL || m.next != NIL {
                // The class has another page with room: give this one to any class.
                // SAFETY: r is in class list c.
                unsafe { self.unlink(&mut head, r) };
                // SAFETY: as above.
                unsafe { self.meta(r) }.clear();
                let mut e = self.empty_head;
                // SAFETY: r is now in no list.
                unsafe { self.push(&mut e, r) };
                self.empty_head = e;
            }
        }
        self.heads[c] = head;
        Ok(bs)
    }

    /// Decommits every page without live blocks and releases chunks left with no
    /// committed page. Returns the bytes decommitted.
    ///
    /// The caller makes sure the device no longer uses freed blocks (stream sync).
    pub fn trim(&mut self) -> usize {
        let mut freed = 0;
        for k in 0..self.count {
            let s = self.order[k] as usize;
            let chunk = self.chunks[s];
            for i in 0..chunk.pages as usize {
                let r = pref(s, i);
                // SAFETY: i < pages.
                let m = unsafe { chunk.page(i) };
                if !m.committed || m.used != 0 {
                    continue;
                }
                let class = m.class;
                if class == NO_CLASS {
                    let mut e = self.empty_head;
                    // SAFETY: an empty committed page with no class is in the empty list.
                    unsafe { self.unlink(&mut e, r) };
                    self.empty_head = e;
                } else {
                    let mut head = self.heads[class as usize];
                    // SAFETY: a page with a class and no live block has room: it is in
                    // its class list.
                    unsafe { self.unlink(&mut head, r) };
                    self.heads[class as usize] = head;
                }
                // SAFETY: i < pages; the references above are no longer used.
                let m = unsafe { chunk.page(i) };
                m.clear();
                // SAFETY: the page is inside the chunk's reservation, aligned, and holds
                // no live block.
                unsafe {
                    self.source.decommit(
                        NonNull::new_unchecked((chunk.base + i * PAGE) as *mut u8),
                        PAGE,
                    )
                };
                m.committed = false;
                self.chunks[s].committed -= 1;
                self.committed_pages -= 1;
                self.idle_pages -= 1;
                freed += PAGE;
            }
        }
        self.release_empty_chunks();
        freed
    }

    /// Releases chunks with no committed page.
    fn release_empty_chunks(&mut self) {
        let mut k = 0;
        while k < self.count {
            let s = self.order[k] as usize;
            if self.chunks[s].committed != 0 {
                k += 1;
                continue;
            }
            let mut chunk = self.chunks[s];
            // SAFETY: no page of the chunk is committed, so none is in a list or holds a
            // block; the reservation is exactly the one made in new_chunk.
            unsafe {
                self.source
                    .release(NonNull::new_unchecked(chunk.base as *mut u8), chunk.bytes());
                chunk.free_meta();
            }
            self.chunks[s] = Chunk::EMPTY;
            self.order.copy_within(k + 1..self.count, k);
            self.count -= 1;
        }
    }

    /// Bytes of committed pages holding no live block (`PoolStats::idle_bytes`), for the
    /// statistics' fast path.
    #[inline]
    pub fn idle_bytes(&self) -> usize {
        self.idle_pages * PAGE
    }

    /// The pool's totals.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            committed_bytes: self.committed_pages * PAGE,
            reserved_address_bytes: self.count * self.pages_per_chunk as usize * PAGE,
            live_bytes: self.live_bytes,
            live_blocks: self.live_blocks,
            chunks: self.count,
            idle_bytes: self.idle_pages * PAGE,
        }
    }
}

impl<S: MemorySource> Drop for DetachedPool<S> {
    /// Returns every page and chunk to the source, live blocks included.
    fn drop(&mut self) {
        for k in 0..self.count {
            let s = self.order[k] as usize;
            let chunk = self.chunks[s];
            for i in 0..chunk.pages as usize {
                // SAFETY: i < pages.
                let m = unsafe { chunk.page(i) };
                if m.committed {
                    // SAFETY: the pool is going away; nobody may use its blocks.
                    unsafe {
                        self.source.decommit(
                            NonNull::new_unchecked((chunk.base + i * PAGE) as *mut u8),
                            PAGE,
                        )
                    };
                    m.committed = false;
                }
            }
            self.chunks[s].committed = 0;
        }
        self.committed_pages = 0;
        self.idle_pages = 0;
        self.release_empty_chunks();
    }
}
