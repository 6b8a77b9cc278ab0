//! include/poolside_stats.h is what cbindgen makes of the layout today, and a C compiler
//! agrees with Rust on its size and offsets.
//!
//! `POOLSIDE_BLESS=1 cargo test -p poolside-cli --test c_header` rewrites the header.

use poolside::stats::layout::{StatsFile, HUGE_SLOT, LARGE_SLOT, STATS_MAGIC};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn generate() -> String {
    let root = root();
    let mut config =
        cbindgen::Config::from_file(root.join("alloc-core/cbindgen-stats.toml")).unwrap();
    config.trailer = Some(format!(
        "/* \"POOLSIDE\" as a little-endian 64-bit integer, the first field of the file. */\n\
         #define POOLSIDE_STATS_MAGIC {STATS_MAGIC:#x}ULL\n\
         /* Slots of poolside_HostSection.classes for requests above the size classes. */\n\
         #define POOLSIDE_LARGE_SLOT {LARGE_SLOT}\n\
         #define POOLSIDE_HUGE_SLOT {HUGE_SLOT}\n\
         /* sizeof(poolside_StatsFile), which header_size and total_size must equal. */\n\
         #define POOLSIDE_STATS_FILE_SIZE {}",
        std::mem::size_of::<StatsFile>()
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("alloc-core/src/stats/layout.rs"))
        .generate()
        .unwrap()
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_is_fresh() {
    let path = root().join("include/poolside_stats.h");
    let want = generate();
    if std::env::var_os("POOLSIDE_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "include/poolside_stats.h is stale; regenerate it with \
         POOLSIDE_BLESS=1 cargo test -p poolside-cli --test c_header"
    );
}

#[test]
fn c_compiler_agrees_on_layout() {
    let Ok(cc) = which_cc() else {
        eprintln!("no C compiler (cc) found; layout not checked against C");
        return;
    };
    let dir = std::env::temp_dir().join(format!("poolside-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("check.c");
    let host = std::mem::offset_of!(StatsFile, host);
    let devices = std::mem::offset_of!(StatsFile, devices);
    let cmdline = std::mem::offset_of!(StatsFile, cmdline);
    std::fs::write(
        &src,
        format!(
            "#include <stddef.h>\n#include \"poolside_stats.h\"\n\
             _Static_assert(sizeof(poolside_StatsFile) == POOLSIDE_STATS_FILE_SIZE, \"size\");\n\
             _Static_assert(POOLSIDE_STATS_MAGIC == {STATS_MAGIC}ULL, \"magic\");\n\
             _Static_assert(offsetof(poolside_StatsFile, host) == {host}, \"host\");\n\
             _Static_assert(offsetof(poolside_StatsFile, devices) == {devices}, \"devices\");\n\
             _Static_assert(offsetof(poolside_StatsFile, cmdline) == {cmdline}, \"cmdline\");\n\
             int main(void) {{ return 0; }}\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(cc)
        .arg("-std=c11")
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(root().join("include"))
        .arg(&src)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which_cc() -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("cc"))
        .find(|p| p.is_file())
        .ok_or(())
}
