//! include/poolside_cuda.h must be what cbindgen makes from the crate now.
//! `POOLSIDE_BLESS=1 cargo test -p poolside-cuda --test header` rewrites it.

use std::path::Path;

#[test]
fn checked_in_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    let fresh = String::from_utf8(out).unwrap();
    for name in [
        "poolside_cuda_malloc_impl",
        "poolside_cuda_free",
        "poolside_cuda_init",
        "poolside_cuda_empty_cache",
        "poolside_cuda_set_memory_fraction",
        "poolside_cuda_base_alloc",
        "poolside_cuda_record_stream",
        "poolside_cuda_memory_stats",
        "poolside_cuda_reset_peak_stats",
        "void *poolside_cuda_malloc(size_t size, int device, void *stream);",
        "typedef struct DeviceSection {",
    ] {
        assert!(fresh.contains(name), "generated header lacks {name}");
    }
    let path = crate_dir.join("../include/poolside_cuda.h");
    if std::env::var_os("POOLSIDE_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/poolside_cuda.h is stale: run POOLSIDE_BLESS=1 cargo test -p poolside-cuda --test header"
    );
}
