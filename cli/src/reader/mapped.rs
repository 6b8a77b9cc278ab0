//! Opening, validating and snapshotting one stats file.
//!
//! The file is opened with O_NOFOLLOW, must be a regular file owned by the reader, and must
//! carry the magic, version and sizes this reader knows before it is mapped. Sections are
//! copied with the seqlock, so a snapshot is consistent per section while the writer runs.

use super::file_name::FileName;
use super::liveness;
use super::snapshot::Snapshot;
use alloc_core::stats::layout::{StatsFile, STATS_MAGIC, STATS_VERSION};
use alloc_core::stats::seqlock;
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::ptr::addr_of;
use std::time::{Duration, SystemTime};

/// Bytes of a complete file.
pub const FILE_SIZE: usize = std::mem::size_of::<StatsFile>();
/// The header fields checked before mapping: through `start_ticks`.
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

/// A read-only shared mapping of a stats file.
struct Mapping(*const StatsFile);

impl Mapping {
    fn new(file: &File) -> std::io::Result<Mapping> {
        // SAFETY: a fresh read-only mapping of FILE_SIZE bytes of a file at least that long.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                FILE_SIZE,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping(p as *const StatsFile))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping came from mmap with FILE_SIZE bytes and is no longer used.
        unsafe { libc::munmap(self.0 as *mut libc::c_void, FILE_SIZE) };
    }
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
    // Before mapping: a reader that maps the file would count as a process mapping it.
    if let Some(why) = liveness::check(pid, start_ticks, meta.dev(), meta.ino()).stale_reason() {
        return Verdict::Stale(why.into());
    }
    let map = match Mapping::new(&file) {
        Ok(m) => m,
        Err(e) => return Verdict::Invalid(format!("cannot map: {e}")),
    };
    match read_snapshot(&map, path) {
        Some(s) => Verdict::Live(Box::new(s)),
        None => Verdict::Invalid("a writer stayed inside a section; try again".into()),
    }
}

/// Copies header and sections out of the mapping.
fn read_snapshot(map: &Mapping, path: &Path) -> Option<Snapshot> {
    let f = map.0;
    // SAFETY: f is a complete, mapped stats file; sections start with their sequence; the
    // header is stable; writers is a u32 updated atomically.
    unsafe {
        let writers = std::sync::atomic::AtomicU32::from_ptr(addr_of!((*f).writers) as *mut u32)
            .load(std::sync::atomic::Ordering::Acquire);
        let host = read_section(addr_of!((*f).host))?;
        let mut devices = Vec::new();
        for d in 0..alloc_core::stats::layout::MAX_DEVICES {
            let s = read_section(addr_of!((*f).devices[d]))?;
            if s.present != 0 {
                devices.push(s);
            }
        }
        let h = &*f;
        let len = (h.cmdline_len as usize).min(h.cmdline.len());
        Some(Snapshot {
            path: path.to_path_buf(),
            pid: h.pid,
            uid: h.uid,
            start_ticks: h.start_ticks,
            start_unix_ns: h.start_unix_ns,
            writers,
            num_classes: h.num_classes,
            cmdline: Snapshot::split_cmdline(&h.cmdline[..len]),
            host,
            devices,
        })
    }
}

/// A consistent copy of a section, retrying for a while if a writer is inside it.
///
/// # Safety
/// `p` points to a mapped section starting with its sequence number.
unsafe fn read_section<T: Copy>(p: *const T) -> Option<T> {
    for _ in 0..100 {
        // SAFETY: by contract.
        if let Some(v) = unsafe { seqlock::read(p, 10_000) } {
            return Some(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    None
}
