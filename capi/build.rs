//! Compiles the C++ operators new and delete (src/new_delete.cpp) into the library.
//!
//! The object is linked whole (`+whole-archive`): nothing in Rust refers to the operators,
//! and without it the linker would drop them from libpoolside.so. No C++ library is
//! linked: the failure paths find the program's own C++ runtime when they need it (see
//! new_delete.cpp), so a C program under the preload does not load libstdc++.
fn main() {
    println!("cargo:rerun-if-changed=src/new_delete.cpp");
    cc::Build::new()
        .cpp(true)
        .file("src/new_delete.cpp")
        .flag("-std=c++17")
        .flag("-fsized-deallocation")
        .flag("-faligned-new")
        .flag("-fno-rtti")
        .cpp_link_stdlib(None)
        .cargo_metadata(false)
        .compile("poolside_cxx");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rustc-link-search=native={out}");
    println!("cargo:rustc-link-lib=static:+whole-archive=poolside_cxx");
}
