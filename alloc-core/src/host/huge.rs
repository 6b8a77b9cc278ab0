//! Huge blocks: requests above the large limit, or aligned beyond a unit, get a mapping of
//! their own, aligned to at least a unit so that the pagemap unit holding its base belongs
//! to it alone. That one unit is all it registers (`pagemap::set_one`), so mapping and
//! freeing cost the same for 5 MiB and for 2^46 bytes.
//!
//! The mapping is charged to the kernel's commit accounting (`os::map_aligned_accounted`),
//! as glibc's are: a request the overcommit policy would not back gets null at once, and
//! growth by mremap is judged the same way.
//!
//! Freed mappings are cached for one purge delay: programs that loop over big buffers (a
//! loop over 5-25 MiB blocks is a known weak spot of mimalloc) then reuse memory that is
//! already faulted in, instead of paying for fresh pages each time. A cached mapping of the
//! wrong size is resized with mremap, which keeps its pages: growing moves them (without
//! copying) into a fresh aligned reservation, shrinking drops the tail. realloc of a live
//! huge block grows the same way.
//!
//! The cache and the pagemap entries are the arena lock's (methods on `&mut HugeCache`,
//! which lives in the arena); the system calls are not: [`map`], [`shrink`] and
//! [`grow_hidden`] work on a mapping only its caller can reach, and a mapping leaving the
//! cache comes back as an [`Unmap`] to drop after the lock (`host::huge_path` runs them in
//! that order).

use super::heap::Heap;
use super::page::{Page, HUGE_OWNER};
use super::unmap::{Unmap, Unmaps};
use super::{pagemap, UNIT_SIZE};
use crate::source::os;
use core::ptr;

/// Metadata of one huge mapping: one OS page of its own, which the pagemap entry of the
/// mapping's base unit points at, as a span's entry points at its `Page`. `owner` holds
/// [`HUGE_OWNER`] at the offset of `Page::heap`, which is how a free tells the two apart
/// after the one load it makes anyway (the record is page aligned, so that read is
/// aligned and in bounds for a `Page`'s 128 bytes).
#[repr(C)]
pub struct Huge {
    pub base: usize,
    /// Bytes mapped (a multiple of the OS page); all of it is usable.
    pub len: usize,
    /// Alignment the mapping was made for.
    pub align: usize,
    /// When it entered the cache (coarse ms): what expiry goes by.
    pub freed_at: u64,
    /// Its place in the order of entries into the cache: what eviction goes by, since
    /// the coarse clock gives the frees of a burst one time (with `freed_at` alone, each
    /// free of a burst into a full cache evicted the entry the one before had just put).
    pub put_seq: u64,
    pub live: bool,
    /// Always [`HUGE_OWNER`].
    pub owner: *mut Heap,
}

const _: () = assert!(core::mem::offset_of!(Huge, owner) == core::mem::offset_of!(Page, heap));
const _: () = assert!(core::mem::size_of::<Huge>() <= os::OS_PAGE);

/// Mappings the cache holds at most.
pub const CACHE_SLOTS: usize = 16;

/// Freed huge mappings waiting for reuse, plus a free list of metadata records.
pub struct HugeCache {
    slots: [*mut Huge; CACHE_SLOTS],
    /// Spare metadata records (each one OS page, reused).
    spare: [*mut Huge; CACHE_SLOTS],
    /// Entries put so far (the next `put_seq`).
    puts: u64,
}

impl HugeCache {
    pub const EMPTY: HugeCache = HugeCache {
        slots: [ptr::null_mut(); CACHE_SLOTS],
        spare: [ptr::null_mut(); CACHE_SLOTS],
        puts: 0,
    };

    /// The cached mapping (aligned to `align`) closest to `len` bytes: the smallest that
    /// holds `len`, else the largest. The caller resizes it to `len`.
    pub fn take(&mut self, len: usize, align: usize) -> Option<*mut Huge> {
        // Rank: fits first, then smallest waste (fits) or smallest shortfall (does not fit).
        let rank = |l: usize| if l >= len { (0, l - len) } else { (1, len - l) };
        let mut best: Option<(usize, (usize, usize))> = None;
        for (i, &h) in self.slots.iter().enumerate() {
            if h.is_null() {
                continue;
            }
            // SAFETY: cached records are live metadata owned by the cache.
            let r = unsafe { &*h };
            if r.base % align == 0 && best.is_none_or(|(_, b)| rank(r.len) < b) {
                best = Some((i, rank(r.len)));
            }
        }
        let (i, _) = best?;
        let h = self.slots[i];
        self.slots[i] = ptr::null_mut();
        Some(h)
    }

