//! The Rust global allocator (being written).
pub struct Poolside;
