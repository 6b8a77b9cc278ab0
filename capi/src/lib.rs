//! libpoolside: the C face of the poolside host engine.
//!
//! Built as `libpoolside.so` (drop-in malloc through `LD_PRELOAD`, or linked with
//! `-lpoolside`) and `libpoolside.a`. Every export is a thin layer over
//! [`poolside::host`]; this crate adds only what C and C++ define on top: errno, glibc's
//! corner cases (`realloc(p, 0)`, `pvalloc`, alignment rules), the C++ new-handler protocol,
//! and the `poolside_*` API of `include/poolside.h`.
//!
//! Rules every file here keeps, because the code runs inside malloc itself, possibly before
//! libc has run a single constructor:
//! - no allocation through `alloc`, no formatting, no panics (the panic handler below is
//!   a raw write(2) and abort, and should be unreachable);
//! - no `thread_local!`: the engine keeps its one TLS slot in initial-exec form, which is
//!   what lets the library be preloaded and dlopen'ed without `__tls_get_addr`;
//! - no call to an exported allocation symbol from inside the library (a call to `malloc`
//!   could be recognised by LLVM as the C builtin): entry points share `#[inline]` helpers.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

// Only `api` and `stats` form the public header; the rest are the standard names, declared
// by the system headers already.
/// cbindgen:ignore
mod aligned;
pub mod api;
/// cbindgen:ignore
mod errno;
/// cbindgen:ignore
mod fault;
/// cbindgen:ignore
mod libc_aliases;
/// cbindgen:ignore
mod malloc;
/// cbindgen:ignore
mod new_delete;
/// cbindgen:ignore
mod realloc;
pub mod stats;

/// Unreachable by design (nothing here indexes or unwraps); if it is ever reached, the
/// process cannot trust its heap any more, so stop it with a raw message.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    poolside::sys::fatal(b"panic inside libpoolside")
}
