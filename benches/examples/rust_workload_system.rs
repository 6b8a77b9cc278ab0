//! `rust_workload` (see benches/src/rust_workload.rs) with std's System (glibc malloc) as
//! the global allocator.
#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    poolside_benches::rust_workload::run();
}
