//! Examining one stats file: opening and validating it, then the verdict (live with a
//! snapshot, invalid, stale, or being created).
//!
//! The file is opened with O_NOFOLLOW, must be a regular file owned by the reader, and must
//! carry the magic, version and sizes this reader knows before it is read. Sections are
//! copied with pread under their seqlock ([`super::copy`]), so a snapshot is consistent per
//! section while the writer runs, and a file truncated meanwhile gives a message.

use super::copy;
use super::file_name::FileName;
use super::liveness;
use super::snapshot::Snapshot;
use poolside::stats::layout::{StatsFile, STATS_MAGIC, STATS_VERSION};
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Bytes of a complete file.
pub const FILE_SIZE: usize = std::mem::size_of::<StatsFile>();
/// The header fields checked before the file is read whole: through `start_ticks`.
const PREFIX_BYTES: usize = std::mem::offset_of!(StatsFile, start_ticks) + 8;

/// What a stats file turned out to be.
#[derive(Debug)]
pub enum Verdict {
    /// A live process's statistics.
    Live(Box<Snapshot>),
    /// Not readable as statistics; the message says why.
    Invalid(String),
    /// Left by a process that is gone; the message says why.
    Stale(String),
    /// Being created right now (empty or no magic yet, writer alive, changed within
    /// [`CREATION_GRACE`]): skip quietly.
    Creating,
}

/// How long a creator may take to size a new file and write its magic (it needs
/// microseconds; the margin covers a writer descheduled on a loaded machine).
pub const CREATION_GRACE: Duration = Duration::from_secs(2);

/// `None` while the file may still be being created (modified within [`CREATION_GRACE`]
/// of now, either way, as clocks step); else whole seconds since its last change.
fn unchanged_for(meta: &Metadata) -> Option<u64> {
    let modified = meta.modified().ok()?;
    let age = match SystemTime::now().duration_since(modified) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    (age >= CREATION_GRACE).then_some(age.as_secs())
}

/// True when the first `len` bytes of the file (at most a stats file's size) are all zero.
fn all_zero(file: &File, len: u64) -> bool {
    let mut buf = vec![0u8; (len as usize).min(FILE_SIZE)];
    match file.read_exact_at(&mut buf, 0) {
        Ok(()) => buf.iter().all(|&b| b == 0),
        Err(_) => false,
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Examines the file at `path`, named `name`, as the user `my_uid`.
pub fn examine(path: &Path, name: FileName, my_uid: u32) -> Verdict {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Verdict::Invalid("is a symbolic link".into())
        }
        Err(e) => return Verdict::Invalid(format!("cannot open: {e}")),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Verdict::Invalid(format!("cannot stat: {e}")),
    };
    if !meta.is_file() {
        return Verdict::Invalid("not a regular file".into());
    }
    if meta.uid() != my_uid {
        return Verdict::Invalid(format!("owned by uid {}, not {my_uid}", meta.uid()));
    }
    // Problems with the content: stale if the writer is gone, else reported.
    let bad = |why: String| {
        if liveness::exists(name.pid) {
            Verdict::Invalid(why)
        } else {
            Verdict::Stale(format!("{why}; process has exited"))
        }
    };
    let mut prefix = [0u8; PREFIX_BYTES];
    let got = file.read_at(&mut prefix, 0).unwrap_or(0);
    if got < PREFIX_BYTES {
        if meta.len() == 0 && liveness::exists(name.pid) {
            return match unchanged_for(&meta) {
                None => Verdict::Creating,
                Some(age) => Verdict::Invalid(format!(
                    "empty file, unchanged for {age} s while process {} runs \
                     (a stats file is complete within milliseconds of its creation)",
                    name.pid
                )),
            };
        }
        return bad(format!("truncated ({} bytes)", meta.len()));
    }
    let magic = u64_at(&prefix, std::mem::offset_of!(StatsFile, magic));
    if magic == 0 && liveness::exists(name.pid) {
        match unchanged_for(&meta) {
            None => return Verdict::Creating,
            Some(age) if all_zero(&file, meta.len()) => {
                return Verdict::Invalid(format!(
                    "all {} bytes are zero, unchanged for {age} s while process {} runs \
                     (a stats file is complete within milliseconds of its creation)",
                    meta.len(),
                    name.pid
                ))
            }
            // Zero magic over other content: reported as a bad magic below.
            Some(_) => {}
        }
    }
    if magic != STATS_MAGIC {
        return bad("not a poolside stats file (bad magic)".into());
    }
    let version = u32_at(&prefix, std::mem::offset_of!(StatsFile, version));
    let header_size = u32_at(&prefix, std::mem::offset_of!(StatsFile, header_size));
    let total_size = u64_at(&prefix, std::mem::offset_of!(StatsFile, total_size));
    if version != STATS_VERSION {
        return bad(format!(
            "layout version {version}, this poolside reads version {STATS_VERSION}"
        ));
    }
    if header_size as usize != FILE_SIZE || total_size != FILE_SIZE as u64 {
        return bad(format!(
            "layout size {header_size}/{total_size}, expected {FILE_SIZE}"
        ));
    }
    if meta.len() < FILE_SIZE as u64 {
        return bad(format!("truncated ({} of {FILE_SIZE} bytes)", meta.len()));
    }
    let pid = u32_at(&prefix, std::mem::offset_of!(StatsFile, pid));
    let start_ticks = u64_at(&prefix, std::mem::offset_of!(StatsFile, start_ticks));
    if pid != name.pid {
        return bad(format!(
            "header names PID {pid}, file name PID {}",
            name.pid
        ));
    }
    // The reader never maps the file (copy.rs says why), so it does not count as a
    // process mapping it here.
    if let Some(why) = liveness::check(pid, start_ticks, meta.dev(), meta.ino()).stale_reason() {
        return Verdict::Stale(why.into());
    }
    match copy::snapshot(&file, path) {
        Ok(Some(s)) => Verdict::Live(Box::new(s)),
        Ok(None) => Verdict::Invalid("a writer stayed inside a section; try again".into()),
        Err(e) => Verdict::Invalid(format!("changed while being read: {e}")),
    }
}
