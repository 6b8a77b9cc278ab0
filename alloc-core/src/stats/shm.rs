//! Where this process's statistics live: a file under the stats directory that other
//! processes map (see [`super::publish`]), or process memory (`LOCAL`) before the file is
//! open, when `stats:false`, or when it cannot be created.
//!
//! Invariants:
//! - [`file()`] never returns null, and a pointer it returned stays valid for the life of
//!   the process, except that a fork child switches to its own file (in the fork handler,
//!   when only one thread exists);
//! - the file is removed at normal exit by the last poolside component of the process that
//!   still had it open, and only if the name still points at the same inode.

use super::file_path::StatsPath;
use super::layout::{DeviceSection, HostSection, StatsFile, MAX_DEVICES};
use super::publish::{self, Failure, Identity};
use super::seqlock;
use crate::config::HostConfig;
use crate::sys::{self, SpinLock};
use core::cell::UnsafeCell;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

struct Local(UnsafeCell<core::mem::MaybeUninit<StatsFile>>);
// SAFETY: all access goes through raw pointers under the seqlock protocol.
unsafe impl Sync for Local {}
// Zero-initialised (in .bss): an all-zero StatsFile is a valid, empty one.
static LOCAL: Local = Local(UnsafeCell::new(core::mem::MaybeUninit::zeroed()));

/// The mapped file, or null while the statistics live in `LOCAL`.
static FILE: AtomicPtr<StatsFile> = AtomicPtr::new(core::ptr::null_mut());

/// What this copy of poolside knows about its file. Guarded by `STATE`.
struct State {
    /// Writer bits of the components in this copy that called [`open`].
    writers: u32,
    /// Settings from the first [`open`] that asked for a file.
    enabled: bool,
    dir: [u8; 256],
    dir_len: usize,
    /// The file's name and identity while `FILE` is set.
    path: StatsPath,
    dev: u64,
    ino: u64,
    /// A warning was printed (at most one per process image).
    warned: bool,
}

static STATE: SpinLock<State> = SpinLock::new(State {
    writers: 0,
    enabled: false,
    dir: [0; 256],
    dir_len: 0,
    path: StatsPath::EMPTY,
    dev: 0,
    ino: 0,
    warned: false,
});

fn local() -> *mut StatsFile {
    LOCAL.0.get() as *mut StatsFile
}

/// Set in a fork child whose parent published a file: the child publishes its own on its
/// first statistics write rather than in the fork handler, so that the common fork-then-exec
/// leaves no file behind (exec runs no exit handlers).
static PENDING: AtomicBool = AtomicBool::new(false);

/// The process's stats file (never null). Called on slow paths only (folds, snapshots).
#[inline]
pub fn file() -> *mut StatsFile {
    let p = FILE.load(Ordering::Acquire);
    if !p.is_null() {
        return p;
    }
    if PENDING.load(Ordering::Relaxed) {
        publish_pending();
    }
    let p = FILE.load(Ordering::Acquire);
    if p.is_null() {
        local()
    } else {
        p
    }
}

/// Publishes the file a fork child deferred. Takes `STATE` (callers may hold the engine's
/// stats lock: the order is always engine lock, then `STATE`).
#[cold]
fn publish_pending() {
    let mut st = STATE.lock();
    if !PENDING.swap(false, Ordering::Relaxed) {
        return;
    }
    let writers = st.writers;
    publish_from(&mut st, local(), writers);
}

/// The host section, for the engine's folds.
pub fn host_section() -> *mut HostSection {
    // SAFETY: file() is valid for the life of the process.
    unsafe { addr_of_mut!((*file()).host) }
}

/// The section of device `dev`, or null when `dev` is out of range.
pub fn device_section(dev: usize) -> *mut DeviceSection {
    if dev >= MAX_DEVICES {
        return core::ptr::null_mut();
    }
    // SAFETY: dev is in range; file() is valid for the life of the process.
    unsafe { addr_of_mut!((*file()).devices[dev]) }
}

/// True when the statistics are published in a file (not only in process memory).
pub fn is_published() -> bool {
    !FILE.load(Ordering::Acquire).is_null()
}

/// Publishes this process's statistics for `writer` (`WRITER_HOST` or `WRITER_CUDA`).
///
/// Allocation-free: the host engine calls it inside the first malloc. With `stats:false`
/// the statistics stay in process memory. On failure they stay there too, after one
/// warning line.
pub fn open(cfg: &HostConfig, writer: u32) {
    let mut st = STATE.lock();
    st.writers |= writer;
    if !cfg.stats {
        return;
    }
    let f = FILE.load(Ordering::Acquire);
    if !f.is_null() {
        // Another component of this copy opened it: add our bit.
        // SAFETY: f is the mapped file.
        unsafe { publish::writers_of(f) }.fetch_or(writer, Ordering::AcqRel);
        return;
    }
    if st.enabled {
        // An earlier attempt failed and warned; stay in process memory.
        return;
    }
    st.enabled = true;
    let dir = cfg.stats_dir();
    st.dir[..dir.len()].copy_from_slice(dir);
    st.dir_len = dir.len();
    let writers = st.writers;
    publish_from(&mut st, local(), writers);
}

