//! A CUDA graph capture's stream filter, callable from Rust under the pool lock.
//!
//! PyTorch hands the begin hook a `std::function<bool(cudaStream_t)>`; cpp/graph.cpp keeps
//! a heap copy and gives Rust two noexcept C functions over it (call, drop), so no C++
//! exception or C++ type crosses into Rust. Tests and Rust callers make one from a closure.

use crate::driver::StreamId;
use std::ffi::{c_char, c_int, c_void};

/// The C predicate behind a capture's filter (cpp/graph.cpp): 1 accept, 0 reject, -1 the
/// filter threw (message in the buffer).
pub type FilterCall = unsafe extern "C" fn(
    ctx: *mut c_void,
    stream: *mut c_void,
    err: *mut c_char,
    len: usize,
) -> c_int;
/// Frees the filter's context.
pub type FilterDrop = unsafe extern "C" fn(ctx: *mut c_void);

/// A capture's stream filter: PyTorch's `std::function<bool(cudaStream_t)>`, kept and
/// called by cpp/graph.cpp, or a Rust closure (tests, replay).
pub struct Filter {
    call: FilterCall,
    ctx: *mut c_void,
    drop: FilterDrop,
}

// SAFETY: the filter is called only under its device's pool lock, one thread at a time,
// and dropped once, by whichever thread holds it then; PyTorch's filters (a capture id
// compared with cudaStreamGetCaptureInfo's, or a thread id) may be called and destroyed on
// any thread, and a Rust closure must be Send.
unsafe impl Send for Filter {}

impl Filter {
    /// A filter from C: `call(ctx, stream, errbuf, errlen)` answers, `drop(ctx)` frees.
    ///
    /// # Safety
    /// `call` and `drop` never unwind; `ctx` stays valid until `drop(ctx)`, which the
    /// filter calls exactly once, when dropped.
    pub unsafe fn from_c(call: FilterCall, ctx: *mut c_void, drop: FilterDrop) -> Filter {
        Filter { call, ctx, drop }
    }

    /// A filter from a Rust closure.
    pub fn new<F: Fn(StreamId) -> bool + Send + 'static>(f: F) -> Filter {
        unsafe extern "C" fn call<F: Fn(StreamId) -> bool>(
            ctx: *mut c_void,
            stream: *mut c_void,
            _err: *mut c_char,
            _len: usize,
        ) -> c_int {
            // SAFETY: ctx is the Box<F> made below, alive until `drop_box`.
            let f = unsafe { &*(ctx as *const F) };
            f(stream as StreamId) as c_int
        }
        unsafe extern "C" fn drop_box<F>(ctx: *mut c_void) {
            // SAFETY: ctx came from Box::into_raw below and is dropped once.
            drop(unsafe { Box::from_raw(ctx as *mut F) });
        }
        Filter {
            call: call::<F>,
            ctx: Box::into_raw(Box::new(f)) as *mut c_void,
            drop: drop_box::<F>,
        }
    }

    /// Whether allocations on `stream` go to the capture's pool; Err with the filter's
    /// message when it threw.
    pub fn accepts(&self, stream: StreamId) -> Result<bool, String> {
        let mut err = [0u8; 256];
        // SAFETY: the contract of `from_c` (or `new`): call is valid with ctx until drop;
        // err is a writable buffer of its length.
        let r = unsafe {
            (self.call)(
                self.ctx,
                stream as usize as *mut c_void,
                err.as_mut_ptr() as *mut c_char,
                err.len(),
            )
        };
        match r {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                let n = err.iter().position(|&b| b == 0).unwrap_or(err.len());
                Err(String::from_utf8_lossy(&err[..n]).into_owned())
            }
        }
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: the contract of `from_c`/`new`: drop is called exactly once, here.
        unsafe { (self.drop)(self.ctx) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn filters_answer_and_are_dropped_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        struct Count(Arc<AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let c = Count(drops.clone());
        let f = Filter::new(move |s| {
            let _ = &c;
            s == 7
        });
        assert_eq!(f.accepts(7), Ok(true));
        assert_eq!(f.accepts(8), Ok(false));
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(f);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
