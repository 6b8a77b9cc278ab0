//! Reading stats files: finding them, validating them, telling live from stale ones, and
//! taking consistent snapshots.

pub mod copy;
pub mod file_name;
pub mod liveness;
pub mod snapshot;
pub mod system;
pub mod verdict;

use file_name::FileName;
pub use snapshot::Snapshot;
use std::path::{Path, PathBuf};
use verdict::Verdict;

/// The stats directory: `stats_dir` from `POOLSIDE_CONF` if set, else /dev/shm.
pub fn default_dir() -> PathBuf {
    let mut cfg = poolside::config::HostConfig::DEFAULT;
    if let Some(conf) = std::env::var_os("POOLSIDE_CONF") {
        use std::os::unix::ffi::OsStrExt;
        // Only the directory matters here; warnings about other keys belong to the
        // program that is configured, not to the reader.
        let dirs: Vec<&[u8]> = poolside::config::entries(conf.as_bytes())
            .filter(|(k, _)| *k == b"stats_dir")
            .map(|(_, v)| v)
            .collect();
        let only_dirs = [b"stats_dir:", &dirs.join(&b",stats_dir:"[..])[..]].concat();
        if !dirs.is_empty() {
            cfg.apply(&only_dirs).emit(b"POOLSIDE_CONF");
        }
    }
    PathBuf::from(String::from_utf8_lossy(cfg.stats_dir()).into_owned())
}

/// What a scan of the stats directory found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Live processes, by PID.
    pub processes: Vec<Snapshot>,
    /// One line per file skipped or removed (removals summed up in one line beyond three).
    pub warnings: Vec<String>,
    /// Stale files removed (left by processes that exited), with why.
    pub removed_stale: Vec<String>,
}

/// Reads every stats file of the calling user in `dir`, removing stale ones.
pub fn scan(dir: &Path) -> std::io::Result<Scan> {
    let uid = system::my_uid();
    let mut out = Scan::default();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let Some(name) = entry.file_name().to_str().and_then(FileName::parse) else {
            continue;
        };
        if name.uid != uid {
            continue;
        }
        read_one(&entry.path(), name, uid, &mut out);
    }
    out.processes.sort_by_key(|s| s.pid);
    // Forked children that exec or _exit leave files behind by the dozen: one line for all.
    // Forked children that exec or _exit can leave files by the dozen: a few are listed,
    // more are summed up in one line.
    if out.removed_stale.len() <= 3 {
        out.warnings.append(&mut out.removed_stale);
    } else {
        out.warnings.push(format!(
            "removed {} stale stats files in {} (their processes have exited)",
            out.removed_stale.len(),
            dir.display()
        ));
    }
    Ok(out)
}

fn read_one(path: &Path, name: FileName, uid: u32, out: &mut Scan) {
    match verdict::examine(path, name, uid) {
        Verdict::Live(s) => out.processes.push(*s),
        Verdict::Creating => {}
        Verdict::Invalid(why) => out
            .warnings
            .push(format!("skipping {}: {why}", path.display())),
        Verdict::Stale(why) => match std::fs::remove_file(path) {
            Ok(()) => out.removed_stale.push(format!(
                "removed stale stats file {} ({why})",
                path.display()
            )),
            Err(e) => out.warnings.push(format!(
                "stale stats file {} ({why}) could not be removed: {e}",
                path.display()
            )),
        },
    }
}

/// Reads the statistics of one PID, with a message saying why when it has none.
pub fn read_pid(dir: &Path, pid: u32) -> Result<Snapshot, String> {
    let uid = system::my_uid();
    let path = dir.join(FileName::format(uid, pid));
    if !path.exists() && std::fs::symlink_metadata(&path).is_err() {
        return Err(if liveness::exists(pid) {
            format!(
                "process {pid} is not a poolside process (no {}; run it under `poolside run`, \
                 or check stats_dir and stats:false)",
                path.display()
            )
        } else {
            format!("no process {pid}")
        });
    }
    let mut scan = Scan::default();
    read_one(&path, FileName { uid, pid }, uid, &mut scan);
    match scan.processes.pop() {
        Some(s) => Ok(s),
        None => Err(scan
            .warnings
            .pop()
            .or_else(|| scan.removed_stale.pop())
            .unwrap_or_else(|| {
                format!("process {pid}: its stats file is being created; try again")
            })),
    }
}
