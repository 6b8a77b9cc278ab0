//! The C ABI PyTorch calls through `CUDAPluggableAllocator`, and the process-wide state
//! behind it.
//!
//! `poolside_cuda_malloc` itself is C++ (cpp/oom.cpp): it calls
//! [`exports::poolside_cuda_malloc_impl`] and throws when that returns NULL, so an
//! out-of-memory reaches PyTorch as an exception, never as a NULL pointer, and the throw
//! never crosses a Rust frame. The exception is PyTorch's own `c10::OutOfMemoryError`
//! when the process has a PyTorch it recognises (Python then sees
//! `torch.cuda.OutOfMemoryError`), otherwise `std::runtime_error`. No exported function
//! panics or unwinds.

pub mod exports;
pub mod global;
pub mod replay;
