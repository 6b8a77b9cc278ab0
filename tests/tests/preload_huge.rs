//! Huge and absurd requests through the C API (tests/c/huge.c): run under glibc and under
//! LD_PRELOAD=libpoolside.so, the program must pass its own checks with both, and poolside
//! must give the same answer as glibc to every call. glibc's answer is the kernel's under
//! the overcommit mode set now, so nothing here is written for one machine.

use poolside_tests::build::{c_source, compile, libpoolside_so};
use poolside_tests::preload::{run, with_preload};
use std::process::Command;
use std::time::Duration;

/// A deadlock guard, not a speed bound (the program's own calls are bound at 1 s each).
const DEADLINE: Duration = Duration::from_secs(120);

/// The "R <call> <size> <answer>" lines of a run.
fn answers(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.starts_with("R ")).collect()
}

#[test]
fn huge_requests_answer_as_glibc_does() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("huge");
    compile(&[c_source("huge.c")], &exe, &[]);

    let glibc = run(&mut Command::new(&exe), DEADLINE);
    glibc.assert_success("huge.c under glibc");
    let mut cmd = Command::new(&exe);
    with_preload(&mut cmd, &libpoolside_so());
    let ours = run(&mut cmd, DEADLINE);
    ours.assert_success("huge.c under poolside");
    assert!(ours.stdout.contains("huge: ok"), "{}", ours.stdout);

    let (want, got) = (answers(&glibc.stdout), answers(&ours.stdout));
    assert!(want.len() > 200, "too few answers: {}", glibc.stdout);
    let differ: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("glibc: {w}\npoolside: {g}"))
        .collect();
    assert!(
        differ.is_empty() && want.len() == got.len(),
        "poolside answers differently from glibc ({} vs {} lines):\n{}",
        want.len(),
        got.len(),
        differ.join("\n")
    );
    // What the kernel said, for the log.
    eprintln!("{}", glibc.stdout.lines().next().unwrap_or(""));
    eprintln!(
        "{}",
        ours.stdout
            .lines()
            .find(|l| l.starts_with("freed"))
            .unwrap_or("")
    );
}
