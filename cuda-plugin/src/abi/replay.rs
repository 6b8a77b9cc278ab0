//! `poolside_cuda_replay`: the snapshot replay behind a C entry point, so that the
//! `poolside` tool reaches it by dlopen (as PyTorch reaches the allocator) instead of
//! linking this crate. A linked copy would need a second, panic=unwind build of this
//! cdylib+rlib crate under the same file names whenever tests run.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;

/// Replays the PyTorch memory snapshot at `path` (NUL-terminated) on the simulated
/// driver. Returns 0 with the report in `*out`, or 1 with an error message in `*out`;
/// `*out` must be released with [`poolside_cuda_replay_free`]. `json` non-zero asks for
/// the JSON report. Hostile input (a pickle that would build objects, nesting beyond the
/// decoder's bounds, forged lengths) is an error message like any other: the decoder never
/// recurses on the input and never panics on it, so the calling process (Python, through
/// ctypes) survives it.
///
/// # Safety
/// `path` is a NUL-terminated string and `out` a valid pointer to write to.
#[no_mangle]
pub unsafe extern "C" fn poolside_cuda_replay(
    path: *const c_char,
    json: c_int,
    out: *mut *mut c_char,
) -> c_int {
    if path.is_null() || out.is_null() {
        return 1;
    }
    // SAFETY: by contract, path is NUL-terminated.
    let path = unsafe { CStr::from_ptr(path) };
    let result = match path.to_str() {
        Ok(p) => crate::replay::run(Path::new(p), json != 0),
        Err(_) => Err("the snapshot path is not UTF-8".to_string()),
    };
    let (code, text) = match result {
        Ok(t) => (0, t),
        Err(e) => (1, e),
    };
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    // SAFETY: out is valid by contract; ownership passes to the caller.
    unsafe { *out = text.into_raw() };
    code
}

/// Releases a string returned by [`poolside_cuda_replay`].
///
/// # Safety
/// `s` is null or came from `poolside_cuda_replay`, and is released once.
#[no_mangle]
pub unsafe extern "C" fn poolside_cuda_replay_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: s came from CString::into_raw in poolside_cuda_replay.
        drop(unsafe { CString::from_raw(s) });
    }
}
