//! Configuration warnings of a real process that loads libpoolside_cuda.so with dlopen
//! (as PyTorch does) and allocates from four threads on both simulated devices: one line
//! per variable, whatever the number of bad entries, threads or devices, with a 100 KB
//! value cut short. With libpoolside.so preloaded as well, a problem in `POOLSIDE_CONF` is
//! still reported once. Skips (saying why) without a C compiler or libpoolside.so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A build output beside this test: `target/<profile>/deps/NAME` (`cargo test` leaves
/// cdylibs there), else `target/<profile>/NAME`.
fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let fresh = deps.join(name);
    if fresh.exists() {
        return fresh;
    }
    deps.parent().unwrap().join(name)
}

/// Compiles the program for one test (each its own copy: tests run in parallel).
fn compile(tag: &str) -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!(
        "poolside-{}-conf_warnings-{tag}",
        std::process::id()
    ));
    let st = Command::new("cc")
        .arg(here.join("tests/c/conf_warnings.c"))
        .args(["-std=c11", "-pthread", "-o"])
        .arg(&out)
        .arg("-ldl")
        .status();
    match st {
        Ok(s) if s.success() => Some(out),
        Ok(s) => panic!("cc failed on conf_warnings.c: {s}"),
        Err(e) => {
            println!("skipped: cc not available ({e})");
            None
        }
    }
}

/// Runs the program; returns its stderr's warning lines and the whole stderr.
fn run(
    prog: &Path,
    pytorch_conf: &str,
    poolside_conf: &str,
    preload: Option<&Path>,
) -> (Vec<String>, String) {
    let lib = built("libpoolside_cuda.so");
    assert!(lib.exists(), "{} not built", lib.display());
    let mut cmd = Command::new(prog);
    cmd.arg(&lib)
        .env("POOLSIDE_CUDA_DRIVER", "sim")
        .env("PYTORCH_CUDA_ALLOC_CONF", pytorch_conf)
        .env("POOLSIDE_CONF", poolside_conf)
        .env_remove("LD_PRELOAD");
    if let Some(p) = preload {
        cmd.env("LD_PRELOAD", p);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{}: {stderr}", prog.display());
    assert!(String::from_utf8_lossy(&out.stdout).contains("conf_warnings: ok"));
    let lines = stderr
        .lines()
        .filter(|l| l.contains("poolside: warning"))
        .map(String::from)
        .collect();
    (lines, stderr)
}

#[test]
fn one_line_per_variable_whatever_the_bad_entries_threads_and_devices() {
    let Some(prog) = compile("alone") else { return };
    // 10,000 unknown keys (about 70 KB: one environment string may hold 128 KB) after a
    // bad value; a 100 KB value in the other variable, next to an unknown key.
    let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}:1")).collect();
    let pytorch = format!("max_split_size_mb:x,{}", keys.join(","));
    let long = "9".repeat(100_000);
    let poolside =
        format!("device_capacity_mb:64,stats:off,bogus_key:1,garbage_collection_threshold:{long}");
    let (lines, stderr) = run(&prog, &pytorch, &poolside, None);
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(stderr.len() < 1500, "{} bytes of stderr", stderr.len());
    let torch = lines
        .iter()
        .find(|l| l.contains("PYTORCH_CUDA_ALLOC_CONF"))
        .expect("{stderr}");
    assert!(torch.contains("'max_split_size_mb': 'x'"), "{torch}");
    assert!(
        torch.contains("unknown key 'k0'; unknown key 'k1'; and 9998 more (ignored)"),
        "{torch}"
    );
    let ours = lines
        .iter()
        .find(|l| l.contains("POOLSIDE_CONF"))
        .expect("{stderr}");
    // Without libpoolside.so, the plugin's line names the unknown key too.
    assert!(ours.contains("unknown key 'bogus_key'"), "{ours}");
    assert!(
        ours.contains(&format!("'{}...' (100000 bytes)", &long[..64])),
        "{ours}"
    );
    std::fs::remove_file(prog).ok();
}

#[test]
fn with_libpoolside_preloaded_a_problem_is_reported_once() {
    // This profile's build, else the release one (the preload tests build it).
    let mut host = built("libpoolside.so");
    if !host.exists() {
        let target = host.parent().unwrap().parent().unwrap();
        host = target.join("release/libpoolside.so");
    }
    if !host.exists() {
        println!(
            "skipped: {} not built (cargo build -p poolside-capi, or test the workspace)",
            host.display()
        );
        return;
    }
    let Some(prog) = compile("preloaded") else {
        return;
    };
    let (lines, stderr) = run(
        &prog,
        "",
        "device_capacity_mb:64,stats:off,bogus_key:1",
        Some(&host),
    );
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(
        lines[0],
        "poolside: warning: POOLSIDE_CONF: unknown key 'bogus_key' (ignored)"
    );
    std::fs::remove_file(prog).ok();
}