/// Publishes a file for the current PID holding `content`, and switches [`file()`] to it.
fn publish_from(st: &mut State, content: *const StatsFile, writers: u32) -> bool {
    let me = Identity::current();
    let Some(path) = StatsPath::new(&st.dir[..st.dir_len], me.uid, me.pid) else {
        let dir = st.dir;
        warn(st, Failure::PathTooLong, &dir[..st.dir_len]);
        return false;
    };
    match publish::publish(&path, &me, writers, content) {
        Ok(m) => {
            st.path = path;
            st.dev = m.dev;
            st.ino = m.ino;
            FILE.store(m.ptr, Ordering::Release);
            true
        }
        Err(e) => {
            warn(st, e, path.bytes());
            false
        }
    }
}

fn errno_name(e: i32) -> &'static [u8] {
    match e {
        libc::EACCES => b"permission denied",
        libc::EPERM => b"operation not permitted",
        libc::ENOENT => b"no such directory",
        libc::ENOTDIR => b"not a directory",
        libc::EROFS => b"read-only file system",
        libc::ENOSPC => b"no space left",
        libc::EMFILE | libc::ENFILE => b"too many open files",
        libc::ENOMEM => b"out of memory",
        libc::ELOOP => b"is a symbolic link",
        _ => b"system error",
    }
}

/// Prints one line about a failure, once per process image.
fn warn(st: &mut State, e: Failure, path: &[u8]) {
    if st.warned {
        return;
    }
    st.warned = true;
    let mut num = [0u8; 20];
    let (what, why, code): (&[u8], &[u8], &[u8]) = match e {
        Failure::PathTooLong => (b"path too long", b"", b""),
        Failure::Syscall { what, errno } => (
            what,
            errno_name(errno),
            sys::fmt_u64(errno as u64, &mut num),
        ),
        Failure::NotOurs => (b"name taken by a link or another user's file", b"", b""),
        Failure::WriterPresent => (
            b"another poolside copy already writes these statistics",
            b"",
            b"",
        ),
        Failure::Incompatible => (
            b"another poolside copy uses a different layout version",
            b"",
            b"",
        ),
        Failure::KeepsChanging => (b"file kept changing", b"", b""),
    };
    let (sep, open, close): (&[u8], &[u8], &[u8]) = if code.is_empty() {
        (b"", b"", b"")
    } else {
        (b": ", b" (errno ", b")")
    };
    sys::write_stderr(&[
        b"poolside: warning: statistics stay in process memory: ",
        what,
        b" ",
        path,
        sep,
        why,
        open,
        code,
        close,
        b"\n",
    ]);
}

/// Removes the file at normal exit if no other component of the process still has it.
/// The mapping stays, so late writes (destructors that fold counters) remain harmless.
pub fn close() {
    let st = STATE.lock();
    let f = FILE.load(Ordering::Acquire);
    if f.is_null() {
        return;
    }
    // SAFETY: f is the mapped file.
    let prev = unsafe { publish::writers_of(f) }.fetch_and(!st.writers, Ordering::AcqRel);
    if prev & !st.writers == 0 {
        publish::remove_if_same(&st.path, st.dev, st.ino);
    }
}

/// In a fork child: stop writing to the parent's file. The statistics (the parent's, as of
/// the fork) move to process memory, and the child publishes its own file on its first
/// statistics write (see [`file()`]).
pub fn after_fork_child() {
    // The child has one thread; a lock held by another parent thread at fork is void.
    if STATE.try_lock().is_none() {
        // SAFETY: the only thread left is this one, and it does not hold the lock.
        unsafe { STATE.raw_unlock() };
    }
    let _st = STATE.lock();
    let old = FILE.load(Ordering::Acquire);
    if old.is_null() {
        // Process memory is already private to the child.
        return;
    }
    // SAFETY: both are valid stats files; this thread is the only writer left in the child.
    unsafe { copy_consistent(local(), old) };
    FILE.store(core::ptr::null_mut(), Ordering::Release);
    PENDING.store(true, Ordering::Relaxed);
    // SAFETY: file() no longer returns old, and the child has no other thread using it.
    unsafe { publish::unmap(old) };
}

/// Copies `src` into `dst` section by section under the seqlocks: the parent process may
/// be writing `src` right now. A section that stays busy is left empty.
///
/// # Safety
/// Both are valid stats files; nothing else writes `dst`.
unsafe fn copy_consistent(dst: *mut StatsFile, src: *const StatsFile) {
    // SAFETY: by contract; sections are plain data that start with their sequence.
    unsafe {
        core::ptr::copy_nonoverlapping(src, dst, 1);
        let host = seqlock::read(addr_of!((*src).host), 100_000);
        let h = addr_of_mut!((*dst).host);
        match host {
            Some(v) => h.write(v),
            None => core::ptr::write_bytes(h, 0, 1),
        }
        for d in 0..MAX_DEVICES {
            let dev = seqlock::read(addr_of!((*src).devices[d]), 100_000);
            let p = addr_of_mut!((*dst).devices[d]);
            match dev {
                Some(v) => p.write(v),
                None => core::ptr::write_bytes(p, 0, 1),
            }
        }
    }
}

extern "C" fn close_at_exit() {
    close();
}

/// Runs [`close`] at normal exit (and at dlclose of the library holding this copy).
#[used]
#[link_section = ".fini_array"]
static CLOSE_AT_EXIT: extern "C" fn() = close_at_exit;
