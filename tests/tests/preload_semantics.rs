//! The C test programs of tests/c run under LD_PRELOAD=libpoolside.so: glibc/POSIX
//! behaviour, C++ new/delete, early and re-entrant calls, threads and fork, and running out
//! of memory.

use poolside_tests::build::{c_source, compile, libpoolside_fault_so, libpoolside_so};
use poolside_tests::preload::{run, with_preload, Outcome};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(300);

fn build(dir: &Path, source: &str, extra: &[&str]) -> PathBuf {
    let exe = dir.join(source.split('.').next().unwrap());
    compile(&[c_source(source)], &exe, extra);
    exe
}

fn preloaded(exe: &Path, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    with_preload(&mut cmd, &libpoolside_so());
    run(&mut cmd, DEADLINE)
}

#[test]
fn glibc_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "semantics.c", &["-ldl"]);
    // The same checks hold for glibc itself (minus poolside-only ones): they test the
    // contract, not this implementation.
    let glibc = run(Command::new(&exe).arg("glibc"), DEADLINE);
    glibc.assert_success("semantics under glibc");
    let ours = preloaded(&exe, &[]);
    ours.assert_success("semantics under poolside");
    assert!(ours.stdout.contains("semantics: ok"));
}

#[test]
fn cxx_new_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "cxx_new.cpp", &["-ldl"]);
    let out = preloaded(&exe, &[]);
    out.assert_success("cxx_new");
    assert!(out.stdout.contains("cxx_new: ok"));
}

/// malloc before constructors, and no recursion through __tls_get_addr when dlopen'ed
/// libraries' TLS (allocated with malloc) is first touched by many threads.
#[test]
fn early_calls_and_dynamic_tls() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "early.c", &["-ldl"]);
    const LIBS: usize = 40; // beyond the DTV's initial room, so it is reallocated too
    let lib0 = dir.path().join("libtls0.so");
    let status = Command::new("gcc")
        .args(["-O1", "-shared", "-fPIC", "-o"])
        .arg(&lib0)
        .arg(c_source("tls_lib.c"))
        .status()
        .unwrap();
    assert!(status.success());
    for i in 1..LIBS {
        // Distinct files: the loader would share one inode between the names.
        std::fs::copy(&lib0, dir.path().join(format!("libtls{i}.so"))).unwrap();
    }
    let out = preloaded(&exe, &[dir.path().to_str().unwrap(), &LIBS.to_string()]);
    out.assert_success("early");
    assert!(out.stdout.contains("early: ok"));
    // The simplest program: every allocation it makes is ld.so's and libc's own.
    preloaded(Path::new("/bin/true"), &[]).assert_success("/bin/true");
}

#[test]
fn threads_fork_and_churn() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "stress.c", &[]);
    let out = preloaded(&exe, &["100"]);
    out.assert_success("stress");
    assert!(out.stdout.contains("stress: ok"), "{}", out.stdout);
}

/// mmap fails from a chosen moment (fault-injection build of the library).
#[test]
fn out_of_memory_by_injected_map_failures() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "oom.cpp", &["-ldl"]);
    let mut cmd = Command::new(&exe);
    cmd.arg("inject");
    with_preload(&mut cmd, &libpoolside_fault_so());
    let out = run(&mut cmd, DEADLINE);
    out.assert_success("oom inject");
    assert!(out.stdout.contains("oom inject: ok"));
}

/// The kernel refuses: address space limited with `ulimit -v`.
#[test]
fn out_of_memory_under_ulimit_v() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "oom.cpp", &["-ldl"]);
    // 600 MiB: room for the program and libstdc++, and far less than the test takes.
    let script = format!(
        "ulimit -v 614400 && LD_PRELOAD='{}' exec '{}' limit",
        libpoolside_so().display(),
        exe.display()
    );
    let out = run(Command::new("bash").arg("-c").arg(script), DEADLINE);
    out.assert_success("oom under ulimit -v");
    assert!(out.stdout.contains("oom limit: ok"));
}
