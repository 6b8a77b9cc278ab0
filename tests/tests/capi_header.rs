//! include/poolside.h must be what cbindgen makes of capi/src today.
//!
//! Regenerates the header into a temporary directory and compares. To refresh the
//! checked-in copy after changing the API:
//!   POOLSIDE_UPDATE_HEADER=1 cargo test -p poolside-tests --test capi_header

use poolside_tests::build::{include_dir, workspace_root};

#[test]
fn checked_in_header_is_current() {
    let crate_dir = workspace_root().join("capi");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("read capi/cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses capi/src");
    let dir = tempfile::tempdir().unwrap();
    let fresh_path = dir.path().join("poolside.h");
    bindings.write_to_file(&fresh_path);
    let fresh = std::fs::read_to_string(&fresh_path).unwrap();

    let checked_in_path = include_dir().join("poolside.h");
    // POOLSIDE_BLESS is the name the other header checks of the workspace use.
    if std::env::var_os("POOLSIDE_UPDATE_HEADER").is_some()
        || std::env::var_os("POOLSIDE_BLESS").is_some()
    {
        std::fs::write(&checked_in_path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    if checked_in != fresh {
        let first = checked_in
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(checked_in.lines().count().min(fresh.lines().count()));
        panic!(
            "include/poolside.h is stale (first difference at line {}); regenerate with \
             POOLSIDE_UPDATE_HEADER=1 cargo test -p poolside-tests --test capi_header",
            first + 1
        );
    }
    // The header declares the API and nothing that clashes with the system headers.
    for name in [
        "poolside_malloc",
        "poolside_stats_snapshot",
        "poolside_version",
    ] {
        assert!(fresh.contains(name), "{name} missing from the header");
    }
    for name in [
        "*malloc(size_t",
        "_Znwm",
        "__libc_malloc",
        "inject_map_failures",
    ] {
        assert!(!fresh.contains(name), "{name} must not be in poolside.h");
    }
}
