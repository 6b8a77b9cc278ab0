//! Creating, joining and removing the shared stats file, with raw syscalls only (this runs
//! inside the first malloc).
//!
//! One file per process image: the first poolside component to publish creates it; any
//! other copy of poolside in the same image (libpoolside.so preloaded and the CUDA plugin
//! each carry their own) joins it, recognising it by PID, start time and the exec's
//! `AT_RANDOM` bytes. A file with our name that fails those checks was left by an earlier
//! process or exec image with our PID, and is replaced.
//!
//! Creation order matters to joiners and readers: the file is sized, mapped and filled
//! first, and `magic` is stored last (release), so a valid magic means a complete header.

use super::file_path::StatsPath;
use super::layout::{StatsFile, MAX_DEVICES, STATS_MAGIC, STATS_VERSION, WRITER_CUDA, WRITER_HOST};
use super::proc_self;
use super::ranks;
use super::seqlock;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes of the file.
pub const FILE_SIZE: usize = core::mem::size_of::<StatsFile>();
/// How long a joiner waits for another component to finish creating the file.
const WAIT_MS: u32 = 500;

/// What identifies this process image.
#[derive(Clone, Copy)]
pub struct Identity {
    pub pid: u32,
    pub uid: u32,
    pub start_ticks: u64,
    pub exec_id: [u8; 16],
}

impl Identity {
    /// The calling process's identity (read afresh: a fork child differs from its parent).
    pub fn current() -> Identity {
        Identity {
            // SAFETY: getpid and getuid have no preconditions.
            pid: unsafe { libc::getpid() } as u32,
            // SAFETY: as above.
            uid: unsafe { libc::getuid() },
            start_ticks: proc_self::start_ticks(),
            exec_id: proc_self::exec_id(),
        }
    }
}

/// A mapped stats file.
#[derive(Clone, Copy)]
pub struct Mapped {
    pub ptr: *mut StatsFile,
    /// Device and inode, so that removal never hits a file that replaced ours.
    pub dev: u64,
    pub ino: u64,
}

/// Why the file could not be published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The directory is too long for a path.
    PathTooLong,
    /// A syscall failed.
    Syscall { what: &'static [u8], errno: i32 },
    /// A file with our name exists but is a link, not a regular file, or someone else's.
    NotOurs,
    /// Another copy of poolside in this process already writes the same sections.
    WriterPresent,
    /// Another copy of poolside in this process uses a different layout version.
    Incompatible,
    /// The name kept being recreated under us.
    KeepsChanging,
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn sleep_1ms() {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    // SAFETY: ts is valid; the remainder pointer may be null.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}

fn fstat(fd: i32) -> Option<libc::stat> {
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: st is a valid out-parameter.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st)
}

/// The file's `writers` bitmask as an atomic.
///
/// # Safety
/// `f` points to a mapped stats file.
pub unsafe fn writers_of<'a>(f: *mut StatsFile) -> &'a AtomicU32 {
    // SAFETY: the field is 4-byte aligned inside the mapping, which outlives 'a by contract.
    unsafe { AtomicU32::from_ptr(addr_of_mut!((*f).writers)) }
}

/// Creates or joins `path` and copies into it the sections `writers` own from `content`.
pub fn publish(
    path: &StatsPath,
    me: &Identity,
    writers: u32,
    content: *const StatsFile,
) -> Result<Mapped, Failure> {
    for _ in 0..4 {
        let flags =
            libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_RDWR | libc::O_CLOEXEC;
        // SAFETY: path is NUL-terminated.
        let fd = unsafe { libc::open(path.c_str(), flags, 0o600 as libc::c_uint) };
        if fd >= 0 {
            return create(fd, path, me, writers, content);
        }
        match errno() {
            libc::EEXIST => {
                if let Some(m) = join(path, me, writers, content)? {
                    return Ok(m);
                }
            }
            e => {
                return Err(Failure::Syscall {
                    what: b"cannot create",
                    errno: e,
                })
            }
        }
    }
    Err(Failure::KeepsChanging)
}

fn map(fd: i32) -> Result<*mut StatsFile, Failure> {
    // SAFETY: a fresh shared mapping of an open file; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            FILE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Failure::Syscall {
            what: b"cannot map",
            errno: errno(),
        });
    }
    Ok(p as *mut StatsFile)
}

