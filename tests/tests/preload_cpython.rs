//! CPython's own regression tests under LD_PRELOAD=libpoolside.so (the long test: run or
//! skip it by name, `--test preload_cpython`).
//!
//! The modules work memory and threads hard (dicts, lists, bytes, unicode, GC, weakrefs,
//! pickling, regular expressions, threads, subprocesses, mmap, os). The same set runs
//! first without the preload, and the preloaded run must pass exactly as that one does:
//! every test case that passes without poolside passes with it (compared case by case
//! through regrtest's JUnit report). A case failing without poolside is a property of the
//! machine (e.g. test_threading's test_import_from_another_thread fails wherever a .pth
//! file imports threading at startup); more than a handful means a broken setup.
//!
//! The Python used is `$POOLSIDE_TEST_PYTHON`, else the first of `python3`, `python3.11`
//! and `/usr/bin/python3` whose `test` package is installed (on Debian:
//! `apt-get install libpython3.11-testsuite`, for /usr/bin/python3.11).

use poolside_tests::build::libpoolside_so;
use poolside_tests::preload::{run, Outcome};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Modules run, in both passes. test_concurrent_futures and test_multiprocessing_fork are
/// left out: they are missing from some CPython builds (pyenv's among them) and alone take
/// longer than the rest of the set.
const MODULES: &[&str] = &[
    "test_threading",
    "test_gc",
    "test_dict",
    "test_list",
    "test_bytes",
    "test_json",
    "test_re",
    "test_subprocess",
    "test_mmap",
    "test_os",
    "test_set",
    "test_unicode",
    "test_pickle",
    "test_weakref",
    "test_collections",
    "test_itertools",
    "test_array",
    "test_deque",
    "test_struct",
    "test_memoryview",
    "test_tuple",
    "test_sort",
    "test_heapq",
];

const DEADLINE: Duration = Duration::from_secs(900);

/// The real interpreter (not a shim script) with a `test` package.
fn python() -> PathBuf {
    let candidates: Vec<String> = match std::env::var("POOLSIDE_TEST_PYTHON") {
        Ok(p) => vec![p],
        Err(_) => ["python3", "python3.11", "/usr/bin/python3"]
            .map(String::from)
            .to_vec(),
    };
    for c in &candidates {
        let probe = Command::new(c)
            .args([
                "-c",
                "import sys, test.libregrtest, test.support; print(sys.executable)",
            ])
            .output();
        if let Ok(out) = probe {
            if out.status.success() {
                return PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
            }
        }
    }
    panic!(
        "no Python with its test package among {candidates:?}: install \
         libpython3.11-testsuite, or set POOLSIDE_TEST_PYTHON"
    );
}

/// The outcome of one regrtest run: its output, and the ids of the cases that ran and
/// of those that failed or errored.
struct Report {
    outcome: Outcome,
    ran: Vec<String>,
    failed: Vec<String>,
}

/// Reads regrtest's JUnit XML: each `<testcase name="...">` with a `<failure` or `<error`
/// child failed. (A scan, not a parser: the file is regrtest's own, one element per case.)
fn read_junit(xml: &str) -> (Vec<String>, Vec<String>) {
    let (mut ran, mut failed) = (Vec::new(), Vec::new());
    for case in xml.split("<testcase ").skip(1) {
        let Some(start) = case.find("name=\"") else {
            continue;
        };
        let rest = &case[start + 6..];
        let name = rest[..rest.find('"').unwrap_or(0)].to_string();
        let body = case.split("</testcase>").next().unwrap_or("");
        if body.contains("<failure") || body.contains("<error") {
            failed.push(name.clone());
        }
        ran.push(name);
    }
    (ran, failed)
}

fn regrtest(py: &PathBuf, preload: bool) -> Report {
    let tmp = tempfile::tempdir().unwrap();
    let junit = tmp.path().join("junit.xml");
    let mut cmd = Command::new(py);
    // -j2: two worker processes (this is a 2-CPU budget); each module in a fresh process,
    // which under the preload means many process starts on poolside too.
    cmd.args(["-m", "test", "-j2", "--timeout", "600", "--junit-xml"])
        .arg(&junit)
        .args(MODULES)
        .current_dir(tmp.path())
        .env("TMPDIR", tmp.path())
        .env_remove("PYTHONPATH");
    if preload {
        cmd.env("LD_PRELOAD", libpoolside_so());
    }
    let outcome = run(&mut cmd, DEADLINE);
    let xml = std::fs::read_to_string(&junit).unwrap_or_else(|e| {
        panic!(
            "regrtest wrote no JUnit report ({e}):\n{}\n{}",
            outcome.stdout, outcome.stderr
        )
    });
    let (ran, failed) = read_junit(&xml);
    Report {
        outcome,
        ran,
        failed,
    }
}

#[test]
fn cpython_regression_tests() {
    let py = python();
    let plain = regrtest(&py, false);
    assert!(
        plain.ran.len() > 1000 && plain.failed.len() <= 5,
        "the CPython tests fail WITHOUT poolside on this machine ({} of {} cases); fix the \
         setup first:\n{}",
        plain.failed.len(),
        plain.ran.len(),
        plain.outcome.stdout
    );
    let pool = regrtest(&py, true);
    let new_failures: Vec<_> = pool
        .failed
        .iter()
        .filter(|c| !plain.failed.contains(c))
        .collect();
    assert!(
        new_failures.is_empty(),
        "CPython test cases that pass without poolside fail under it: {new_failures:?}\n{}",
        pool.outcome.stdout
    );
    // Nothing went missing (a crashed worker loses its module's cases).
    let missing: Vec<_> = plain.ran.iter().filter(|c| !pool.ran.contains(c)).collect();
    assert!(
        missing.is_empty(),
        "cases that ran without poolside did not run under it: {} (first: {:?})\n{}\n{}",
        missing.len(),
        missing.first(),
        pool.outcome.stdout,
        pool.outcome.stderr
    );
    // regrtest finished (printed its summary) rather than dying.
    let summary = "Total test files: run=";
    assert!(
        pool.outcome.stdout.contains(summary),
        "{}",
        pool.outcome.stdout
    );
    if plain.failed.is_empty() {
        pool.outcome
            .assert_success("CPython's tests under poolside");
    }
}
