//! Finding libpoolside and compiling the C test programs against it.
//!
//! The library under test is `$POOLSIDE_LIB` when set (a path to libpoolside.so; the
//! static archive is looked for beside it), else the release build of poolside-capi in this
//! workspace's target directory, built here once per test process (a no-op when it is up
//! to date). Release, because the real programs run under the preload are slow in debug.
//! The fault-injection build goes to a target directory of its own, so that it never
//! replaces the normal library that other tests are running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies inside the workspace")
        .to_path_buf()
}

/// The target directory cargo uses for this workspace: `$CARGO_TARGET_DIR`, else the one
/// this test binary was built in (`<target>/<profile>/deps/<binary>`), else `target/`.
pub fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(d);
        return if d.is_absolute() {
            d
        } else {
            workspace_root().join(d)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .filter(|d| d.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo_build_capi(target: &Path, features: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--release", "--quiet", "-p", "poolside-capi"])
        .env("CARGO_TARGET_DIR", target);
    for f in features {
        cmd.args(["--features", f]);
    }
    let status = cmd.status().expect("run cargo");
    assert!(status.success(), "building poolside-capi failed: {status}");
}

/// The release libpoolside.so under test.
pub fn libpoolside_so() -> PathBuf {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        if let Some(p) = std::env::var_os("POOLSIDE_LIB") {
            let p = PathBuf::from(p);
            assert!(p.exists(), "POOLSIDE_LIB={} does not exist", p.display());
            return p;
        }
        let target = target_dir();
        cargo_build_capi(&target, &[]);
        target.join("release/libpoolside.so")
    })
    .clone()
}

/// The static libpoolside.a built alongside [`libpoolside_so`].
pub fn libpoolside_a() -> PathBuf {
    let a = libpoolside_so().with_file_name("libpoolside.a");
    assert!(a.exists(), "{} is missing", a.display());
    a
}

/// A libpoolside.so built with feature `fault-injection` (exports
/// `poolside_test_inject_map_failures`), in `<target>/capi-fault-injection`.
pub fn libpoolside_fault_so() -> PathBuf {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let target = target_dir().join("capi-fault-injection");
        cargo_build_capi(&target, &["fault-injection"]);
        target.join("release/libpoolside.so")
    })
    .clone()
}

/// The checked-in C headers.
pub fn include_dir() -> PathBuf {
    workspace_root().join("include")
}

/// A C or C++ test source under tests/c.
pub fn c_source(name: &str) -> PathBuf {
    workspace_root().join("tests/c").join(name)
}

/// Compiles `sources` into executable `out` with gcc (g++ for .cpp), warnings as errors,
/// the poolside headers on the include path, then `extra` (libraries, defines). Panics
/// with the compiler's output on failure.
pub fn compile(sources: &[PathBuf], out: &Path, extra: &[&str]) {
    let cpp = sources
        .iter()
        .any(|s| s.extension().is_some_and(|e| e == "cpp"));
    let mut cmd = Command::new(if cpp { "g++" } else { "gcc" });
    cmd.args(["-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg(if cpp { "-std=c++17" } else { "-std=gnu11" })
        .arg("-I")
        .arg(include_dir())
        .args(sources)
        .arg("-o")
        .arg(out)
        .args(extra);
    let output = cmd.output().expect("run the C compiler");
    assert!(
        output.status.success(),
        "compiling {:?} failed:\n{}",
        sources,
        String::from_utf8_lossy(&output.stderr)
    );
}
