//! Tests of creating, joining and replacing stats files, in a private directory.

use super::file_path::StatsPath;
use super::layout::{StatsFile, STATS_MAGIC, STATS_VERSION, WRITER_CUDA, WRITER_HOST};
use super::publish::{self, Failure, Identity, FILE_SIZE};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::{boxed::Box, format, fs};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("poolside-pub-{}-{}", tag, std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn path_in(dir: &std::path::Path, me: &Identity) -> StatsPath {
    StatsPath::new(dir.to_str().unwrap().as_bytes(), me.uid, me.pid).unwrap()
}

fn fs_path(p: &StatsPath) -> PathBuf {
    PathBuf::from(std::str::from_utf8(p.bytes()).unwrap())
}

fn empty_file() -> Box<StatsFile> {
    // SAFETY: an all-zero StatsFile is valid.
    unsafe { Box::new(core::mem::zeroed()) }
}

#[test]
fn creates_private_file_with_header_and_content() {
    let dir = temp_dir("create");
    let me = Identity::current();
    let path = path_in(&dir, &me);
    let mut content = empty_file();
    content.host.reserved_bytes = 12345;
    content.devices[3].ooms = 7;
    let m = publish::publish(&path, &me, WRITER_HOST, &*content).unwrap();
    let meta = fs::symlink_metadata(fs_path(&path)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.len() as usize, FILE_SIZE);
    assert_eq!(meta.ino(), m.ino);
    // SAFETY: m.ptr is the mapping publish returned.
    let f = unsafe { &*m.ptr };
    assert_eq!(f.magic, STATS_MAGIC);
    assert_eq!(f.version, STATS_VERSION);
    assert_eq!(
        (f.pid, f.uid, f.start_ticks),
        (me.pid, me.uid, me.start_ticks)
    );
    assert_eq!(f.exec_id, me.exec_id);
    assert_eq!(f.writers, WRITER_HOST);
    assert!(f.cmdline_len > 0);
    assert_eq!(f.host.reserved_bytes, 12345);
    assert_eq!(f.devices[3].ooms, 7);
    assert_eq!(f.host.seq % 2, 0);
    // SAFETY: nothing uses the mapping afterwards.
    unsafe { publish::unmap(m.ptr) };
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn second_component_joins_and_copies_only_its_sections() {
    let dir = temp_dir("join");
    let me = Identity::current();
    let path = path_in(&dir, &me);
    let mut host = empty_file();
    host.host.segments = 2;
    let a = publish::publish(&path, &me, WRITER_HOST, &*host).unwrap();
    let mut cuda = empty_file();
    cuda.host.segments = 99;
    cuda.devices[0].hits = 5;
    let b = publish::publish(&path, &me, WRITER_CUDA, &*cuda).unwrap();
    assert_eq!((a.dev, a.ino), (b.dev, b.ino));
    // SAFETY: both are live mappings of the same file.
    let (fa, fb) = unsafe { (&*a.ptr, &*b.ptr) };
    assert_eq!(fa.writers, WRITER_HOST | WRITER_CUDA);
    assert_eq!(
        fa.host.segments, 2,
        "the joiner must not touch the host section"
    );
    assert_eq!(fa.devices[0].hits, 5);
    assert_eq!(fb.devices[0].hits, 5);
    // A second host writer would corrupt the seqlock.
    assert_eq!(
        publish::publish(&path, &me, WRITER_HOST, &*host).err(),
        Some(Failure::WriterPresent)
    );
    // SAFETY: nothing uses the mappings afterwards.
    unsafe {
        publish::unmap(a.ptr);
        publish::unmap(b.ptr);
    }
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn replaces_file_of_earlier_exec_image_and_garbage() {
    let dir = temp_dir("stale");
    let me = Identity::current();
    let path = path_in(&dir, &me);
    let content = empty_file();
    let mut other = me;
    other.exec_id[0] ^= 0xff;
    let old = publish::publish(&path, &other, WRITER_HOST, &*content).unwrap();
    let new = publish::publish(&path, &me, WRITER_HOST, &*content).unwrap();
    // SAFETY: both are live mappings.
    let (fo, fnew) = unsafe { (&*old.ptr, &*new.ptr) };
    assert_eq!(fnew.exec_id, me.exec_id);
    assert_eq!(fnew.writers, WRITER_HOST);
    assert_eq!(
        fo.exec_id, other.exec_id,
        "the old file is unlinked, not rewritten"
    );
    // SAFETY: nothing uses the mappings afterwards.
    unsafe {
        publish::unmap(old.ptr);
        publish::unmap(new.ptr);
    }
    // A truncated file with our name (a crash during creation) is replaced too.
    fs::remove_file(fs_path(&path)).unwrap();
    fs::write(fs_path(&path), b"garbage").unwrap();
    let m = publish::publish(&path, &me, WRITER_HOST, &*content).unwrap();
    assert_eq!(
        fs::metadata(fs_path(&path)).unwrap().len() as usize,
        FILE_SIZE
    );
    // SAFETY: nothing uses the mapping afterwards.
    unsafe { publish::unmap(m.ptr) };
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn refuses_symlink_and_missing_directory() {
    let dir = temp_dir("link");
    let me = Identity::current();
    let path = path_in(&dir, &me);
    let target = dir.join("target");
    fs::write(&target, b"keep").unwrap();
    std::os::unix::fs::symlink(&target, fs_path(&path)).unwrap();
    let content = empty_file();
    assert_eq!(
        publish::publish(&path, &me, WRITER_HOST, &*content).err(),
        Some(Failure::NotOurs)
    );
    assert_eq!(fs::read(&target).unwrap(), b"keep");
    let missing = StatsPath::new(b"/nonexistent-poolside-dir", me.uid, me.pid).unwrap();
    assert!(matches!(
        publish::publish(&missing, &me, WRITER_HOST, &*content),
        Err(Failure::Syscall {
            errno: libc::ENOENT,
            ..
        })
    ));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn removes_only_the_same_inode() {
    let dir = temp_dir("remove");
    let me = Identity::current();
    let path = path_in(&dir, &me);
    let content = empty_file();
    let m = publish::publish(&path, &me, WRITER_HOST, &*content).unwrap();
    publish::remove_if_same(&path, m.dev, m.ino.wrapping_add(1));
    assert!(fs_path(&path).exists());
    publish::remove_if_same(&path, m.dev, m.ino);
    assert!(!fs_path(&path).exists());
    // SAFETY: nothing uses the mapping afterwards.
    unsafe { publish::unmap(m.ptr) };
    fs::remove_dir_all(dir).unwrap();
}
