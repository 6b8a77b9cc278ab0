//! `poolside replay`: drives the snapshot replay inside libpoolside_cuda.so through its C
//! entry point, loaded with dlopen. The tool does not link the CUDA plugin: one copy of the
//! plugin, the one users load into PyTorch, serves both.

use crate::run::locate;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};

type ReplayFn = unsafe extern "C" fn(*const c_char, c_int, *mut *mut c_char) -> c_int;
type FreeFn = unsafe extern "C" fn(*mut c_char);

/// The plugin: `$POOLSIDE_CUDA_LIB`, else the first of `places.lib_dirs` that holds it.
pub fn plugin_path(places: &locate::Places, env_lib: Option<&str>) -> Result<PathBuf, String> {
    if let Some(p) = env_lib.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("POOLSIDE_CUDA_LIB={} is not a file", p.display()))
        };
    }
    locate::cuda_lib(places).ok_or_else(|| {
        format!(
            "cannot find {} (looked in {}); build it with \
             `cargo build --release -p poolside-cuda` or set POOLSIDE_CUDA_LIB",
            locate::CUDA_LIB_NAME,
            locate::cuda_lib_looked_in(places)
        )
    })
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message owned by libc.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// Replays `snapshot` with the plugin at `lib`; Ok(report) or Err(message).
pub fn run(lib: &Path, snapshot: &Path, json: bool) -> Result<String, String> {
    let lib_c = CString::new(lib.as_os_str().as_encoded_bytes()).map_err(|_| "bad library path")?;
    let snap_c =
        CString::new(snapshot.as_os_str().as_encoded_bytes()).map_err(|_| "bad snapshot path")?;
    // SAFETY: lib_c is NUL-terminated; loading the plugin runs no code beyond its own
    // initialisers, which have no preconditions.
    let handle = unsafe { libc::dlopen(lib_c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("cannot load {}: {}", lib.display(), dl_error()));
    }
    let sym = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: handle is a live dlopen handle; name is NUL-terminated.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if p.is_null() {
            Err(format!(
                "{} has no {} (an older plugin?)",
                lib.display(),
                name.to_string_lossy()
            ))
        } else {
            Ok(p)
        }
    };
    let replay = sym(c"poolside_cuda_replay")?;
    let free = sym(c"poolside_cuda_replay_free")?;
    // SAFETY: the symbols are the plugin's documented entry points with these signatures.
    let (replay, free) = unsafe {
        (
            std::mem::transmute::<*mut c_void, ReplayFn>(replay),
            std::mem::transmute::<*mut c_void, FreeFn>(free),
        )
    };
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated path and out-pointer, per the entry point's contract.
    let code = unsafe { replay(snap_c.as_ptr(), json as c_int, &mut out) };
    let text = if out.is_null() {
        String::from("the plugin returned no report")
    } else {
        // SAFETY: out is a NUL-terminated string from the plugin, released just after.
        let t = unsafe { CStr::from_ptr(out) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: released once, with the plugin's own function.
        unsafe { free(out) };
        t
    };
    // The handle stays open: the plugin keeps process-wide state (its stats file), and
    // the process ends right after.
    if code == 0 {
        Ok(text)
    } else {
        Err(text)
    }
}
