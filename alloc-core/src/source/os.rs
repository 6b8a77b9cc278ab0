//! The host memory source: anonymous private mappings from the kernel.
//!
//! Reservations are `MAP_NORESERVE` and readable/writable at once, so commit is free and the
//! kernel faults pages in on first touch. Decommit is `MADV_DONTNEED`, which drops the pages
//! from RSS immediately and makes them read as zero afterwards (the engine relies on that
//! for calloc). Nothing here allocates, formats or panics.
//!
//! Huge blocks (one mapping per request) are mapped by [`map_aligned_accounted`] instead:
//! without `MAP_NORESERVE`, exactly as glibc's malloc maps its large chunks, so the kernel's
//! overcommit policy (`/proc/sys/vm/overcommit_memory`) judges them as it judges glibc's: in
//! mode 0 a single mapping larger than RAM + swap is refused, in mode 1 nothing is, in mode
//! 2 anything beyond the commit limit is. The engine never reads the mode itself.

use super::MemorySource;
use core::ptr::{self, NonNull};

/// The operating system's memory, through mmap.
pub struct OsSource;

/// The one host source; stateless.
pub static OS: OsSource = OsSource;

/// Size of a kernel page. 4 KiB on every target we build for; checked in tests.
pub const OS_PAGE: usize = 4096;

#[cfg(feature = "fault-injection")]
mod faults {
    use core::sync::atomic::{AtomicIsize, Ordering};
    /// Number of successful maps left before every map fails; negative disables.
    pub static MAPS_LEFT: AtomicIsize = AtomicIsize::new(-1);
    pub fn should_fail() -> bool {
        let mut cur = MAPS_LEFT.load(Ordering::Relaxed);
        loop {
            if cur < 0 {
                return false;
            }
            if cur == 0 {
                return true;
            }
            match MAPS_LEFT.compare_exchange(cur, cur - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return false,
                Err(v) => cur = v,
            }
        }
    }
}

/// Test builds only: after `n` more successful mappings, every mapping fails (negative `n`
/// turns failures off again).
#[cfg(feature = "fault-injection")]
pub fn inject_map_failures_after(n: isize) {
    faults::MAPS_LEFT.store(n, core::sync::atomic::Ordering::Relaxed);
}

/// How a mapping is made: its protection and the flags added to MAP_PRIVATE|MAP_ANONYMOUS.
#[derive(Clone, Copy)]
struct Kind {
    prot: libc::c_int,
    flags: libc::c_int,
}

/// Readable and writable, outside the kernel's commit accounting (modes 0 and 1).
const UNACCOUNTED: Kind = Kind {
    prot: libc::PROT_READ | libc::PROT_WRITE,
    flags: libc::MAP_NORESERVE,
};
/// Readable and writable, charged to the commit accounting like glibc's mmapped chunks.
const ACCOUNTED: Kind = Kind {
    prot: libc::PROT_READ | libc::PROT_WRITE,
    flags: 0,
};
/// Address space only: no access, never charged (not writable), even in mode 2.
const SPACE: Kind = Kind {
    prot: libc::PROT_NONE,
    flags: libc::MAP_NORESERVE,
};

fn map_kind(size: usize, kind: Kind) -> Option<NonNull<u8>> {
    #[cfg(feature = "fault-injection")]
    if faults::should_fail() {
        return None;
    }
    // SAFETY: an anonymous private mapping with no address hint touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            kind.prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | kind.flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p as *mut u8)
    }
}

/// Maps `size` bytes of fresh zeroed memory anywhere, or `None`.
pub fn map(size: usize) -> Option<NonNull<u8>> {
    map_kind(size, UNACCOUNTED)
}

/// Unmaps a range returned (in whole or in part) by [`map`].
///
/// # Safety
/// Nothing uses the range any more.
pub unsafe fn unmap(p: *mut u8, size: usize) {
    if size != 0 {
        // SAFETY: the caller owns the range; munmap of an owned range cannot fail except
        // for bad arguments, and a failure would only leak address space.
        unsafe { libc::munmap(p as *mut libc::c_void, size) };
    }
}

