//! Writer and reader in separate processes: this binary runs itself as a child that
//! allocates through poolside on command, while the parent reads the child's stats file
//! from outside and checks the counters against exactly what the child did.
//!
//! No libtest harness: the child must have a single thread so that no other thread's
//! allocations or folds land between two snapshots.

mod common;

use common::*;
use poolside::stats::layout::StatsFile;
use poolside_cli::reader::{self, Snapshot};
use poolside_cli::stat::format::bytes as human_bytes;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

#[global_allocator]
static POOLSIDE: poolside::Poolside = poolside::Poolside;

/// Set in the child's environment.
const ROLE: &str = "POOLSIDE_TEST_WRITER";
/// Block size of the class used: no other allocation in the child uses it.
const SIZE: usize = 3000;
const BLOCK: u64 = 3072;
const N: usize = 10;
/// A burst: 40,000 blocks of 200 B, 8 MB, made in a few ms (less than the 10 ms at which
/// the clock alone would fold).
const BURST: usize = 40_000;
const BURST_SIZE: usize = 200;

fn main() {
    if std::env::var_os(ROLE).is_some() {
        writer();
    } else {
        counts_match_what_the_writer_did();
        fork_child_gets_its_own_file();
        fork_then_exec_leaves_no_file();
        stats_false_publishes_nothing();
        stat_shows_the_writers_huge_pages();
        a_burst_is_published_without_a_flush();
        killed_writer_leaves_stale_file_that_readers_remove();
        println!("cross_process: all checks passed");
    }
}

/// The child: obeys one command per line on stdin, answers "done" after flushing stats.
fn writer() {
    let layout = std::alloc::Layout::from_size_align(SIZE, 8).unwrap();
    let mut held: Vec<*mut u8> = Vec::with_capacity(4 * N);
    let mut bursts: Vec<*mut u8> = Vec::with_capacity(BURST);
    let mut line = String::with_capacity(256);
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    let mut flush = true;
    loop {
        if flush {
            poolside::flush_stats();
        }
        flush = true;
        writeln!(out, "done").unwrap();
        out.flush().unwrap();
        line.clear();
        if input.read_line(&mut line).unwrap() == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("alloc") => {
                let n: usize = words.next().unwrap().parse().unwrap();
                for _ in 0..n {
                    // SAFETY: layout has a non-zero size.
                    let p = unsafe { std::alloc::alloc(layout) };
                    assert!(!p.is_null());
                    held.push(p);
                }
            }
            Some("burst") => {
                // Small blocks of another class, made quickly and then left alone, with no
                // flush: what the file shows is what the engine folded on its own.
                let n: usize = words.next().unwrap().parse().unwrap();
                let small = std::alloc::Layout::from_size_align(BURST_SIZE, 8).unwrap();
                for _ in 0..n {
                    // SAFETY: the layout has a non-zero size.
                    let p = unsafe { std::alloc::alloc(small) };
                    assert!(!p.is_null());
                    bursts.push(p);
                }
                flush = false;
            }
            Some("unburst") => {
                let small = std::alloc::Layout::from_size_align(BURST_SIZE, 8).unwrap();
                for p in bursts.drain(..) {
                    // SAFETY: p came from alloc with this layout.
                    unsafe { std::alloc::dealloc(p, small) };
                }
                flush = false;
            }
            Some("free") => {
                let n: usize = words.next().unwrap().parse().unwrap();
                for _ in 0..n {
                    // SAFETY: p came from alloc with this layout.
                    unsafe { std::alloc::dealloc(held.pop().unwrap(), layout) };
                }
            }
            Some("fork") => {
                // SAFETY: the child only flushes its statistics and sleeps.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // The child publishes its file on its first statistics write.
                    poolside::flush_stats();
                    loop {
                        // SAFETY: sleeping until the parent test kills us.
                        unsafe { libc::pause() };
                    }
                }
                writeln!(out, "child {pid}").unwrap();
            }
            Some("forkexec") => {
                // SAFETY: the child only execs (or exits at once).
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    let prog = c"/bin/true";
                    let argv = [prog.as_ptr(), std::ptr::null()];
                    // SAFETY: NUL-terminated program and argument vector.
                    unsafe {
                        libc::execv(prog.as_ptr(), argv.as_ptr());
                        libc::_exit(127);
                    }
                }
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                writeln!(out, "exec child {pid} status {status}").unwrap();
            }
            Some("hello") => {}
            _ => return,
        }
    }
}

