//! poolside's engine.
//!
//! Layers, each using only the ones above it in this list:
//! - [`size_class`]: request size to block size;
//! - [`source`]: where memory comes from (the OS here; the CUDA driver in the plugin);
//! - [`sys`]: the few OS services the engine needs (raw stderr, clock, locks), none of which
//!   allocates;
//! - [`config`]: `POOLSIDE_CONF`, parsed without allocating;
//! - [`stats`]: the shared-memory statistics layout and its writer;
//! - [`host`]: the host pool: pagemap, segments and spans, thread heaps, large and huge
//!   blocks, and the [`Poolside`] global allocator built on them.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
extern crate std;

pub mod config;
pub mod detached;
pub mod host;
pub mod size_class;
pub mod source;
pub mod stats;
pub mod sys;

pub use host::global::Poolside;
pub use host::{
    alloc, alloc_zeroed, collect, flush_stats, free, owns, realloc, stats_snapshot, usable_size,
};