/// Maps `size` bytes aligned to `align` by mapping `size + align` and trimming both ends.
pub fn map_aligned(size: usize, align: usize) -> Option<NonNull<u8>> {
    map_aligned_kind(size, align, UNACCOUNTED)
}

/// Like [`map_aligned`], but charged to the kernel's commit accounting, so that a mapping
/// the overcommit policy would not back fails here, as glibc's malloc does. The kernel
/// judges `size + align` bytes (trimmed at once): glibc asks for `size` plus a page and a
/// header, a difference that only matters within 64 KiB of the limit.
pub fn map_aligned_accounted(size: usize, align: usize) -> Option<NonNull<u8>> {
    map_aligned_kind(size, align, ACCOUNTED)
}

/// Reserves `size` bytes of address space aligned to `align`, inaccessible and charged to
/// nothing: a target for `mremap(MREMAP_FIXED)`, which replaces it.
pub fn reserve_space(size: usize, align: usize) -> Option<NonNull<u8>> {
    map_aligned_kind(size, align, SPACE)
}

fn map_aligned_kind(size: usize, align: usize, kind: Kind) -> Option<NonNull<u8>> {
    if align <= OS_PAGE {
        return map_kind(size, kind);
    }
    let over = size.checked_add(align)?;
    let raw = map_kind(over, kind)?.as_ptr() as usize;
    // Cannot overflow: raw + over is the end of a mapping, below the top of the address space.
    let start = (raw + align - 1) & !(align - 1);
    // SAFETY: both trimmed pieces lie inside the mapping just made and are unused.
    unsafe {
        unmap(raw as *mut u8, start - raw);
        unmap((start + size) as *mut u8, raw + over - (start + size));
    }
    NonNull::new(start as *mut u8)
}

/// Resizes the mapping at `p` from `old` to `new` bytes without moving it (shrinking
/// always works; growing needs free address space behind it).
///
/// # Safety
/// `[p, p + old)` is one mapping made by this module; when shrinking, nothing uses the tail.
pub unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    // SAFETY: without MREMAP_MAYMOVE the kernel either resizes in place or fails.
    let r = unsafe { libc::mremap(p as *mut libc::c_void, old, new, 0) };
    r != libc::MAP_FAILED
}

/// Drops the pages behind a range; they read as zero afterwards.
///
/// # Safety
/// The range is mapped by this module and holds no live data.
pub unsafe fn purge(p: *mut u8, size: usize) {
    // SAFETY: MADV_DONTNEED on a private anonymous mapping only discards contents.
    unsafe { libc::madvise(p as *mut libc::c_void, size, libc::MADV_DONTNEED) };
}

/// The kernel's transparent huge page mode, the bracketed word of
/// `/sys/kernel/mm/transparent_hugepage/enabled` (`always [madvise] never`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThpMode {
    Always,
    Madvise,
    Never,
}

/// The mode named in brackets in the text of an `enabled` file; `None` when there is no
/// bracketed word, or another one (`inherit` in a per-size file).
pub fn parse_thp_mode(text: &[u8]) -> Option<ThpMode> {
    let open = text.iter().position(|&b| b == b'[')?;
    let rest = &text[open + 1..];
    let close = rest.iter().position(|&b| b == b']')?;
    match &rest[..close] {
        b"always" => Some(ThpMode::Always),
        b"madvise" => Some(ThpMode::Madvise),
        b"never" => Some(ThpMode::Never),
        _ => None,
    }
}

/// The kernel's THP mode for 2 MiB pages, read with raw system calls (nothing allocates):
/// the per-size setting (`hugepages-2048kB/enabled`, kernels since 6.8) unless it says
/// `inherit` or is missing, then the global one. `None` when neither can be read (no /sys,
/// a kernel without THP).
pub fn thp_mode() -> Option<ThpMode> {
    read_thp_mode(c"/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled")
        .or_else(|| read_thp_mode(c"/sys/kernel/mm/transparent_hugepage/enabled"))
}

fn read_thp_mode(path: &core::ffi::CStr) -> Option<ThpMode> {
    // SAFETY: the path is NUL-terminated; open allocates nothing in user space.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 64];
    // SAFETY: buf is valid for its length; fd is ours and closed once.
    let n = unsafe {
        let n = libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return None;
    }
    parse_thp_mode(&buf[..n as usize])
}

