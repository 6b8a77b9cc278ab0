//! The thread's heap pointer, in one initial-exec TLS slot.
//!
//! Stable Rust cannot choose a TLS model, and `thread_local!` in a shared library compiles
//! to general-dynamic TLS, whose `__tls_get_addr` may call malloc after a dlopen: infinite
//! recursion inside an allocator. So the slot is declared in assembly (`.tbss`) and read
//! with the initial-exec sequence (`@gottpoff` on x86-64, `:gottprel:` on AArch64). The
//! linker then marks libpoolside.so `STATIC_TLS`, and no `__tls_get_addr` is imported. The
//! slot is ready before any constructor runs, because the dynamic loader sets up static TLS
//! when it maps the thread.
//!
//! The slot starts as null: "this thread has no heap yet".

use super::heap::Heap;

/// Names the TLS slot: the slot is the symbol `<mangled name of this fn>_tls`. The mangled
/// name carries the hash of this build of the crate, so two builds linked into one binary
/// (a test that links the CUDA plugin's copy of the engine beside its own) get two slots
/// instead of a duplicate symbol. Never called.
#[inline(never)]
extern "C" fn slot_anchor() {}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".hidden {anchor}_tls",
    ".globl {anchor}_tls",
    ".type {anchor}_tls,@object",
    ".size {anchor}_tls,8",
    "{anchor}_tls:",
    ".zero 8",
    ".popsection",
    anchor = sym slot_anchor,
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",%nobits",
    ".p2align 3",
    ".hidden {anchor}_tls",
    ".globl {anchor}_tls",
    ".type {anchor}_tls,%object",
    ".size {anchor}_tls,8",
    "{anchor}_tls:",
    ".zero 8",
    ".popsection",
    anchor = sym slot_anchor,
);

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("poolside's initial-exec TLS slot is written for x86-64 and AArch64");

/// This thread's heap, or null.
#[inline(always)]
pub fn get() -> *mut Heap {
    let v: *mut Heap;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads the thread's own 8-byte static TLS slot declared above; the GOT entry
    // holds its offset from the thread pointer (fs), fixed for the life of the process.
    unsafe {
        core::arch::asm!(
            "mov {v}, qword ptr [rip + {anchor}_tls@GOTTPOFF]",
            "mov {v}, qword ptr fs:[{v}]",
            v = out(reg) v,
            anchor = sym slot_anchor,
            options(nostack, readonly, preserves_flags, pure),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above, with the thread pointer in tpidr_el0.
    unsafe {
        core::arch::asm!(
            "mrs {t}, tpidr_el0",
            "adrp {v}, :gottprel:{anchor}_tls",
            "ldr {v}, [{v}, #:gottprel_lo12:{anchor}_tls]",
            "ldr {v}, [{t}, {v}]",
            t = out(reg) _,
            v = out(reg) v,
            anchor = sym slot_anchor,
            options(nostack, readonly, preserves_flags, pure),
        );
    }
    v
}

/// Sets this thread's heap.
#[inline]
pub fn set(heap: *mut Heap) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: writes the thread's own static TLS slot (see `get`).
    unsafe {
        core::arch::asm!(
            "mov {o}, qword ptr [rip + {anchor}_tls@GOTTPOFF]",
            "mov qword ptr fs:[{o}], {v}",
            o = out(reg) _,
            v = in(reg) heap,
            anchor = sym slot_anchor,
            options(nostack, preserves_flags),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above.
    unsafe {
        core::arch::asm!(
            "mrs {t}, tpidr_el0",
            "adrp {o}, :gottprel:{anchor}_tls",
            "ldr {o}, [{o}, #:gottprel_lo12:{anchor}_tls]",
            "str {v}, [{t}, {o}]",
            t = out(reg) _,
            o = out(reg) _,
            v = in(reg) heap,
            anchor = sym slot_anchor,
            options(nostack, preserves_flags),
        );
    }
}
