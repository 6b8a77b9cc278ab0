//! The command line: `poolside run` passes exit statuses through and sets the environment;
//! `stat` prints tables, JSON and alerts; bad flags and PIDs get clear errors.

mod common;

use common::*;

/// A library that is harmless to preload: the libc this test already runs on.
fn harmless_lib() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so"))
        .expect("libc mapped")
        .to_string()
}

fn run_sh(script: &str, extra: &[&str]) -> std::process::Output {
    poolside()
        .env("POOLSIDE_LIB", harmless_lib())
        .env_remove("LD_PRELOAD")
        .arg("run")
        .args(extra)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

#[test]
fn run_passes_exit_status_and_signals_through() {
    assert_eq!(run_sh("exit 0", &[]).status.code(), Some(0));
    assert_eq!(run_sh("exit 7", &[]).status.code(), Some(7));
    assert_eq!(run_sh("kill -TERM $$", &[]).status.code(), Some(128 + 15));
}

#[test]
fn run_sets_preload_and_conf() {
    let lib = harmless_lib();
    let out = run_sh(
        "printf '%s|%s' \"$LD_PRELOAD\" \"$POOLSIDE_CONF\"",
        &["--conf", "stats:false"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{lib}|stats:false")
    );
    // An existing LD_PRELOAD is kept, ours goes after it.
    let out = poolside()
        .env("POOLSIDE_LIB", &lib)
        .env("LD_PRELOAD", &lib)
        .args(["run", "--", "sh", "-c", "printf %s \"$LD_PRELOAD\""])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{lib}:{lib}"));
    // The Python hook goes first on PYTHONPATH when its directory exists.
    let hook = temp_dir("hook");
    let out = poolside()
        .env("POOLSIDE_LIB", &lib)
        .env("POOLSIDE_PYTHON_HOOK", &hook)
        .env("PYTHONPATH", "/elsewhere")
        .args(["run", "--", "sh", "-c", "printf %s \"$PYTHONPATH\""])
        .output()
        .unwrap();
    let hook_abs = std::fs::canonicalize(&hook).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}:/elsewhere", hook_abs.display())
    );
    std::fs::remove_dir_all(hook).unwrap();
}

#[test]
fn run_reports_missing_library_and_command() {
    let out = poolside()
        .env("POOLSIDE_LIB", "/nonexistent/libpoolside.so")
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("POOLSIDE_LIB=/nonexistent"));
    let out = poolside()
        .env("POOLSIDE_LIB", harmless_lib())
        .args(["run", "--", "/nonexistent/program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run /nonexistent/program"));
}

#[test]
fn bad_flags_get_usage_errors() {
    for args in [
        vec!["stat", "--bogus"],
        vec!["stat", "notapid"],
        vec!["stat", "--alert-above", "150"],
        vec!["run"],
        vec!["export", "--listen", "nowhere"],
        vec!["frobnicate"],
    ] {
        let out = poolside().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error:"), "{args:?}: {err}");
        assert!(
            err.contains("Usage:") || err.contains("--help"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn stat_prints_table_json_classes_and_alerts() {
    let dir = temp_dir("stat");
    let me = std::process::id();
    let mut f = stats_file(me);
    f.host.reserved_bytes = 1 << 40; // far above any machine's MemTotal share of 1%
    f.host.classes[1].block_size = 16;
    f.host.classes[1].allocs = 4;
    f.host.classes[1].hits = 3;
    f.host.classes[1].misses = 1;
    f.host.classes[1].live_bytes = 64;
    let p = write(&dir, me, bytes(&f));
    let _keep = Mapped::new(&p);
    let stat = |extra: &[&str]| stat_in(&dir, extra);

    let out = stat(&[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_start().starts_with("PID"), "{text}");
    assert!(
        text.contains(&me.to_string()) && text.contains("75.0%"),
        "{text}"
    );

    let out = stat(&["--json", "--size-classes"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["pid"], me);
    assert_eq!(v[0]["host"]["live_bytes"], 64);
    assert_eq!(v[0]["host"]["hit_rate"], 0.75);
    assert_eq!(v[0]["classes"][0]["block_size"], 16);
    assert_eq!(v[0]["command"], "synthetic --flag");

    let out = stat(&["--alert-above", "1"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("alert: pid {me} (synthetic)")),
        "{err}"
    );

    let dead = dead_pid();
    let out = stat(&[&dead.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("no process {dead}")));
    std::fs::remove_dir_all(dir).unwrap();
}
