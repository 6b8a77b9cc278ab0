//! Records the cargo profile directory this build writes into (`<target>/<profile>`, three
//! levels above OUT_DIR, which is `<target>/<profile>/build/poolside-cli-<hash>/out`), so
//! that a binary copied out of it (`cargo install --path cli`) still finds the libraries
//! built beside it (see src/run/locate.rs).

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let profile_dir = out.ancestors().nth(3).unwrap_or(&out);
    println!(
        "cargo:rustc-env=POOLSIDE_BUILT_PROFILE_DIR={}",
        profile_dir.display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
