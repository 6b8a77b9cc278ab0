//! Transparent huge pages when libpoolside.so is the process's malloc (tests/c/thp.c under
//! LD_PRELOAD): `huge_pages: auto` waits until the pool holds 64 MiB and never advises
//! sparse spans, so the small programs a preload reaches stay in 4 KiB pages. A Rust
//! program's `#[global_allocator]` gets the advice at once (alloc-core/tests/huge_pages.rs).

use poolside::source::os::{thp_mode, ThpMode};
use poolside_tests::build::{c_source, compile, libpoolside_so};
use poolside_tests::preload::{run, with_preload};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn preload_defers_huge_pages_and_spares_sparse_spans() {
    // The engine's own reading of /sys (tested against the files in source/os.rs).
    let Some(mode) = thp_mode() else {
        println!("skipped: no THP mode in /sys (no /sys, or a kernel without THP)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("thp");
    compile(&[c_source("thp.c")], &exe, &[]);
    for setting in ["auto", "never", "always"] {
        let mut cmd = Command::new(&exe);
        cmd.env("POOLSIDE_CONF", format!("huge_pages:{setting}"));
        with_preload(&mut cmd, &libpoolside_so());
        let out = run(&mut cmd, DEADLINE);
        out.assert_success(&format!("thp.c under poolside, huge_pages:{setting}"));
        let seen = ["dense_small", "dense_grown", "sparse_small", "sparse_grown"].map(|k| {
            let key = format!("THPeligible_{k}=");
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .unwrap_or_else(|| panic!("{setting}: no {key} in {}", out.stdout))
                .to_string()
        });
        if seen[0] == "unknown" {
            println!("skipped: this kernel's smaps has no THPeligible field");
            return;
        }
        let want = match (setting, mode) {
            (_, ThpMode::Never) | ("never", _) => ["0", "0", "0", "0"],
            // The preload's auto in mode madvise: dense segments once the pool holds
            // 64 MiB (the first one included), sparse ones never.
            ("auto", ThpMode::Madvise) => ["0", "1", "0", "0"],
            _ => ["1", "1", "1", "1"],
        };
        println!("mode {mode:?}, huge_pages:{setting}: {seen:?}");
        assert_eq!(seen, want, "mode {mode:?}, huge_pages:{setting}");
    }
}
