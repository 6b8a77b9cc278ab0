//! `POOLSIDE_CONF` warnings of real processes under `LD_PRELOAD=libpoolside.so`: the
//! multi-threaded, forking stress program prints one warning line per process, however many
//! bad entries the variable holds and however many threads and fork children allocate;
//! a 100 KB value is cut short with its length, 10,000 bad keys are named three and counted.

use poolside_tests::build::{c_source, compile, libpoolside_so};
use poolside_tests::preload::{run, with_preload, Outcome};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(300);

fn stress_under(exe: &Path, conf: &str) -> (Vec<String>, Outcome) {
    let mut cmd = Command::new(exe);
    cmd.arg("4").env("POOLSIDE_CONF", conf);
    with_preload(&mut cmd, &libpoolside_so());
    let out = run(&mut cmd, DEADLINE);
    out.assert_success("stress");
    assert!(out.stdout.contains("stress: ok"), "{}", out.stdout);
    let lines = out
        .stderr
        .lines()
        .filter(|l| l.contains("poolside"))
        .map(String::from)
        .collect();
    (lines, out)
}

#[test]
fn one_line_per_process_whatever_the_bad_entries_threads_and_forks() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("stress");
    compile(&[c_source("stress.c")], &exe, &[]);

    // 10,000 unknown keys (about 70 KB: one environment string may hold 128 KB).
    let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}:1")).collect();
    let (lines, out) = stress_under(&exe, &format!("stats:off,{}", keys.join(",")));
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert_eq!(
        lines[0],
        "poolside: warning: POOLSIDE_CONF: unknown key 'k0'; unknown key 'k1'; \
         unknown key 'k2'; and 9997 more (ignored)"
    );

    // A 100 KB value, and bad values next to good ones (which still apply).
    let long = format!("/{}", "d".repeat(99_999));
    let conf = format!("stats:off,purge_delay_ms:soon,stats_dir:{long},verbose:maybe\nnot");
    let (lines, out) = stress_under(&exe, &conf);
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert_eq!(
        lines[0],
        format!(
            "poolside: warning: POOLSIDE_CONF: bad value for 'purge_delay_ms': 'soon'; \
             stats_dir must be an absolute path under 256 bytes, not '{}...' (100000 bytes); \
             bad value for 'verbose': 'maybe?not' (ignored)",
            &long[..64]
        )
    );
}
