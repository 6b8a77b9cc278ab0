//! C++ operators new and delete, every standard form.
//!
//! Deletes are plain Rust: each is `free` (the size and alignment arguments of sized and
//! aligned deletes are not needed: the engine knows every block's size class).
//!
//! News must call the new_handler and throw std::bad_alloc on failure, which takes C++:
//! those bodies are in `new_delete.cpp` under hidden C names. That file uses no C++
//! library symbol; its failure paths look up the program's own C++ runtime, so the
//! library does not depend on libstdc++. The exported mangled symbols
//! are naked one-instruction trampolines that tail-jump there, because rustc's version
//! script for a cdylib exports only symbols defined in Rust, and because no Rust frame
//! may stand between a C++ throw and its catch (this crate is built with panic=abort, so
//! an unwind through a Rust frame would abort). The jump keeps the caller's arguments in
//! their registers and leaves no frame of ours on the stack.

use crate::aligned::alloc_aligned;
use crate::malloc::{alloc_natural, release};
use libc::{c_void, size_t};

extern "C" {
    fn poolside_cxx_new(size: size_t) -> *mut c_void;
    fn poolside_cxx_new_nothrow(size: size_t) -> *mut c_void;
    fn poolside_cxx_new_aligned(size: size_t, align: size_t) -> *mut c_void;
    fn poolside_cxx_new_aligned_nothrow(size: size_t, align: size_t) -> *mut c_void;
}

/// The allocation new_delete.cpp asks for: `align` 0 means the default new alignment
/// (malloc's); otherwise a power of two (the C++ side checks). Null with ENOMEM on failure.
/// Declared hidden on the C++ side, so the final link keeps it out of the dynamic table.
#[no_mangle]
pub extern "C" fn __poolside_cxx_alloc(size: size_t, align: size_t) -> *mut c_void {
    if align == 0 {
        alloc_natural(size)
    } else {
        alloc_aligned(align, size)
    }
}

/// Defines exported symbol `$name` as a jump to `$target`.
macro_rules! trampoline {
    ($name:ident => $target:ident) => {
        #[unsafe(naked)]
        #[no_mangle]
        pub extern "C" fn $name() {
            #[cfg(target_arch = "x86_64")]
            core::arch::naked_asm!("jmp {f}@PLT", f = sym $target);
            #[cfg(target_arch = "aarch64")]
            core::arch::naked_asm!("b {f}", f = sym $target);
        }
    };
}

// operator new(size_t), new[](size_t)
trampoline!(_Znwm => poolside_cxx_new);
trampoline!(_Znam => poolside_cxx_new);
// operator new(size_t, const std::nothrow_t&), and new[]
trampoline!(_ZnwmRKSt9nothrow_t => poolside_cxx_new_nothrow);
trampoline!(_ZnamRKSt9nothrow_t => poolside_cxx_new_nothrow);
// operator new(size_t, std::align_val_t), and new[]
trampoline!(_ZnwmSt11align_val_t => poolside_cxx_new_aligned);
trampoline!(_ZnamSt11align_val_t => poolside_cxx_new_aligned);
// operator new(size_t, std::align_val_t, const std::nothrow_t&), and new[]
trampoline!(_ZnwmSt11align_val_tRKSt9nothrow_t => poolside_cxx_new_aligned_nothrow);
trampoline!(_ZnamSt11align_val_tRKSt9nothrow_t => poolside_cxx_new_aligned_nothrow);

/// Defines exported delete symbol `$name` taking the pointer and `$extra` ignored words.
macro_rules! delete {
    ($name:ident $(, $extra:ident)*) => {
        /// # Safety
        /// `p` is null or a live block from operator new, not deleted since.
        #[no_mangle]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $extra: size_t)*) {
            $(let _ = $extra;)*
            // SAFETY: forwarded contract.
            unsafe { release(p) }
        }
    };
}

// operator delete(void*), delete[](void*)
delete!(_ZdlPv);
delete!(_ZdaPv);
// operator delete(void*, size_t), and delete[]
delete!(_ZdlPvm, size);
delete!(_ZdaPvm, size);
// operator delete(void*, const std::nothrow_t&), and delete[] (a reference: one word)
delete!(_ZdlPvRKSt9nothrow_t, tag);
delete!(_ZdaPvRKSt9nothrow_t, tag);
// operator delete(void*, std::align_val_t), and delete[]
delete!(_ZdlPvSt11align_val_t, align);
delete!(_ZdaPvSt11align_val_t, align);
// operator delete(void*, size_t, std::align_val_t), and delete[]
delete!(_ZdlPvmSt11align_val_t, size, align);
delete!(_ZdaPvmSt11align_val_t, size, align);
// operator delete(void*, std::align_val_t, const std::nothrow_t&), and delete[]
delete!(_ZdlPvSt11align_val_tRKSt9nothrow_t, align, tag);
delete!(_ZdaPvSt11align_val_tRKSt9nothrow_t, align, tag);