/// What to tell the kernel about a range's huge pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeAdvice {
    /// Nothing: the kernel's mode decides.
    None,
    /// `MADV_HUGEPAGE`: back the range with huge pages where it can (mode `madvise`).
    Huge,
    /// `MADV_NOHUGEPAGE`: never (mode `always`, `huge_pages:never`).
    NoHuge,
}

/// Gives the range `advice`. A refusal (a kernel without THP) changes nothing else.
///
/// # Safety
/// The range is mapped by this module.
pub unsafe fn advise_huge(p: *mut u8, size: usize, advice: HugeAdvice) {
    let flag = match advice {
        HugeAdvice::None => return,
        HugeAdvice::Huge => libc::MADV_HUGEPAGE,
        HugeAdvice::NoHuge => libc::MADV_NOHUGEPAGE,
    };
    // SAFETY: these advices change only how the kernel backs the range, never its
    // contents.
    unsafe { libc::madvise(p as *mut libc::c_void, size, flag) };
}

// SAFETY: every reservation is a fresh private mapping owned by the caller until released;
// the functions only make syscalls and never allocate.
unsafe impl MemorySource for OsSource {
    const CPU_ACCESSIBLE: bool = true;
    const RESERVE_COMMITS: bool = true;

    fn granularity(&self) -> usize {
        OS_PAGE
    }

    fn reserve(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        map_aligned(size, align)
    }

    unsafe fn release(&self, base: NonNull<u8>, size: usize) {
        // SAFETY: forwarded contract: the reservation is no longer used.
        unsafe { unmap(base.as_ptr(), size) }
    }

    unsafe fn commit(&self, _ptr: NonNull<u8>, _size: usize) -> bool {
        true
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: forwarded contract: the range holds no live data.
        unsafe { purge(ptr.as_ptr(), size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_matches_the_kernel() {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        assert_eq!(page as usize, OS_PAGE);
    }

    #[test]
    fn thp_mode_is_the_bracketed_word() {
        assert_eq!(
            parse_thp_mode(b"always [madvise] never\n"),
            Some(ThpMode::Madvise)
        );
        assert_eq!(
            parse_thp_mode(b"[always] madvise never\n"),
            Some(ThpMode::Always)
        );
        assert_eq!(
            parse_thp_mode(b"always madvise [never]\n"),
            Some(ThpMode::Never)
        );
        assert_eq!(parse_thp_mode(b"always madvise never\n"), None);
        assert_eq!(parse_thp_mode(b"[inherit] always"), None);
        assert_eq!(parse_thp_mode(b"[madvise"), None);
        assert_eq!(parse_thp_mode(b""), None);
        assert_eq!(parse_thp_mode(b"always [inherit] madvise never\n"), None);
        // The running kernel's files, as the kernel writes them (or none at all).
        let dir = "/sys/kernel/mm/transparent_hugepage";
        let per_size = std::fs::read(std::format!("{dir}/hugepages-2048kB/enabled")).ok();
        let global = std::fs::read(std::format!("{dir}/enabled")).ok();
        let want = per_size
            .and_then(|t| parse_thp_mode(&t))
            .or_else(|| global.and_then(|t| parse_thp_mode(&t)));
        assert_eq!(thp_mode(), want);
    }

    #[test]
    fn aligned_maps_are_aligned_and_writable() {
        for shift in [12, 16, 22, 25] {
            let align = 1usize << shift;
            let p = map_aligned(3 * OS_PAGE, align).unwrap();
            assert_eq!(p.as_ptr() as usize % align, 0);
            // SAFETY: the mapping is ours and 3 pages long.
            unsafe {
                p.as_ptr().write_bytes(0xAB, 3 * OS_PAGE);
                purge(p.as_ptr(), OS_PAGE);
                assert_eq!(*p.as_ptr(), 0, "purged page reads zero");
                assert_eq!(*p.as_ptr().add(OS_PAGE), 0xAB);
                unmap(p.as_ptr(), 3 * OS_PAGE);
            }
        }
    }
}