/// Unmaps a mapping made by [`map`].
///
/// # Safety
/// Nothing uses `f` afterwards.
pub unsafe fn unmap(f: *mut StatsFile) {
    // SAFETY: f came from map with FILE_SIZE bytes.
    unsafe { libc::munmap(f as *mut libc::c_void, FILE_SIZE) };
}

fn create(
    fd: i32,
    path: &StatsPath,
    me: &Identity,
    writers: u32,
    content: *const StatsFile,
) -> Result<Mapped, Failure> {
    let fail = |what: &'static [u8]| {
        let e = errno();
        // SAFETY: fd is ours and the name was just created by us.
        unsafe {
            libc::unlink(path.c_str());
            libc::close(fd);
        }
        Err(Failure::Syscall { what, errno: e })
    };
    // open's mode is filtered by the umask; make it exactly 0600.
    // SAFETY: fd is an open file.
    if unsafe { libc::fchmod(fd, 0o600) } != 0 {
        return fail(b"cannot chmod");
    }
    // SAFETY: as above.
    if unsafe { libc::ftruncate(fd, FILE_SIZE as libc::off_t) } != 0 {
        return fail(b"cannot size");
    }
    let Some(st) = fstat(fd) else {
        return fail(b"cannot stat");
    };
    let f = match map(fd) {
        Ok(f) => f,
        Err(_) => return fail(b"cannot map"),
    };
    // SAFETY: the mapping stays valid after its descriptor is closed.
    unsafe { libc::close(fd) };
    // SAFETY: f is a fresh, zeroed mapping of FILE_SIZE bytes that no one reads before magic.
    unsafe { fill_header(f, me, writers) };
    // SAFETY: f is valid; content is a valid stats file.
    unsafe { copy_sections(f, content, WRITER_HOST | WRITER_CUDA) };
    // After the copy, which brought the content's (a fork parent's, or none) ranks.
    // SAFETY: no reader trusts f yet and no other writer has it.
    unsafe { ranks::stamp(addr_of_mut!((*f).host)) };
    // SAFETY: magic is 8-byte aligned in the mapping.
    unsafe { AtomicU64::from_ptr(addr_of_mut!((*f).magic)) }.store(STATS_MAGIC, Ordering::Release);
    Ok(Mapped {
        ptr: f,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// Writes every header field except `magic`.
///
/// # Safety
/// `f` is a mapped stats file no reader trusts yet (magic is 0).
unsafe fn fill_header(f: *mut StatsFile, me: &Identity, writers: u32) {
    // SAFETY: by contract f is ours to write.
    let h = unsafe { &mut *f };
    h.version = STATS_VERSION;
    h.header_size = FILE_SIZE as u32;
    h.total_size = FILE_SIZE as u64;
    h.pid = me.pid;
    h.uid = me.uid;
    h.start_ticks = me.start_ticks;
    h.start_unix_ns = proc_self::now_unix_ns();
    h.exec_id = me.exec_id;
    h.writers = writers;
    h.num_classes = crate::size_class::NUM_CLASSES as u32;
    h.cmdline_len = proc_self::cmdline(&mut h.cmdline) as u32;
}

/// Copies section `src` into `dst` under `dst`'s seqlock, keeping `dst`'s sequence number.
/// Does nothing when `src` cannot be read consistently.
///
/// # Safety
/// Both point to sections of `u64` words starting with their sequence; the caller is the
/// only writer of `dst`.
unsafe fn copy_section<T: Copy>(dst: *mut T, src: *const T) {
    // SAFETY: by contract.
    let Some(v) = (unsafe { seqlock::read(src, 100_000) }) else {
        return;
    };
    let words = core::mem::size_of::<T>() / 8;
    let (d, s) = (dst as *mut u64, addr_of!(v) as *const u64);
    // SAFETY: word 0 is the sequence; words 1.. are inside both sections.
    unsafe {
        seqlock::begin_write(d);
        for i in 1..words {
            seqlock::set(d.add(i), *s.add(i));
        }
        seqlock::end_write(d);
    }
}

/// Copies the sections that `writers` own: the host section for the host engine, the
/// device sections for the CUDA plugin.
///
/// # Safety
/// Both are valid stats files; the caller is the only writer of those sections in `dst`.
unsafe fn copy_sections(dst: *mut StatsFile, src: *const StatsFile, writers: u32) {
    // SAFETY: fields of valid files; sections start with their sequence.
    unsafe {
        if writers & WRITER_HOST != 0 {
            copy_section(addr_of_mut!((*dst).host), addr_of!((*src).host));
        }
        if writers & WRITER_CUDA != 0 {
            for d in 0..MAX_DEVICES {
                copy_section(addr_of_mut!((*dst).devices[d]), addr_of!((*src).devices[d]));
            }
        }
    }
}

/// Unlinks `path` if it still names the file `dev`/`ino`.
pub fn remove_if_same(path: &StatsPath, dev: u64, ino: u64) {
    // SAFETY: an all-zero stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: path is NUL-terminated; st is a valid out-parameter.
    if unsafe { libc::lstat(path.c_str(), &mut st) } == 0 && st.st_dev == dev && st.st_ino == ino {
        // SAFETY: as above.
        unsafe { libc::unlink(path.c_str()) };
    }
}

/// Joins an existing file. `Ok(None)`: it was stale (and is removed) or vanished; try again.
fn join(
    path: &StatsPath,
    me: &Identity,
    writers: u32,
    content: *const StatsFile,
) -> Result<Option<Mapped>, Failure> {
    // SAFETY: path is NUL-terminated.
    let fd = unsafe {
        libc::open(
            path.c_str(),
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return match errno() {
            libc::ENOENT => Ok(None),
            libc::ELOOP => Err(Failure::NotOurs),
            e => Err(Failure::Syscall {
                what: b"cannot open",
                errno: e,
            }),
        };
    }
    let r = join_fd(fd, path, me, writers, content);
    // SAFETY: fd is ours; a mapping made from it stays valid.
    unsafe { libc::close(fd) };
    r
}

fn join_fd(
    fd: i32,
    path: &StatsPath,
    me: &Identity,
    writers: u32,
    content: *const StatsFile,
) -> Result<Option<Mapped>, Failure> {
    let Some(mut st) = fstat(fd) else {
        return Err(Failure::Syscall {
            what: b"cannot stat",
            errno: errno(),
        });
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_uid != me.uid {
        return Err(Failure::NotOurs);
    }
    let (dev, ino) = (st.st_dev, st.st_ino);
    let stale = || {
        remove_if_same(path, dev, ino);
        Ok(None)
    };
    // A component that is creating it right now has yet to size it.
    let mut waited = 0;
    while (st.st_size as u64) < FILE_SIZE as u64 {
        if waited == WAIT_MS {
            return stale();
        }
        sleep_1ms();
        waited += 1;
        st = match fstat(fd) {
            Some(s) => s,
            None => {
                return Err(Failure::Syscall {
                    what: b"cannot stat",
                    errno: errno(),
                })
            }
        };
    }
    let f = map(fd)?;
    // SAFETY: f is a mapping of FILE_SIZE bytes; magic is 8-byte aligned.
    let magic = unsafe { AtomicU64::from_ptr(addr_of_mut!((*f).magic)) };
    let mut waited = 0;
    while magic.load(Ordering::Acquire) != STATS_MAGIC {
        if waited == WAIT_MS {
            // SAFETY: nothing else uses f.
            unsafe { unmap(f) };
            return stale();
        }
        sleep_1ms();
        waited += 1;
    }
    // SAFETY: a valid magic means the creator finished the header, which never changes
    // afterwards (except `writers`, read atomically below).
    let h = unsafe { &*f };
    if h.pid != me.pid || h.start_ticks != me.start_ticks || h.exec_id != me.exec_id {
        // SAFETY: nothing else uses f.
        unsafe { unmap(f) };
        return stale();
    }
    if h.version != STATS_VERSION || h.header_size as usize != FILE_SIZE {
        // SAFETY: nothing else uses f.
        unsafe { unmap(f) };
        return Err(Failure::Incompatible);
    }
    // SAFETY: f is mapped.
    let prev = unsafe { writers_of(f) }.fetch_or(writers, Ordering::AcqRel);
    if prev & writers != 0 {
        // The bits were someone else's already; leave them set.
        // SAFETY: nothing else uses f.
        unsafe { unmap(f) };
        return Err(Failure::WriterPresent);
    }
    // SAFETY: both files are valid; these sections are ours alone now.
    unsafe { copy_sections(f, content, writers) };
    if writers & WRITER_HOST != 0 {
        // The host section just copied over the creator's ranks; stamp them again.
        // SAFETY: the host section is ours alone now (the bit was not set before).
        unsafe { ranks::stamp(addr_of_mut!((*f).host)) };
    }
    Ok(Some(Mapped { ptr: f, dev, ino }))
}
