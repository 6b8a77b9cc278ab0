//! `rust_workload` (see benches/src/rust_workload.rs) with poolside as the global allocator.
#[global_allocator]
static GLOBAL: poolside::Poolside = poolside::Poolside;

fn main() {
    poolside_benches::rust_workload::run();
}