    /// Caches a freed mapping. When the cache is full, the oldest entry makes room: it is
    /// unregistered and returned, for the caller to unmap after the lock
    /// ([`Unmap::NONE`] when nothing was evicted).
    ///
    /// # Safety
    /// `h` is a live record of a block nobody uses any more.
    pub unsafe fn put(&mut self, h: *mut Huge, now: u64) -> Unmap {
        // SAFETY: h is a live record just freed by its owner.
        unsafe {
            (*h).freed_at = now;
            (*h).put_seq = self.puts;
        }
        self.puts += 1;
        if let Some(slot) = self.slots.iter_mut().find(|s| s.is_null()) {
            *slot = h;
            return Unmap::NONE;
        }
        let mut oldest = 0;
        for i in 1..CACHE_SLOTS {
            // SAFETY: all slots are live records here.
            if unsafe { (*self.slots[i]).put_seq < (*self.slots[oldest]).put_seq } {
                oldest = i;
            }
        }
        let evicted = core::mem::replace(&mut self.slots[oldest], h);
        // SAFETY: the evicted record was cached, so its block is dead.
        unsafe { self.unpublish(evicted) }
    }

    /// Takes out the cached mappings older than `delay` (all when `force`), unregistered,
    /// for the caller to unmap after the lock.
    pub fn expire(&mut self, now: u64, delay: u64, force: bool) -> Unmaps {
        let mut gone = Unmaps::EMPTY;
        for i in 0..CACHE_SLOTS {
            let h = self.slots[i];
            // SAFETY: non-null slots are live records.
            if !h.is_null() && (force || unsafe { (*h).freed_at } + delay <= now) {
                self.slots[i] = ptr::null_mut();
                // SAFETY: cached records are dead blocks.
                gone.push(unsafe { self.unpublish(h) });
            }
        }
        gone
    }

    /// The earliest time a cached entry expires.
    pub fn next_expiry(&self, delay: u64) -> Option<u64> {
        // SAFETY: non-null slots are live records.
        self.slots
            .iter()
            .filter(|h| !h.is_null())
            .map(|&h| unsafe { (*h).freed_at } + delay)
            .min()
    }

    /// Registers a mapping made by [`map`] under a record: a spare one, or a fresh OS
    /// page. Err with the mapping, for the caller to unmap after the lock, when no record
    /// page or pagemap leaf can be had.
    ///
    /// # Safety
    /// `[base, base + len)` is a mapping from [`map`] for `align`, used by nobody.
    pub unsafe fn publish_new(
        &mut self,
        base: usize,
        len: usize,
        align: usize,
    ) -> Result<*mut Huge, Unmap> {
        // SAFETY: the caller's mapping, unreachable by anyone else.
        let block = unsafe { Unmap::new(base, len) };
        let h = match self.spare.iter_mut().find(|s| !s.is_null()) {
            Some(s) => core::mem::replace(s, ptr::null_mut()),
            None => match os::map(os::OS_PAGE) {
                Some(p) => p.as_ptr() as *mut Huge,
                None => return Err(block),
            },
        };
        // SAFETY: h is an unused record (fresh page or spare).
        unsafe {
            h.write(Huge {
                base,
                len,
                align: align.max(UNIT_SIZE),
                freed_at: 0,
                put_seq: 0,
                live: true,
                owner: HUGE_OWNER,
            })
        };
        if !pagemap::set_one(base, h as usize) {
            self.recycle(h);
            return Err(block);
        }
        // The record owns the mapping now.
        core::mem::forget(block);
        Ok(h)
    }

    /// Removes the pagemap entry of `h` before a move ([`grow_hidden`]) frees its old
    /// range, where another mapping may be published before `h` is shown again.
    ///
    /// # Safety
    /// `h` is a live record whose block only the caller uses.
    pub unsafe fn hide(&mut self, h: *mut Huge) {
        // SAFETY: forwarded.
        pagemap::clear_one(unsafe { (*h).base });
    }

    /// Publishes `h` at its base again after [`hide`](Self::hide) (and a move or not).
    ///
    /// # Safety
    /// `h` is a live record whose block only the caller uses; its pagemap leaf is mapped
    /// (it was published there before, or `grow_hidden` prepared it).
    pub unsafe fn show(&mut self, h: *mut Huge) {
        // SAFETY: forwarded.
        let published = pagemap::set_one(unsafe { (*h).base }, h as usize);
        debug_assert!(published, "the leaf was mapped");
    }

