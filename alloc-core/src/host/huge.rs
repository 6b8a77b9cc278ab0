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

use super::{pagemap, UNIT_SIZE};
use crate::source::os;
use core::ptr;

/// Metadata of one huge mapping (kept in host memory, tagged with bit 0 in the pagemap).
#[repr(C)]
pub struct Huge {
    pub base: usize,
    /// Bytes mapped (a multiple of the OS page); all of it is usable.
    pub len: usize,
    /// Alignment the mapping was made for.
    pub align: usize,
    /// When it entered the cache (coarse ms).
    pub freed_at: u64,
    pub live: bool,
}

const CACHE_SLOTS: usize = 8;

/// Freed huge mappings waiting for reuse, plus a free list of metadata records.
pub struct HugeCache {
    slots: [*mut Huge; CACHE_SLOTS],
    /// Spare metadata records (each one OS page, reused).
    spare: [*mut Huge; CACHE_SLOTS],
}

impl HugeCache {
    pub const EMPTY: HugeCache = HugeCache {
        slots: [ptr::null_mut(); CACHE_SLOTS],
        spare: [ptr::null_mut(); CACHE_SLOTS],
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

    /// Caches a freed mapping. Returns the bytes unmapped to make room (evicting the
    /// oldest entry when full).
    ///
    /// # Safety
    /// `h` is a live record of a block nobody uses any more.
    pub unsafe fn put(&mut self, h: *mut Huge, now: u64) -> usize {
        // SAFETY: h is a live record just freed by its owner.
        unsafe { (*h).freed_at = now };
        if let Some(slot) = self.slots.iter_mut().find(|s| s.is_null()) {
            *slot = h;
            return 0;
        }
        let mut oldest = 0;
        for i in 1..CACHE_SLOTS {
            // SAFETY: all slots are live records here.
            if unsafe { (*self.slots[i]).freed_at < (*self.slots[oldest]).freed_at } {
                oldest = i;
            }
        }
        let evicted = core::mem::replace(&mut self.slots[oldest], h);
        // SAFETY: the evicted record was cached, so its block is dead.
        unsafe { self.destroy(evicted) }
    }

    /// Unmaps cached mappings older than `delay` (all when `force`); returns bytes unmapped.
    pub fn expire(&mut self, now: u64, delay: u64, force: bool) -> usize {
        let mut bytes = 0;
        for i in 0..CACHE_SLOTS {
            let h = self.slots[i];
            // SAFETY: non-null slots are live records.
            if !h.is_null() && (force || unsafe { (*h).freed_at } + delay <= now) {
                self.slots[i] = ptr::null_mut();
                // SAFETY: cached records are dead blocks.
                bytes += unsafe { self.destroy(h) };
            }
        }
        bytes
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

    /// Maps a new huge block of `len` bytes aligned to `align`, with its record.
    pub fn create(&mut self, len: usize, align: usize) -> Option<*mut Huge> {
        let align = align.max(UNIT_SIZE);
        if !pagemap::covers(0, len.checked_add(align)?) {
            return None;
        }
        let base = os::map_aligned_accounted(len, align)?.as_ptr() as usize;
        let h = match self.spare.iter_mut().find(|s| !s.is_null()) {
            Some(s) => core::mem::replace(s, ptr::null_mut()),
            None => match os::map(os::OS_PAGE) {
                Some(p) => p.as_ptr() as *mut Huge,
                None => {
                    // SAFETY: the mapping was just made and is unused.
                    unsafe { os::unmap(base as *mut u8, len) };
                    return None;
                }
            },
        };
        // SAFETY: h is an unused record (fresh page or spare).
        unsafe {
            h.write(Huge {
                base,
                len,
                align,
                freed_at: 0,
                live: true,
            })
        };
        if !pagemap::set_one(base, h as usize | 1) {
            // SAFETY: neither is published.
            unsafe { os::unmap(base as *mut u8, len) };
            self.recycle(h);
            return None;
        }
        Some(h)
    }

    /// Resizes the mapping of `h` to `len` bytes (a multiple of the OS page), keeping its
    /// contents up to the smaller size. Growing may move it (to an address aligned to
    /// `align`). False, with `h` unchanged, when the address space or pagemap is short.
    ///
    /// # Safety
    /// `h` is a live record whose block only the caller uses.
    pub unsafe fn resize(&mut self, h: *mut Huge, len: usize, align: usize) -> bool {
        // SAFETY: forwarded.
        let (base, old) = unsafe { ((*h).base, (*h).len) };
        if len <= old {
            // SAFETY: shrinking a mapping we own in place; the tail holds nothing we need.
            // The base, the only unit registered, stays.
            if len < old && unsafe { !os::remap_in_place(base as *mut u8, old, len) } {
                return false;
            }
            // SAFETY: as above.
            unsafe { (*h).len = len };
            return true;
        }
        // The target is bare address space (charged to nothing): mremap charges the growth
        // alone, and refuses it when the overcommit policy would not back it.
        let Some(fresh) = os::reserve_space(len, align.max(UNIT_SIZE)) else {
            return false;
        };
        let new = fresh.as_ptr() as usize;
        // Map the pagemap leaf first, so that publishing cannot fail after the move.
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
        pagemap::clear_one(base);
        let published = pagemap::set_one(new, h as usize | 1);
        debug_assert!(published, "the leaf was prepared");
        // SAFETY: as above.
        unsafe {
            (*h).base = new;
            (*h).len = len;
        }
        true
    }

    /// Unmaps a huge block and recycles its record; returns the bytes unmapped.
    ///
    /// # Safety
    /// `h` is a live record of a block nobody uses any more.
    pub unsafe fn destroy(&mut self, h: *mut Huge) -> usize {
        // SAFETY: h is a live record no longer in use by anyone.
        let (base, len) = unsafe { ((*h).base, (*h).len) };
        pagemap::clear_one(base);
        // SAFETY: the block is dead and unpublished.
        unsafe { os::unmap(base as *mut u8, len) };
        self.recycle(h);
        len
    }

    fn recycle(&mut self, h: *mut Huge) {
        match self.spare.iter_mut().find(|s| s.is_null()) {
            Some(s) => *s = h,
            // SAFETY: the record is unreferenced; it was mapped as one OS page.
            None => unsafe { os::unmap(h as *mut u8, os::OS_PAGE) },
        }
    }
}
