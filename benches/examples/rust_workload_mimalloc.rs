//! `rust_workload` (see benches/src/rust_workload.rs) with the mimalloc crate as the global
//! allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    poolside_benches::rust_workload::run();
}
