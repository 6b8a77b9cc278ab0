//! Compiles the C++ operators new and delete (src/new_delete.cpp) into the library.
//!
//! The object is linked whole (`+whole-archive`): nothing in Rust refers to the operators,
//! and without it the linker would drop them from libpoolside.so. libstdc++ is linked
//! dynamically on purpose: the new_handler is per-process state of the program's own
//! libstdc++, and std::bad_alloc must be the program's type for its catch clauses to match.
fn main() {
    println!("cargo:rerun-if-changed=src/new_delete.cpp");
    cc::Build::new()
        .cpp(true)
        .file("src/new_delete.cpp")
        .flag("-std=c++17")
        .flag("-fsized-deallocation")
        .flag("-faligned-new")
        .cargo_metadata(false)
        .compile("poolside_cxx");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rustc-link-search=native={out}");
    println!("cargo:rustc-link-lib=static:+whole-archive=poolside_cxx");
    println!("cargo:rustc-link-lib=dylib=stdc++");
}
