//! Helpers shared by the cross-crate tests.
pub mod build;
pub mod preload;
