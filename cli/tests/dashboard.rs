//! Every metric the Grafana dashboard (docs/grafana-dashboard.json) and the alerting rules
//! (docs/prometheus-alerts.yml) query exists in a real `poolside export` of a real process: Python with libpoolside.so preloaded (the
//! host pool) driving libpoolside_cuda.so on the simulated driver through ctypes (a device
//! pool with a memory fraction, allocations and a free), so that device-only and
//! conditional series (limit, ratios) are there too.
//!
//! Needs python3 and the two libraries built beside the `poolside` binary under test
//! (`cargo build --release -p poolside-capi -p poolside-cuda` for `--release`); without
//! them it prints why and checks only that the dashboard parses and names metrics.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn dashboard() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL string of the dashboard: panel targets' `expr` and the template
/// variables' queries.
fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => queries(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| queries(x, out)),
        _ => {}
    }
}

/// The `poolside_*` identifiers of a PromQL expression: metric names (label names such
/// as `pid` or `device` never start with the prefix).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while i < b.len() {
        if ident(b[i]) && (i == 0 || !ident(b[i - 1])) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("poolside_") {
                out.push(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The `expr:` lines of the Prometheus alerting rules (docs/prometheus-alerts.yml keeps
/// each expression on one line).
fn alert_queries() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/prometheus-alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let qs: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect();
    assert!(!qs.is_empty(), "no expr: lines in {}", path.display());
    qs
}

/// Every metric the dashboard and the alerting rules query.
fn dashboard_metrics() -> BTreeSet<String> {
    let mut qs = alert_queries();
    queries(&dashboard(), &mut qs);
    qs.iter().flat_map(|q| metric_names(q)).collect()
}

#[test]
fn the_dashboard_names_metrics() {
    let m = dashboard_metrics();
    for core in [
        "poolside_reserved_bytes",
        "poolside_live_bytes",
        "poolside_fragmentation_ratio",
        "poolside_ooms_total",
    ] {
        assert!(
            m.contains(core),
            "{core} not queried; the dashboard queries {m:?}"
        );
    }
    assert_eq!(
        metric_names("rate(poolside_hits_total{pid=~\"$pid\"}[5m]) / on(pid) poolside_x"),
        ["poolside_hits_total", "poolside_x"]
    );
}

/// Python under the preload with a device pool on the simulated driver; prints "ready"
/// once its pools hold what the dashboard shows, then waits for a line on stdin.
const CHILD: &str = r#"
import ctypes, os, sys
lib = ctypes.CDLL(os.environ["POOLSIDE_CUDA_LIB"])
lib.poolside_cuda_init.argtypes = [ctypes.c_int]
lib.poolside_cuda_set_memory_fraction.argtypes = [ctypes.c_double, ctypes.c_int]
lib.poolside_cuda_malloc.restype = ctypes.c_void_p
lib.poolside_cuda_malloc.argtypes = [ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
lib.poolside_cuda_free.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
lib.poolside_cuda_init(1)
lib.poolside_cuda_set_memory_fraction(0.5, 0)
ptrs = [lib.poolside_cuda_malloc(n << 20, 0, None) for n in (1, 1, 3, 40)]
assert all(ptrs), ptrs
lib.poolside_cuda_free(ptrs[0], 1 << 20, 0, None)
held = [bytearray(4096) for _ in range(1000)]
print("ready", flush=True)
sys.stdin.readline()
"#;

fn built_beside_poolside(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_BIN_EXE_poolside")).with_file_name(name);
    p.is_file().then_some(p)
}

fn scrape(dir: &Path) -> String {
    let (head, body) = Export::start(dir).scrape_once();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

#[test]
fn every_metric_the_dashboard_queries_is_in_a_real_export() {
    let (Some(host_lib), Some(cuda_lib)) = (
        built_beside_poolside("libpoolside.so"),
        built_beside_poolside("libpoolside_cuda.so"),
    ) else {
        eprintln!(
            "skipped: libpoolside.so and libpoolside_cuda.so are not built beside {} \
             (cargo build [--release] -p poolside-capi -p poolside-cuda)",
            env!("CARGO_BIN_EXE_poolside")
        );
        return;
    };
    if Command::new("python3").arg("-c").arg("").status().is_err() {
        eprintln!("skipped: no python3 to run the process the export reads");
        return;
    }
    let dir = temp_dir("dashboard");
    let mut child = Command::new("python3")
        .args(["-c", CHILD])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LD_PRELOAD", &host_lib)
        .env("POOLSIDE_CUDA_LIB", &cuda_lib)
        .env("POOLSIDE_CUDA_DRIVER", "sim")
        .env("POOLSIDE_CONF", format!("stats_dir:{}", dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let body = if line == "ready\n" {
        Some(scrape(&dir))
    } else {
        None
    };
    drop(child.stdin.take());
    let status = child.wait_with_output().unwrap();
    let body = body.unwrap_or_else(|| {
        panic!(
            "the child did not get ready: {line:?}\n{}",
            String::from_utf8_lossy(&status.stderr)
        )
    });
    assert!(status.status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);

    let exported: BTreeSet<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    assert!(
        body.contains("device=\"cuda:0\""),
        "the export has no device series:\n{body}"
    );
    let missing: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|m| !exported.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the export lacks: {missing:?}\nexported: {exported:?}"
    );
}
