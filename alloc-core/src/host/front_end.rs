//! Which front end the host pool serves: the whole process's `malloc` (libpoolside, through
//! LD_PRELOAD or linked), or a Rust program's `#[global_allocator]` alone.
//!
//! The two meet different programs. A preload reaches every process a shell starts, most of
//! them small (tools, scripts, interpreters), where RSS is what shows; a Rust program that
//! names a global allocator chose one for speed, as users of the `mimalloc` crate do (which
//! advises huge pages for all its memory). `huge_pages: auto` follows that split (see
//! `segment::thp_policy`).
//!
//! The test is whether the `malloc` the process resolved lies in the module (executable or
//! shared object) this code was linked into. It reads only the module's own ELF program
//! headers, which are mapped and never change, so it allocates nothing and works before
//! constructors run.

unsafe extern "C" {
    /// Start of this module's ELF header: the linker defines it (hidden) in every
    /// executable and shared object it writes (GNU ld, gold, lld, mold).
    static __ehdr_start: u8;
}

const PT_LOAD: u32 = 1;

/// Whether the process's `malloc` is the one in this module: libpoolside serves the
/// process's malloc family, rather than only a Rust program's `GlobalAlloc`.
pub fn serves_process_malloc() -> bool {
    let malloc = libc::malloc as *const () as usize;
    match module_range() {
        Some((lo, hi)) => (lo..hi).contains(&malloc),
        // Headers we cannot read: assume the preload, whose defaults are the lean ones.
        None => true,
    }
}

/// The addresses this module's loadable segments span.
fn module_range() -> Option<(usize, usize)> {
    // SAFETY: __ehdr_start is the module's ELF header, mapped read-only by the loader
    // for the process's lifetime; we read it with unaligned loads within e_phoff+e_phnum
    // entries, which the loader itself used, so they are mapped too (the program headers
    // lie in the first loadable segment in every layout the linkers above produce).
    unsafe {
        let ehdr = &__ehdr_start as *const u8;
        if core::ptr::read_unaligned(ehdr as *const [u8; 4]) != *b"\x7fELF" || *ehdr.add(4) != 2 {
            return None; // not ELF64
        }
        let phoff = core::ptr::read_unaligned(ehdr.add(32) as *const u64) as usize;
        let phentsize = core::ptr::read_unaligned(ehdr.add(54) as *const u16) as usize;
        let phnum = core::ptr::read_unaligned(ehdr.add(56) as *const u16) as usize;
        if phentsize < 56 || phnum == 0 || phnum > 64 {
            return None;
        }
        // The first PT_LOAD maps file offset 0, where the header is: its p_vaddr less the
        // header's address is the load bias.
        let (mut lo, mut hi, mut bias) = (usize::MAX, 0usize, None);
        for i in 0..phnum {
            let ph = ehdr.add(phoff + i * phentsize);
            if core::ptr::read_unaligned(ph as *const u32) != PT_LOAD {
                continue;
            }
            let offset = core::ptr::read_unaligned(ph.add(8) as *const u64) as usize;
            let vaddr = core::ptr::read_unaligned(ph.add(16) as *const u64) as usize;
            let memsz = core::ptr::read_unaligned(ph.add(40) as *const u64) as usize;
            if bias.is_none() && offset == 0 {
                bias = Some((ehdr as usize).wrapping_sub(vaddr));
            }
            lo = lo.min(vaddr);
            hi = hi.max(vaddr.wrapping_add(memsz));
        }
        let bias = bias?;
        (lo < hi).then(|| (lo.wrapping_add(bias), hi.wrapping_add(bias)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_test_binary_does_not_serve_malloc() {
        let (lo, hi) = module_range().expect("the test binary's own program headers");
        let here = module_range as *const () as usize;
        assert!((lo..hi).contains(&here), "{lo:#x}..{hi:#x} lacks {here:#x}");
        // This test binary uses std's System allocator; malloc is glibc's.
        assert!(!serves_process_malloc());
    }
}
