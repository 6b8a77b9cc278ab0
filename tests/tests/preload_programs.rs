//! Real programs under LD_PRELOAD=libpoolside.so must behave exactly as without it: git,
//! sort, gcc and sqlite3 each run a workload twice, with and without the preload, and the
//! outputs must be identical. Proof that poolside served the run: `POOLSIDE_CONF` carries
//! a key no component knows, so each process's first malloc (which initialises poolside)
//! prints a warning naming it. Those warnings are the only difference allowed.
//!
//! Needs the Debian packages git, coreutils, gcc and sqlite3.

use poolside_tests::build::{c_source, libpoolside_so};
use poolside_tests::preload::{have_tool, run, Outcome};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(300);
/// The unknown configuration key whose warning marks a process poolside initialised in.
const MARKER: &str = "preload_test_marker";

/// Runs `build(dir)` in a fresh directory twice, plain and preloaded; returns both.
fn twice(build: impl Fn(&Path) -> Command) -> (Outcome, Outcome) {
    let plain_dir = tempfile::tempdir().unwrap();
    let pool_dir = tempfile::tempdir().unwrap();
    let plain = run(&mut build(plain_dir.path()), DEADLINE);
    let mut cmd = build(pool_dir.path());
    cmd.env("LD_PRELOAD", libpoolside_so())
        .env("POOLSIDE_CONF", format!("{MARKER}:1"));
    let pool = run(&mut cmd, DEADLINE);
    (plain, pool)
}

/// How many processes poolside initialised in (marker warnings), and what stderr holds
/// besides those warnings. Processes that share stderr write their warnings in pieces that
/// may interleave, so the pieces are removed one by one rather than as lines.
fn split_stderr(stderr: &str) -> (String, usize) {
    let served = stderr.matches(MARKER).count();
    let mut rest = stderr.to_string();
    for piece in [
        "poolside: warning: ",
        "POOLSIDE_CONF",
        "unknown key",
        MARKER,
        "' (ignored)\n",
        ": ",
        " '",
    ] {
        rest = rest.replace(piece, "");
    }
    (rest, served)
}

/// Both runs succeeded with the same stdout; the workloads are quiet, so stderr must be
/// empty but for poolside's marker warnings.
fn assert_same(what: &str, plain: &Outcome, pool: &Outcome) {
    plain.assert_success(&format!("{what} without the preload"));
    pool.assert_success(&format!("{what} under poolside"));
    let (pool_err, served) = split_stderr(&pool.stderr);
    assert!(
        served > 0,
        "{what}: poolside served no process:\n{}",
        pool.stderr
    );
    assert_eq!(plain.stdout, pool.stdout, "{what}: stdout differs");
    assert_eq!(plain.stderr, "", "{what}: the workload wrote to stderr");
    assert_eq!(
        pool_err, "",
        "{what}: stderr under poolside: {}",
        pool.stderr
    );
}

fn require(tool: &str) {
    assert!(
        have_tool(tool),
        "{tool} is not installed (see the test's header)"
    );
}

/// Pseudo-random text (fixed seed), for the inputs.
fn words(seed: u64, n: usize) -> String {
    let mut x = seed | 1;
    let mut s = String::new();
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 1 + (x % 40) as usize;
        for k in 0..len {
            s.push((b'a' + ((x >> (k % 50)) % 26) as u8) as char);
        }
        s.push(if i % 7 == 6 { '\n' } else { ' ' });
    }
    s
}

#[test]
fn git_init_add_commit_log() {
    require("git");
    let script = r#"
        set -e
        export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t \
               GIT_COMMITTER_EMAIL=t@example.com GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' \
               GIT_COMMITTER_DATE='2024-01-01T00:00:00Z' HOME="$PWD" GIT_CONFIG_NOSYSTEM=1
        git init -q -b main repo && cd repo
        for d in 1 2 3 4 5 6 7 8; do
          mkdir -p dir$d/sub
          for f in $(seq 1 40); do
            seq $((d * f)) $((d * f * 20)) > dir$d/sub/file$f.txt
          done
        done
        git add -A && git commit -q -m first
        sed -i 's/1/one/' dir*/sub/file1*.txt && git rm -q dir8/sub/file3.txt
        git add -A && git commit -q -m second
        git log --stat --format='%H %s'
        git gc -q && git fsck --strict && git count-objects -v | grep -v size
    "#;
    let (plain, pool) = twice(|dir| {
        let mut c = Command::new("bash");
        c.arg("-c").arg(script).current_dir(dir);
        c
    });
    assert_same("git", &plain, &pool);
    assert!(plain.stdout.contains(" second\n"));
}

#[test]
fn sort_a_large_file() {
    require("sort");
    let input_dir = tempfile::tempdir().unwrap();
    let input = input_dir.path().join("input.txt");
    std::fs::write(&input, words(42, 2_000_000)).unwrap(); // about 40 MB
    for args in [&["-S", "64M"][..], &["-u", "--parallel=2", "-k2"], &["-rn"]] {
        let (plain, pool) = twice(|_| {
            let mut c = Command::new("sort");
            c.args(args).arg(&input).env("LC_ALL", "C");
            c
        });
        assert_same(&format!("sort {args:?}"), &plain, &pool);
        assert!(plain.stdout.len() > 1_000_000);
    }
}

#[test]
fn gcc_compiles_a_c_file() {
    require("gcc");
    let src = c_source("stress.c");
    let (plain, pool) = twice(|dir| {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(
                "set -e; gcc -O2 -g -fdebug-prefix-map=\"$PWD\"=. -pthread -Wall -I\"$1\" -c \"$2\" \
                 -o out.o; \
                 gcc -O2 -S -pthread -I\"$1\" \"$2\" -o - | md5sum; md5sum out.o | cut -c1-32",
            )
            .arg("bash")
            .arg(src.parent().unwrap())
            .arg(&src)
            .current_dir(dir);
        c
    });
    assert_same("gcc", &plain, &pool);
}

#[test]
fn sqlite3_workload() {
    require("sqlite3");
    let sql = r#"
        CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, blob BLOB);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
          INSERT INTO t(k, v, blob) SELECT printf('key%06d', (i * 7919) % 200000), i % 1000,
                                           zeroblob(i % 300) FROM n;
        CREATE INDEX tk ON t(k);
        CREATE INDEX tv ON t(v, k);
        SELECT count(*), sum(v), sum(length(blob)) FROM t;
        SELECT v, count(*), min(k), max(k) FROM t GROUP BY v ORDER BY count(*) DESC, v LIMIT 5;
        UPDATE t SET k = k || '-x' WHERE v % 3 = 0;
        DELETE FROM t WHERE v % 5 = 1;
        SELECT count(*), count(DISTINCT k) FROM t;
        SELECT group_concat(k, ',') FROM (SELECT k FROM t ORDER BY k DESC LIMIT 20);
        VACUUM;
        PRAGMA integrity_check;
    "#;
    let (plain, pool) = twice(|dir| {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg("printf '%s' \"$1\" | sqlite3 db.sqlite")
            .arg("bash")
            .arg(sql)
            .current_dir(dir);
        c
    });
    assert_same("sqlite3", &plain, &pool);
    assert!(plain.stdout.contains("\nok\n"), "{}", plain.stdout);
}
