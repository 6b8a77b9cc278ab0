//! libpoolside_cuda: the device pool behind PyTorch's `CUDAPluggableAllocator`.
//!
//! Layers, each using only those listed before it:
//! - [`driver`]: the CUDA driver calls behind a trait, real (cudarc) or simulated;
//! - [`config`]: settings from `POOLSIDE_CONF` and `PYTORCH_CUDA_ALLOC_CONF`;
//! - [`pool`]: one pool per device: small blocks from `poolside::detached`, large blocks
//!   best fit from expandable segments (or cuMemAlloc segments), stream-ordered reuse,
//!   the out-of-memory path, and the statistics;
//! - [`abi`]: the C functions PyTorch calls (plus `cpp/oom.cpp`, which throws);
//! - [`replay`]: replaying a PyTorch memory snapshot through the pool.

pub mod abi;
pub mod config;
pub mod driver;
pub mod pool;
pub mod replay;
