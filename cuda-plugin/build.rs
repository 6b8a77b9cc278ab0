//! Builds the C++ entry points (cpp/oom.cpp, cpp/graph.cpp) into the library and links
//! libstdc++.
//!
//! rustc exports only Rust symbols from a cdylib (through a version script), so the C++
//! entries are pulled in and exported with linker arguments.

/// The C++ functions the library exports (also listed in cpp/exports.map).
const CPP_EXPORTS: &[&str] = &[
    "poolside_cuda_malloc",
    "poolside_cuda_begin_allocate_to_pool",
    "poolside_cuda_end_allocate_to_pool",
    "poolside_cuda_release_pool",
    "poolside_cuda_graph_hook_abi_ok",
];

fn main() {
    println!("cargo:rerun-if-changed=cpp/oom.cpp");
    println!("cargo:rerun-if-changed=cpp/graph.cpp");
    cc::Build::new()
        .cpp(true)
        .file("cpp/oom.cpp")
        .file("cpp/graph.cpp")
        .flag_if_supported("-std=c++17")
        .compile("poolside_cuda_cpp");
    for sym in CPP_EXPORTS {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--undefined={sym}");
    }
    println!("cargo:rerun-if-changed=cpp/exports.map");
    let map = concat!(env!("CARGO_MANIFEST_DIR"), "/cpp/exports.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={map}");
}