    /// Unregisters a huge block and recycles its record; returns its mapping, for the
    /// caller to unmap after the lock.
    ///
    /// # Safety
    /// `h` is a live record of a block nobody uses any more.
    pub unsafe fn unpublish(&mut self, h: *mut Huge) -> Unmap {
        // SAFETY: h is a live record no longer in use by anyone.
        let (base, len) = unsafe { ((*h).base, (*h).len) };
        pagemap::clear_one(base);
        self.recycle(h);
        // SAFETY: the block is dead and unpublished, and its record is gone.
        unsafe { Unmap::new(base, len) }
    }

    fn recycle(&mut self, h: *mut Huge) {
        match self.spare.iter_mut().find(|s| s.is_null()) {
            Some(s) => *s = h,
            // SAFETY: the record is unreferenced; it was mapped as one OS page.
            None => unsafe { os::unmap(h as *mut u8, os::OS_PAGE) },
        }
    }
}

/// Maps a new huge block of `len` bytes aligned to `align` (at least a unit), without the
/// arena lock: nothing but the caller knows the mapping until [`HugeCache::publish_new`].
pub fn map(len: usize, align: usize) -> Option<usize> {
    let align = align.max(UNIT_SIZE);
    if !pagemap::covers(0, len.checked_add(align)?) {
        return None;
    }
    Some(os::map_aligned_accounted(len, align)?.as_ptr() as usize)
}

/// Shrinks the mapping of `h` in place to `len` bytes (a multiple of the OS page); the
/// base, the only unit registered, stays, so this needs no lock and no hiding. False, with
/// `h` unchanged, when the kernel refuses.
///
/// # Safety
/// `h` is a live record whose block only the caller uses, not being read or written;
/// `len <= (*h).len`.
pub unsafe fn shrink(h: *mut Huge, len: usize) -> bool {
    // SAFETY: forwarded.
    let (base, old) = unsafe { ((*h).base, (*h).len) };
    debug_assert!(len <= old);
    // SAFETY: shrinking a mapping we own in place; the tail holds nothing we need.
    if len < old && unsafe { !os::remap_in_place(base as *mut u8, old, len) } {
        return false;
    }
    // SAFETY: as above.
    unsafe { (*h).len = len };
    true
}

/// Grows the mapping of `h` to `len` bytes (a multiple of the OS page), keeping its
/// contents: mremap moves the pages (without copying) into a fresh reservation aligned to
/// `align`, whose pagemap leaf it maps first, so that showing `h` there cannot fail. False,
/// with `h` unchanged, when the address space or pagemap is short. Needs no lock.
///
/// # Safety
/// `h` is a live record whose block only the caller uses, not being read or written, and
/// is hidden ([`HugeCache::hide`]); `len > (*h).len`.
pub unsafe fn grow_hidden(h: *mut Huge, len: usize, align: usize) -> bool {
    // SAFETY: forwarded.
    let (base, old) = unsafe { ((*h).base, (*h).len) };
    debug_assert!(len > old);
    // The target is bare address space (charged to nothing): mremap charges the growth
    // alone, and refuses it when the overcommit policy would not back it.
    let Some(fresh) = os::reserve_space(len, align.max(UNIT_SIZE)) else {
        return false;
    };
    let new = fresh.as_ptr() as usize;
    // Map the pagemap leaf first (lock-free: leaves are published by compare-exchange), so
    // that publishing cannot fail after the move.
    if !pagemap::prepare(new) {
        // SAFETY: the reservation was just made and is unused.
        unsafe { os::unmap(new as *mut u8, len) };
        return false;
    }
    // SAFETY: moves our own mapping onto our own fresh reservation (MREMAP_FIXED
    // replaces it); the kernel carries the pages over without copying. On failure
    // nothing moved.
    let moved = unsafe {
        libc::mremap(
            base as *mut libc::c_void,
            old,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            new as *mut libc::c_void,
        )
    };
    if moved == libc::MAP_FAILED {
        // SAFETY: as above.
        unsafe { os::unmap(new as *mut u8, len) };
        return false;
    }
    // SAFETY: as above.
    unsafe {
        (*h).base = new;
        (*h).len = len;
    }
    true
}
