//! The reader against malformed, foreign, stale and live synthetic files.

mod common;

use common::*;
use poolside_cli::reader;
use std::os::unix::fs::PermissionsExt;

#[test]
fn skips_bad_files_with_one_warning_each_and_keeps_them() {
    let dir = temp_dir("malformed");
    let me = std::process::id();
    // Garbage named for a live process (ours).
    let garbage = write(&dir, me, b"this is not a stats file at all, just text....");
    let out = reader::scan(&dir).unwrap();
    assert!(out.processes.is_empty());
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("bad magic"), "{:?}", out.warnings);
    assert!(garbage.exists(), "a live process's file is never removed");

    // Foreign version.
    let mut f = stats_file(me);
    f.version = 99;
    write(&dir, me, bytes(&f));
    let out = reader::scan(&dir).unwrap();
    assert!(
        out.warnings[0].contains("layout version 99"),
        "{:?}",
        out.warnings
    );

    // Truncated after a valid prefix.
    let f = stats_file(me);
    write(&dir, me, &bytes(&f)[..4096]);
    let out = reader::scan(&dir).unwrap();
    assert!(out.warnings[0].contains("truncated"), "{:?}", out.warnings);
    assert_eq!(out.warnings.len(), 1);

    // Files of other users and other names are not ours to judge.
    std::fs::write(dir.join(format!("poolside-{}-{me}", uid() + 1)), b"x").unwrap();
    std::fs::write(dir.join("unrelated"), b"x").unwrap();
    std::fs::remove_file(path(&dir, me)).unwrap();
    let out = reader::scan(&dir).unwrap();
    assert!(
        out.warnings.is_empty() && out.processes.is_empty(),
        "{out:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn refuses_symlinks() {
    let dir = temp_dir("symlink");
    let me = std::process::id();
    let target = dir.join("real");
    std::fs::write(&target, bytes(&stats_file(me))).unwrap();
    std::os::unix::fs::symlink(&target, path(&dir, me)).unwrap();
    let out = reader::scan(&dir).unwrap();
    assert!(out.processes.is_empty());
    assert!(
        out.warnings[0].contains("symbolic link"),
        "{:?}",
        out.warnings
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn removes_stale_files() {
    let dir = temp_dir("stale");
    // A dead process, with a valid file and with garbage.
    let dead = dead_pid();
    let p1 = write(&dir, dead, bytes(&stats_file(dead)));
    let out = reader::scan(&dir).unwrap();
    assert!(!p1.exists());
    assert!(
        out.warnings[0].contains("process has exited"),
        "{:?}",
        out.warnings
    );
    let p2 = write(&dir, dead, b"junk");
    reader::scan(&dir).unwrap();
    assert!(!p2.exists(), "garbage named for a dead PID is stale too");

    // Our PID, but a different start time: the PID was reused.
    let me = std::process::id();
    let mut f = stats_file(me);
    f.start_ticks += 1;
    let p3 = write(&dir, me, bytes(&f));
    let out = reader::scan(&dir).unwrap();
    assert!(!p3.exists());
    assert!(out.warnings[0].contains("reused"), "{:?}", out.warnings);

    // Our PID and start time, but we do not map it (an exec left it behind).
    let p4 = write(&dir, me, bytes(&stats_file(me)));
    let out = reader::scan(&dir).unwrap();
    assert!(!p4.exists(), "{out:?}");
    assert!(
        out.warnings[0].contains("no longer maps"),
        "{:?}",
        out.warnings
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn reads_live_file_exactly() {
    let dir = temp_dir("live");
    let me = std::process::id();
    let mut f = stats_file(me);
    f.host.reserved_bytes = 1 << 20;
    f.host.cached_bytes = 1 << 19;
    f.host.classes[3].block_size = 32;
    f.host.classes[3].allocs = 10;
    f.host.classes[3].hits = 9;
    f.host.classes[3].misses = 1;
    f.host.classes[3].live_bytes = 320;
    f.devices[1].present = 1;
    f.devices[1].device = 1;
    f.devices[1].reserved_bytes.current = 4096;
    f.devices[1].allocated_bytes.current = 1024;
    f.devices[1].active_bytes.current = 1024;
    f.devices[1].cached_bytes = 2048;
    f.devices[1].fragmented_bytes.current = 1024;
    let p = write(&dir, me, bytes(&f));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let _keep = Mapped::new(&p);
    let out = reader::scan(&dir).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let s = &out.processes[0];
    assert_eq!(s.pid, me);
    assert_eq!(s.cmdline, ["synthetic", "--flag"]);
    let r = poolside_cli::report::build::process(s, true);
    assert_eq!(r.host.live_bytes, 320);
    assert_eq!((r.host.hits, r.host.misses), (9, 1));
    assert_eq!(r.host.hit_rate, Some(0.9));
    // Free memory the pool could return (cached) is not fragmentation.
    assert_eq!(r.host.cached_bytes, 1 << 19);
    assert_eq!(r.host.fragmented_bytes, (1 << 19) - 320);
    assert_eq!(
        r.host.fragmentation,
        Some(((1u64 << 19) - 320) as f64 / (1u64 << 20) as f64)
    );
    assert_eq!(r.devices.len(), 1);
    assert_eq!(r.devices[0].name, "cuda:1");
    assert_eq!(r.devices[0].fragmentation, Some(0.25));
    assert_eq!(r.devices[0].cached_bytes, 2048);
    assert_eq!(r.classes.as_ref().unwrap().len(), 1);
    assert_eq!(reader::read_pid(&dir, me).unwrap().pid, me);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn explains_pids_without_statistics() {
    let dir = temp_dir("nopid");
    let e = reader::read_pid(&dir, std::process::id()).unwrap_err();
    assert!(e.contains("is not a poolside process"), "{e}");
    let e = reader::read_pid(&dir, dead_pid()).unwrap_err();
    assert!(e.contains("no process"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn snapshots_stay_consistent_while_a_writer_runs() {
    use poolside::stats::seqlock;
    use std::ptr::addr_of_mut;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = temp_dir("seqlock");
    let me = std::process::id();
    let p = write(&dir, me, bytes(&stats_file(me)));
    let map = Mapped::new(&p);
    let file = map.file() as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    // The writer keeps three fields in a fixed relation; a torn read would break it. It
    // writes every few microseconds: far more often than the engine, which folds at most
    // once per 10 ms per thread, yet leaving a reader room to copy the 16 KiB section.
    let writer = std::thread::spawn(move || {
        let f = file as *mut poolside::stats::layout::StatsFile;
        let mut n = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            n += 1;
            // SAFETY: the mapping outlives the thread (joined below); only we write.
            unsafe {
                let h = addr_of_mut!((*f).host);
                seqlock::begin_write(addr_of_mut!((*h).seq));
                seqlock::set(addr_of_mut!((*h).mapped_bytes), n);
                seqlock::set(addr_of_mut!((*h).reserved_bytes), 2 * n);
                seqlock::set(addr_of_mut!((*h).classes[5].live_bytes), 3 * n);
                seqlock::end_write(addr_of_mut!((*h).seq));
            }
            std::thread::sleep(std::time::Duration::from_micros(5));
        }
        n
    });
    // Stops and joins the writer before the mapping goes away, even if an assertion
    // below fails (declared after `map`, so it is dropped first).
    struct JoinOnDrop(Arc<AtomicBool>, Option<std::thread::JoinHandle<u64>>);
    impl Drop for JoinOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
            if let Some(h) = self.1.take() {
                let _ = h.join();
            }
        }
    }
    let mut guard = JoinOnDrop(stop.clone(), Some(writer));
    let mut last = 0;
    for _ in 0..2000 {
        let s = reader::read_pid(&dir, me).unwrap();
        let n = s.host.mapped_bytes;
        assert_eq!(s.host.reserved_bytes, 2 * n);
        assert_eq!(s.host.classes[5].live_bytes, 3 * n);
        assert!(n >= last, "snapshots go forward");
        last = n;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(guard.1.take().unwrap().join().unwrap() >= last);
    drop(guard);
    drop(map);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Sets a file's modification time `secs` seconds into the past.
fn age(p: &std::path::Path, secs: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn warns_about_empty_and_all_zero_files_of_live_processes() {
    let dir = temp_dir("empty");
    let me = std::process::id();
    let size = std::mem::size_of::<poolside::stats::layout::StatsFile>();
    for (content, what) in [(vec![], "empty file"), (vec![0u8; size], "bytes are zero")] {
        // Just written: a creator may be between open and writing the magic. Quiet.
        let p = write(&dir, me, &content);
        let out = reader::scan(&dir).unwrap();
        assert!(
            out.warnings.is_empty() && out.processes.is_empty(),
            "{out:?}"
        );
        // Unchanged for a minute: nobody is creating it.
        age(&p, 60);
        let out = reader::scan(&dir).unwrap();
        assert!(out.processes.is_empty());
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(out.warnings[0].contains(what), "{:?}", out.warnings);
        assert!(
            out.warnings[0].contains(&format!("process {me} runs")),
            "{:?}",
            out.warnings
        );
        assert!(p.exists(), "a live process's file is never removed");
        let e = reader::read_pid(&dir, me).unwrap_err();
        assert!(e.contains(what), "{e}");
        // What `poolside stat` prints.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_poolside"))
            .args(["stat", "--stats-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("poolside: warning: skipping") && stderr.contains(what),
            "{stderr}"
        );
        // A zero magic over other content is a bad magic.
        let mut other = content.clone();
        other.resize(size, 0);
        other[size - 1] = 1;
        write(&dir, me, &other);
        age(&p, 60);
        let out = reader::scan(&dir).unwrap();
        assert!(out.warnings[0].contains("bad magic"), "{:?}", out.warnings);
    }
    // The same files of a dead process are stale and removed.
    let dead = dead_pid();
    let p = write(&dir, dead, &[]);
    age(&p, 60);
    reader::scan(&dir).unwrap();
    assert!(!p.exists());
    std::fs::remove_dir_all(dir).unwrap();
}
