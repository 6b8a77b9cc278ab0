//! Builds the C++ entry point (cpp/oom.cpp) into the library and links libstdc++.
//!
//! rustc exports only Rust symbols from a cdylib (through a version script), so the C++
//! `poolside_cuda_malloc` is pulled in and exported with linker arguments.
fn main() {
    println!("cargo:rerun-if-changed=cpp/oom.cpp");
    cc::Build::new()
        .cpp(true)
        .file("cpp/oom.cpp")
        .flag_if_supported("-std=c++17")
        .compile("poolside_cuda_oom");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--undefined=poolside_cuda_malloc");
    println!("cargo:rerun-if-changed=cpp/exports.map");
    let map = concat!(env!("CARGO_MANIFEST_DIR"), "/cpp/exports.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={map}");
}
