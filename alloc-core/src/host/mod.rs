//! The host pool (being written).
pub mod global;
