//! Helpers shared by the CLI's integration tests: private stats directories and
//! synthetic stats files.
#![allow(dead_code)]

use poolside::stats::layout::{StatsFile, STATS_MAGIC, STATS_VERSION, WRITER_HOST};
use std::path::{Path, PathBuf};

/// A fresh, empty directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("poolside-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The caller's uid.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// Start ticks of a PID.
pub fn start_ticks(pid: u32) -> u64 {
    poolside_cli::reader::liveness::start_ticks(pid)
        .unwrap()
        .unwrap()
}

/// A zeroed stats file with a valid header for `pid`.
pub fn stats_file(pid: u32) -> Box<StatsFile> {
    // SAFETY: an all-zero StatsFile is valid.
    let mut f: Box<StatsFile> = unsafe { Box::new(std::mem::zeroed()) };
    f.magic = STATS_MAGIC;
    f.version = STATS_VERSION;
    f.header_size = std::mem::size_of::<StatsFile>() as u32;
    f.total_size = std::mem::size_of::<StatsFile>() as u64;
    f.pid = pid;
    f.uid = uid();
    // A dead PID has no start time; the reader judges it dead before comparing.
    f.start_ticks = poolside_cli::reader::liveness::start_ticks(pid)
        .ok()
        .flatten()
        .unwrap_or(0);
    f.writers = WRITER_HOST;
    f.num_classes = poolside::size_class::NUM_CLASSES as u32;
    let cmd = b"synthetic\0--flag\0";
    f.cmdline[..cmd.len()].copy_from_slice(cmd);
    f.cmdline_len = cmd.len() as u32;
    f
}

/// The bytes of a stats file.
pub fn bytes(f: &StatsFile) -> &[u8] {
    // SAFETY: StatsFile is plain data without padding holes that matter for a byte copy.
    unsafe {
        std::slice::from_raw_parts(
            f as *const StatsFile as *const u8,
            std::mem::size_of::<StatsFile>(),
        )
    }
}

/// The path of `pid`'s stats file in `dir`.
pub fn path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("poolside-{}-{pid}", uid()))
}

/// Writes `f` as `pid`'s file with mode 0600.
pub fn write(dir: &Path, pid: u32, data: &[u8]) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let p = path(dir, pid);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true).mode(0o600);
    std::io::Write::write_all(&mut o.open(&p).unwrap(), data).unwrap();
    p
}

/// Keeps a file mapped in this process, so that the reader sees it as live.
pub struct Mapped(*mut libc::c_void, usize);

impl Mapped {
    pub fn new(p: &Path) -> Mapped {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .unwrap();
        let len = std::mem::size_of::<StatsFile>();
        // SAFETY: a fresh shared mapping of a file of at least len bytes.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(m, libc::MAP_FAILED);
        Mapped(m, len)
    }

    pub fn file(&self) -> *mut StatsFile {
        self.0 as *mut StatsFile
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.0, self.1) };
    }
}

/// A PID that has exited (a child we waited for).
pub fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// The `poolside` binary.
pub fn poolside() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_poolside"))
}

/// Runs `poolside stat EXTRA... --stats-dir DIR` and returns its output.
pub fn stat_in(dir: &Path, extra: &[&str]) -> std::process::Output {
    poolside()
        .arg("stat")
        .args(extra)
        .arg("--stats-dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// A running `poolside export` on a free loopback port.
pub struct Export {
    pub child: std::process::Child,
    /// `host:port` it serves on, from its first stderr line.
    pub addr: String,
    /// The rest of its stderr.
    pub stderr: std::io::BufReader<std::process::ChildStderr>,
}

impl Export {
    /// Starts `poolside export --listen 127.0.0.1:0 --stats-dir DIR` and reads the address
    /// it announces.
    pub fn start(dir: &Path) -> Export {
        use std::io::BufRead;
        let mut child = poolside()
            .args(["export", "--listen", "127.0.0.1:0", "--stats-dir"])
            .arg(dir)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("poolside export: serving http://")
            .and_then(|s| s.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Export {
            child,
            addr,
            stderr,
        }
    }

    /// One `GET /metrics` on a fresh connection, then stops the exporter: the response's
    /// head and body.
    pub fn scrape_once(mut self) -> (String, String) {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        conn.read_to_string(&mut resp).unwrap();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }
}
