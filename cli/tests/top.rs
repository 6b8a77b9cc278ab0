//! `poolside top` draws its table in a pseudo-terminal, follows sort keys and quits on q.

mod common;

use common::*;
use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Reads the pty until `want` appears in the accumulated output; the bound only turns a
/// hang into a failure.
fn wait_for(rx: &mpsc::Receiver<Vec<u8>>, seen: &mut String, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => seen.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => panic!("never saw {want:?}; output so far: {seen:?}"),
        }
    }
}

#[test]
fn renders_in_a_pty_and_quits_on_q() {
    let dir = temp_dir("top");
    let me = std::process::id();
    let mut f = stats_file(me);
    f.host.reserved_bytes = 3 << 20;
    let p = write(&dir, me, bytes(&f));
    let _keep = Mapped::new(&p);

    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_poolside"));
    cmd.args(["top", "--interval-ms", "200", "--stats-dir"]);
    cmd.arg(&dir);
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut writer = pty.master.take_writer().unwrap();
    let mut seen = String::new();
    wait_for(
        &rx,
        &mut seen,
        "poolside top: 1 process, sorted by RESERVED",
    );
    wait_for(&rx, &mut seen, "3.0 MiB");
    wait_for(&rx, &mut seen, &me.to_string());
    writer.write_all(b"p").unwrap();
    writer.flush().unwrap();
    wait_for(&rx, &mut seen, "sorted by PID (ascending)");
    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(dir).unwrap();
}