struct Writer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Writer {
    fn start(dir: &Path) -> Writer {
        Writer::start_with(dir, "")
    }

    /// Starts a writer with extra `POOLSIDE_CONF` entries.
    fn start_with(dir: &Path, conf: &str) -> Writer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "1")
            .env(
                "POOLSIDE_CONF",
                format!("stats_dir:{},purge_delay_ms:1000000{conf}", dir.display()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut w = Writer {
            child,
            stdin,
            stdout,
        };
        w.expect("done");
        // Warm up the child's stdin buffer before the first snapshot.
        w.command("hello");
        w
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }

    fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want);
    }

    fn command(&mut self, c: &str) {
        writeln!(self.stdin, "{c}").unwrap();
        self.expect("done");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Kills a forked grandchild however the test ends, so that it does not outlive the test
/// holding its output pipes.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling the grandchild this test forked.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// Waits until `pid` has published a readable stats file (an error after 30 s means the
/// file never came, not that something was slow).
fn wait_for_file(dir: &Path, pid: u32) -> Snapshot {
    for _ in 0..3000 {
        if let Ok(s) = reader::read_pid(dir, pid) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("process {pid} never published {}", path(dir, pid).display());
}

fn snap(dir: &Path, pid: u32) -> Snapshot {
    reader::read_pid(dir, pid).unwrap()
}

/// The class counters of the class holding `BLOCK`-byte blocks.
fn class(s: &Snapshot) -> poolside::stats::layout::ClassCounters {
    let c = poolside::size_class::class_of(SIZE);
    assert_eq!(s.host.classes[c].block_size, BLOCK);
    s.host.classes[c]
}

fn live(s: &Snapshot) -> u64 {
    poolside_cli::report::build::host(&s.host, s.num_classes).live_bytes
}

/// A thread that makes 8 MB of small blocks in a few ms and then waits (here, in a read
/// of its stdin) is seen holding them: the engine folds on bytes of spans taken, not only
/// on the clock, so nothing needs to flush. Before that fold the file kept the figures of
/// the flush before the burst for as long as the thread waited (checked: the burst was
/// missing whole, unless the machine made it take more than 10 ms). Freeing them is
/// published the same way.
fn a_burst_is_published_without_a_flush() {
    let dir = temp_dir("xproc-burst");
    let mut w = Writer::start(&dir);
    let pid = w.pid();
    let before = live(&wait_for_file(&dir, pid));
    w.command(&format!("burst {BURST}"));
    let got = live(&snap(&dir, pid)) - before;
    let made = (BURST * BURST_SIZE) as u64;
    // The fold due when the heap's spans grew by a quarter (at least 1 MiB) leaves at
    // most that and one more span unpublished; the blocks' class rounding adds to the
    // figure.
    assert!(
        got + made / 4 + (1 << 20) >= made && got <= made * 2,
        "a burst of {made} bytes shows {got} bytes live"
    );
    println!("a burst of {made} bytes of small blocks shows {got} bytes live, unflushed");
    // Freed the same way, they leave the figure: the emptied spans go back.
    w.command("unburst");
    let left = live(&snap(&dir, pid)).saturating_sub(before);
    assert!(
        left <= made / 4 + (1 << 20),
        "{left} bytes still shown live after the burst was freed"
    );
    println!("freed, {left} bytes of it still shown live");
    drop(w);
}

/// AnonHugePages of /proc/PID/smaps_rollup, in bytes, as the kernel says it.
fn smaps_anon_huge(pid: u32) -> u64 {
    let t = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let line = t.lines().find(|l| l.starts_with("AnonHugePages:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// `poolside stat` reports the writer's transparent huge pages as the kernel counts them:
/// the THP column of the table and `anon_huge_bytes` of --json, read from outside.
fn stat_shows_the_writers_huge_pages() {
    let dir = temp_dir("xproc-thp");
    let mut w = Writer::start(&dir);
    let pid = w.pid();
    // 90 MiB of blocks: past the 64 MiB after which `auto` advises huge pages, so the
    // child's carving (it writes each block's first word) touches whole 2 MiB chunks of
    // advised segments where the kernel's mode allows them.
    w.command("alloc 30000");
    let before = smaps_anon_huge(pid);
    let out = stat_in(&dir, &["--json", &pid.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let after = smaps_anon_huge(pid);
    let got = v[0]["anon_huge_bytes"]
        .as_u64()
        .expect("a number for a readable process");
    // The idle child's figure does not move, but khugepaged may collapse pages meanwhile.
    assert!(
        (before.min(after)..=before.max(after)).contains(&got),
        "stat says {got}, smaps_rollup {before} then {after}"
    );
    let before = smaps_anon_huge(pid);
    let out = stat_in(&dir, &[&pid.to_string()]);
    let after = smaps_anon_huge(pid);
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap();
    let words: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(words[3..5], ["RSS", "THP"], "{text}");
    // Numbers are right-aligned: the THP cell ends where its heading does.
    let end = header.find("THP").unwrap() + 3;
    let row = text.lines().find(|l| l.contains(" host ")).unwrap();
    let cell = row[..end].rsplit("  ").next().unwrap().trim();
    assert!(
        [human_bytes(before), human_bytes(after)].contains(&cell.to_string()),
        "THP cell {cell:?}, smaps_rollup {before} then {after}:\n{text}"
    );
    println!("THP of a writer with 90 MiB of blocks: {got} bytes, shown as {cell}");
    drop(w);
}

fn counts_match_what_the_writer_did() {
    let dir = temp_dir("xproc");
    let mut w = Writer::start(&dir);
    let pid = w.pid();
    let path = path(&dir, pid);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), uid());
    assert_eq!(meta.len() as usize, std::mem::size_of::<StatsFile>());

    let s0 = snap(&dir, pid);
    assert_eq!(s0.pid, pid);
    assert!(s0.cmdline[0].contains("cross_process"), "{:?}", s0.cmdline);
    assert_eq!(s0.start_ticks, start_ticks(pid));

    // N blocks in a class the writer never used: the first needs a span (one miss; a span
    // is at least 64 KiB, which holds more than N blocks), the others are hits.
    w.command(&format!("alloc {N}"));
    let s1 = snap(&dir, pid);
    let (a, b) = (class(&s0), class(&s1));
    assert_eq!(b.allocs - a.allocs, N as u64);
    assert_eq!(b.misses - a.misses, 1);
    assert_eq!(b.hits - a.hits, N as u64 - 1);
    assert_eq!(b.live_bytes - a.live_bytes, N as u64 * BLOCK);
    assert_eq!(b.requested_bytes - a.requested_bytes, (N * SIZE) as u64);
    assert_eq!(b.allocated_bytes - a.allocated_bytes, N as u64 * BLOCK);
    assert_eq!(live(&s1) - live(&s0), N as u64 * BLOCK);

    // Free all but one (the page stays in use), then allocate as many again: all hits.
    w.command(&format!("free {}", N - 1));
    let s2 = snap(&dir, pid);
    let c = class(&s2);
    assert_eq!(c.frees - b.frees, N as u64 - 1);
    assert_eq!(b.live_bytes - c.live_bytes, (N as u64 - 1) * BLOCK);
    w.command(&format!("alloc {}", N - 1));
    let s3 = snap(&dir, pid);
    let d = class(&s3);
    assert_eq!(d.allocs - c.allocs, N as u64 - 1);
    assert_eq!(d.hits - c.hits, N as u64 - 1);
    assert_eq!(d.misses, c.misses);
    assert_eq!(live(&s3) - live(&s2), (N as u64 - 1) * BLOCK);

    // Normal exit removes the file.
    drop(w.stdin);
    assert!(w.child.wait().unwrap().success());
    assert!(!path.exists(), "the file must be removed at exit");
    std::fs::remove_dir_all(dir).unwrap();
    println!("counts_match_what_the_writer_did: ok");
}

fn fork_child_gets_its_own_file() {
    let dir = temp_dir("xfork");
    let mut w = Writer::start(&dir);
    w.command(&format!("alloc {N}"));
    let parent = snap(&dir, w.pid());
    writeln!(w.stdin, "fork").unwrap();
    let reply = w.line();
    let child: u32 = reply.strip_prefix("child ").unwrap().parse().unwrap();
    let _reap = KillOnDrop(child);
    w.expect("done");
    // The child makes its file in its fork handler, which may still be running.
    let c = wait_for_file(&dir, child);
    assert_eq!(c.pid, child);
    assert_eq!(c.start_ticks, start_ticks(child));
    // The child starts from the parent's counters as of the fork.
    assert_eq!(class(&c).allocs, class(&parent).allocs);
    // The parent keeps its own file.
    assert_eq!(snap(&dir, w.pid()).pid, w.pid());
    drop(_reap);
    drop(w.stdin);
    assert!(w.child.wait().unwrap().success());
    // Once killed (dead, or a zombie that no longer maps anything) its file is stale.
    let mut out = reader::scan(&dir).unwrap();
    for _ in 0..3000 {
        if !path(&dir, child).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        out = reader::scan(&dir).unwrap();
    }
    assert!(out.processes.is_empty(), "{:?}", out.processes);
    assert!(!path(&dir, child).exists());
    std::fs::remove_dir_all(dir).unwrap();
    println!("fork_child_gets_its_own_file: ok");
}

fn fork_then_exec_leaves_no_file() {
    let dir = temp_dir("xexec");
    let mut w = Writer::start(&dir);
    writeln!(w.stdin, "forkexec").unwrap();
    let reply = w.line();
    let rest = reply.strip_prefix("exec child ").unwrap();
    let (pid, status) = rest.split_once(" status ").unwrap();
    assert_eq!(status, "0", "/bin/true failed to run");
    w.expect("done");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        [format!("poolside-{}-{}", uid(), w.pid())],
        "child {pid}"
    );
    drop(w.stdin);
    assert!(w.child.wait().unwrap().success());
    std::fs::remove_dir_all(dir).unwrap();
    println!("fork_then_exec_leaves_no_file: ok");
}

fn stats_false_publishes_nothing() {
    let dir = temp_dir("xoff");
    let mut w = Writer::start_with(&dir, ",stats:false");
    w.command("alloc 3");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let e = reader::read_pid(&dir, w.pid()).unwrap_err();
    assert!(e.contains("not a poolside process"), "{e}");
    drop(w.stdin);
    assert!(w.child.wait().unwrap().success());
    std::fs::remove_dir_all(dir).unwrap();
    println!("stats_false_publishes_nothing: ok");
}

fn killed_writer_leaves_stale_file_that_readers_remove() {
    let dir = temp_dir("xkill");
    let mut w = Writer::start(&dir);
    let pid = w.pid();
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    assert!(path(&dir, pid).exists(), "SIGKILL skips the exit cleanup");
    let out = reader::scan(&dir).unwrap();
    assert!(out.processes.is_empty());
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(
        out.warnings[0].contains("removed stale"),
        "{:?}",
        out.warnings
    );
    assert!(!path(&dir, pid).exists());
    std::fs::remove_dir_all(dir).unwrap();
    println!("killed_writer_leaves_stale_file_that_readers_remove: ok");
}
