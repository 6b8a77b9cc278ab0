//! `rust_workload` (see benches/src/rust_workload.rs) with poolside as the global allocator.
#[global_allocator]
static GLOBAL: alloc_core::Poolside = alloc_core::Poolside;

fn main() {
    poolside_benches::rust_workload::run();
}
