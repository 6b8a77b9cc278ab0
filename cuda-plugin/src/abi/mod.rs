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
//!
//! The CUDA graph hooks (`poolside_cuda_begin_allocate_to_pool`, `..._end_allocate_to_pool`,
//! `..._release_pool`) are C++ too (cpp/graph.cpp), since PyTorch passes them a `std::pair`
//! and a `std::function`; they call [`graph`] with C types and throw towards PyTorch.

pub mod exports;
pub mod global;
pub mod graph;
pub mod replay;
pub mod snapshot;
