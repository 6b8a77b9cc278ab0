//! Host segments and transparent huge pages, as the running kernel sees them: the VMA
//! holding a block is eligible for huge pages (`THPeligible` in /proc/self/smaps) exactly
//! when the `huge_pages` setting and the kernel's mode make it so. This binary is a Rust
//! program with the pool as its allocator, not the process's malloc: `auto` advises every
//! segment from the start here (under LD_PRELOAD it waits for 64 MiB and spares sparse
//! spans: tests/tests/preload_thp.rs). Each setting runs in a child process (this test
//! binary again), since the engine reads its configuration once.

use poolside::source::os::{thp_mode, ThpMode};
use std::process::Command;

const CHILD_ENV: &str = "POOLSIDE_TEST_THP_CHILD";

/// `THPeligible` of the mapping that holds `addr`, from /proc/self/smaps.
fn thp_eligible(addr: usize) -> Option<u32> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
                continue;
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("THPeligible:") {
                return v.trim().parse().ok();
            }
        }
    }
    None
}

#[test]
fn child_reports_thp_eligibility() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return; // run by segments_follow_the_kernel_mode_and_the_setting
    }
    // A dense span (4 KiB blocks) and a sparse one (256 KiB blocks: `SPARSE_UNITS`).
    let blocks = [("dense", 4 << 10), ("sparse", 256 << 10)].map(|(name, size)| {
        let p = poolside::alloc(size, 8);
        assert!(!p.is_null());
        // SAFETY: p holds `size` bytes.
        unsafe { p.write_bytes(1, size) };
        (name, p)
    });
    let report = |when: &str| {
        for (name, p) in blocks {
            match thp_eligible(p as usize) {
                Some(e) => println!("THPeligible_{name}_{when}={e}"),
                None => println!("THPeligible_{name}_{when}=unknown"),
            }
        }
    };
    report("small");
    // The pool grows past 64 MiB (large blocks from the segments, not huge mappings).
    let grown: Vec<*mut u8> = (0..72).map(|_| poolside::alloc(1 << 20, 8)).collect();
    assert!(grown.iter().all(|b| !b.is_null()));
    report("grown");
}

#[test]
fn segments_follow_the_kernel_mode_and_the_setting() {
    // The engine's own reading of /sys (tested against the files in source/os.rs).
    let Some(mode) = thp_mode() else {
        println!("skipped: no THP mode in /sys (no /sys, or a kernel without THP)");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    for setting in ["auto", "never", "always"] {
        let out = Command::new(&exe)
            .args(["--exact", "child_reports_thp_eligibility", "--nocapture"])
            .env(CHILD_ENV, "1")
            .env("POOLSIDE_CONF", format!("huge_pages:{setting}"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{setting}: {stdout}");
        let seen = |key: &str| {
            let key = format!("THPeligible_{key}=");
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .unwrap_or_else(|| panic!("{setting}: no {key} report in {stdout}"))
                .to_string()
        };
        let seen = ["dense_small", "dense_grown", "sparse_small", "sparse_grown"].map(seen);
        if seen[0] == "unknown" {
            println!("skipped: this kernel's smaps has no THPeligible field");
            return;
        }
        let want = match (setting, mode) {
            (_, ThpMode::Never) | ("never", _) => ["0", "0", "0", "0"],
            // auto (for a Rust program) and always in mode madvise: advised from the
            // first segment on, sparse ones too. In mode always, the kernel's own choice.
            _ => ["1", "1", "1", "1"],
        };
        println!("mode {mode:?}, huge_pages:{setting}: THPeligible dense small, grown, sparse small, grown: {seen:?}");
        assert_eq!(seen, want, "mode {mode:?}, huge_pages:{setting}");
    }
}
