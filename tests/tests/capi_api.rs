//! The built library itself: its ELF properties, its exports, and the `poolside_*` C API
//! used through include/poolside.h from programs linked with libpoolside.so, with
//! libpoolside.a, and loading it with dlopen.

use poolside_tests::build::{c_source, compile, libpoolside_a, libpoolside_so};
use poolside_tests::preload::run;
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

fn readelf(args: &[&str]) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(libpoolside_so())
        .output()
        .expect("run readelf (binutils)");
    assert!(out.status.success(), "readelf {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Initial-exec TLS only: the loader reserves the slot at startup (STATIC_TLS), and no
/// access goes through __tls_get_addr, which may call malloc.
#[test]
fn tls_is_initial_exec_only() {
    let dynamic = readelf(&["-d", "-W"]);
    assert!(
        dynamic
            .lines()
            .any(|l| l.contains("(FLAGS)") && l.contains("STATIC_TLS")),
        "libpoolside.so lacks FLAGS STATIC_TLS:\n{dynamic}"
    );
    let syms = readelf(&["--dyn-syms", "-W"]);
    assert!(
        !syms.contains("__tls_get_addr"),
        "libpoolside.so imports __tls_get_addr"
    );
}

/// The library needs libc alone: every program under the preload loads what it needs, so
/// a C++ runtime dependency would cost C programs its RSS (operator new finds the
/// program's own runtime when it must throw).
#[test]
fn depends_on_libc_alone() {
    let dynamic = readelf(&["-d", "-W"]);
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(
        needed.iter().all(|l| l.contains("[libc.so.6]")),
        "libpoolside.so needs more than libc: {needed:?}"
    );
}

fn defined_exports() -> Vec<String> {
    readelf(&["--dyn-syms", "-W"])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num: Value Size Type Bind Vis Ndx Name
            (f.len() >= 8 && f[3] == "FUNC" && f[4] == "GLOBAL" && f[6] != "UND")
                .then(|| f[7].split('@').next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn exports_the_whole_malloc_family_and_no_internals() {
    let exports = defined_exports();
    let want = [
        "malloc",
        "free",
        "calloc",
        "realloc",
        "reallocarray",
        "aligned_alloc",
        "posix_memalign",
        "memalign",
        "valloc",
        "pvalloc",
        "malloc_usable_size",
        "cfree",
        "__libc_malloc",
        "__libc_free",
        "__libc_cfree",
        "__libc_calloc",
        "__libc_realloc",
        "__libc_memalign",
        "__libc_valloc",
        "__libc_pvalloc",
        "__posix_memalign",
        // operator new: plain, array, nothrow, aligned, aligned nothrow
        "_Znwm",
        "_Znam",
        "_ZnwmRKSt9nothrow_t",
        "_ZnamRKSt9nothrow_t",
        "_ZnwmSt11align_val_t",
        "_ZnamSt11align_val_t",
        "_ZnwmSt11align_val_tRKSt9nothrow_t",
        "_ZnamSt11align_val_tRKSt9nothrow_t",
        // operator delete: plain, array, sized, nothrow, aligned, sized aligned, aligned nothrow
        "_ZdlPv",
        "_ZdaPv",
        "_ZdlPvm",
        "_ZdaPvm",
        "_ZdlPvRKSt9nothrow_t",
        "_ZdaPvRKSt9nothrow_t",
        "_ZdlPvSt11align_val_t",
        "_ZdaPvSt11align_val_t",
        "_ZdlPvmSt11align_val_t",
        "_ZdaPvmSt11align_val_t",
        "_ZdlPvSt11align_val_tRKSt9nothrow_t",
        "_ZdaPvSt11align_val_tRKSt9nothrow_t",
        "poolside_malloc",
        "poolside_calloc",
        "poolside_realloc",
        "poolside_aligned_alloc",
        "poolside_free",
        "poolside_usable_size",
        "poolside_owns",
        "poolside_collect",
        "poolside_purge",
        "poolside_version",
        "poolside_stats_snapshot",
    ];
    let missing: Vec<_> = want
        .iter()
        .filter(|w| !exports.iter().any(|e| e == *w))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
    // Everything else stays inside: internal helpers, the C++ bodies, test hooks.
    let extra: Vec<_> = exports
        .iter()
        .filter(|e| !want.contains(&e.as_str()))
        .collect();
    assert!(extra.is_empty(), "unexpected exports: {extra:?}");
}

fn run_api_program(name: &str, link: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join(name);
    let version = format!("-DEXPECTED_VERSION=\"{}\"", env!("CARGO_PKG_VERSION"));
    let mut args = vec![version.as_str()];
    args.extend_from_slice(link);
    compile(&[c_source("api.c")], &exe, &args);
    let out = run(&mut Command::new(&exe), DEADLINE);
    out.assert_success(name);
    assert!(out.stdout.contains("api: ok"), "{}", out.stdout);
}

#[test]
fn c_api_linked_with_the_shared_library() {
    let so = libpoolside_so();
    let dir = so.parent().unwrap().to_str().unwrap().to_string();
    run_api_program(
        "api_so",
        &[
            &format!("-L{dir}"),
            "-lpoolside",
            &format!("-Wl,-rpath,{dir}"),
        ],
    );
}

#[test]
fn c_api_linked_with_the_static_library() {
    let a = libpoolside_a();
    // The archive's C++ half needs libstdc++ (rustc lists it in native-static-libs).
    run_api_program("api_a", &[a.to_str().unwrap(), "-lstdc++", "-ldl"]);
}

#[test]
fn c_api_through_dlopen_without_the_preload() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("dlopen");
    compile(&[c_source("dlopen.c")], &exe, &["-ldl"]);
    let out = run(Command::new(&exe).arg(libpoolside_so()), DEADLINE);
    out.assert_success("dlopen");
    assert!(out.stdout.contains("dlopen: ok"));
}
