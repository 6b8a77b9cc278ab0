//! `poolside export` under slow and hostile clients: more idle connections than the cap,
//! slow-loris heads, oversized and malformed requests. Meanwhile a plain scrape of
//! `/metrics` must get its answer within a second. Everything runs against 127.0.0.1, with
//! a bounded number of connections and socket timeouts, so that a failing server fails a
//! test rather than hanging it.

mod common;

use common::*;
use poolside_cli::export::server::{HEAD_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

/// How long a scrape may take while hostile clients are connected.
const SCRAPE_WITHIN: Duration = Duration::from_secs(1);

/// A running `poolside export` over a directory with one live stats file (this test
/// process's); killed on drop.
struct Exporter {
    child: Child,
    addr: String,
    dir: PathBuf,
    _file: Mapped,
}

impl Exporter {
    fn start(tag: &str) -> Exporter {
        let dir = temp_dir(tag);
        let me = std::process::id();
        let file = Mapped::new(&write(&dir, me, bytes(&stats_file(me))));
        let Export {
            child,
            addr,
            stderr: mut err,
        } = Export::start(&dir);
        // Keep draining stderr so that the exporter never blocks on a full pipe.
        thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Exporter {
            child,
            addr,
            dir,
            _file: file,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        s
    }

    /// Sends `request` on a fresh connection and reads the answer until the server closes.
    /// Returns the answer and how long it took, or what went wrong.
    fn exchange(&self, request: &[u8]) -> Result<(String, Duration), String> {
        let start = Instant::now();
        let mut s = self.connect();
        s.set_read_timeout(Some(SCRAPE_WITHIN * 2)).unwrap();
        s.write_all(request).map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)
            .map_err(|e| format!("read after {:?}: {e}", start.elapsed()))?;
        Ok((
            String::from_utf8_lossy(&answer).into_owned(),
            start.elapsed(),
        ))
    }

    /// A plain scrape, which must succeed within [`SCRAPE_WITHIN`].
    fn scrape(&self, when: &str) {
        let (answer, took) = self
            .exchange(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap_or_else(|e| panic!("scrape {when} failed: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "scrape {when}: {answer}"
        );
        assert!(
            answer.contains("poolside_process_info{"),
            "scrape {when}: {answer}"
        );
        assert!(took < SCRAPE_WITHIN, "scrape {when} took {took:?}");
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the server has closed `s` (end of file or reset), without waiting.
fn closed_by_server(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match (&*s).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// The status code of an HTTP answer.
fn status(answer: &str) -> Option<u16> {
    let rest = answer
        .strip_prefix("HTTP/1.1 ")
        .or(answer.strip_prefix("HTTP/1.0 "))?;
    rest.get(..3)?.parse().ok()
}

#[test]
fn idle_connections_beyond_the_cap_do_not_delay_a_scrape() {
    let ex = Exporter::start("hostile-idle");
    let n = MAX_CONNECTIONS + 36;
    let idle: Vec<TcpStream> = (0..n).map(|_| ex.connect()).collect();
    // Let the server accept them all.
    thread::sleep(Duration::from_millis(300));
    ex.scrape("with idle connections beyond the cap");
    // The cap holds: the oldest connections were closed to make room for the newer ones and
    // the scrape. The newest are still open (their head timeout is seconds away).
    let must_close = n + 1 - MAX_CONNECTIONS;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut closed = 0;
    while Instant::now() < deadline {
        closed = idle.iter().filter(|s| closed_by_server(s)).count();
        if closed >= must_close {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        (must_close..n).contains(&closed),
        "{closed} of {n} idle connections closed; expected at least {must_close}, not all"
    );
    assert!(
        idle[..must_close].iter().all(closed_by_server),
        "the oldest connections are the ones closed"
    );
    ex.scrape("after the idle connections");
}

#[test]
fn slow_loris_clients_do_not_block_scrapes_and_are_cut_off() {
    let ex = Exporter::start("hostile-loris");
    let addr = ex.addr.clone();
    let lorises: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            thread::spawn(move || -> Option<Duration> {
                let mut s = TcpStream::connect(&addr).unwrap();
                // Waiting for the server to close between bytes paces us at one byte a second.
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let start = Instant::now();
                let head = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
                let mut bytes = head.iter().chain(std::iter::repeat(&b'a'));
                while start.elapsed() < HEAD_TIMEOUT * 3 {
                    if s.write_all(&[*bytes.next().unwrap()]).is_err() {
                        return Some(start.elapsed());
                    }
                    let mut buf = [0u8; 256];
                    match s.read(&mut buf) {
                        Ok(0) => return Some(start.elapsed()),
                        Ok(_) => {} // an error status; the close follows
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return Some(start.elapsed()),
                    }
                }
                None
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    for i in 0..3 {
        ex.scrape(&format!("{i} while slow clients send a byte a second"));
        thread::sleep(Duration::from_millis(700));
    }
    for loris in lorises {
        let cut = loris.join().unwrap();
        assert!(
            cut.is_some_and(|t| t < HEAD_TIMEOUT + Duration::from_secs(3)),
            "a slow client was cut off after {cut:?}; the head timeout is {HEAD_TIMEOUT:?}"
        );
    }
    ex.scrape("after the slow clients");
}

#[test]
fn oversized_heads_get_431_and_do_not_block_scrapes() {
    let ex = Exporter::start("hostile-big");
    // Exactly the limit, unfinished: the server reads all of it, so its close is clean and
    // the answer arrives.
    let mut head = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    head.resize(MAX_HEAD, b'a');
    let (answer, _) = ex.exchange(&head).unwrap();
    assert_eq!(status(&answer), Some(431), "{answer}");
    // More header lines than hyper keeps (100), in a small head.
    let mut many = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(many.len() < MAX_HEAD);
    let (answer, _) = ex.exchange(&many).unwrap();
    assert_eq!(status(&answer), Some(431), "{answer}");

    // A 16 MiB head, streamed: the server stops reading and closes; the writer sees an
    // error long before it has sent it all.
    let addr = ex.addr.clone();
    let flood = thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nX-Flood: ").unwrap();
        let chunk = [b'a'; 64 << 10];
        let mut sent = 0usize;
        while sent < 16 << 20 {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => return sent,
            }
        }
        sent
    });
    ex.scrape("while a 16 MiB head streams in");
    let sent = flood.join().unwrap();
    assert!(sent < 16 << 20, "the server took a whole 16 MiB head");
    ex.scrape("after the oversized heads");
}

#[test]
fn malformed_requests_get_an_error_status_promptly() {
    let ex = Exporter::start("hostile-malformed");
    // A garbage connection left open, to show the others do not wait for it.
    let mut open = ex.connect();
    open.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .unwrap();
    let cases: &[(&[u8], u16)] = &[
        (b"\x00\x01\xfe\xff garbage \x7f\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n",
            400,
        ),
        (b"GET /metrics HTTP/1.1\r\nHost: \x01\x02\r\n\r\n", 400),
        (b"G\xc3\xa9T /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/9.9\r\n\r\n", 400),
        (b"GET /metrics\r\n\r\n", 400),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /met\x00rics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n Folded: x\r\n\r\n", 400),
        (
            b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
        ),
        (b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            405,
        ),
        (
            b"PUT /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            405,
        ),
        (b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", 200),
    ];
    for (request, want) in cases {
        let shown = String::from_utf8_lossy(request);
        let (answer, took) = ex
            .exchange(request)
            .unwrap_or_else(|e| panic!("{shown:?}: {e}"));
        assert_eq!(status(&answer), Some(*want), "{shown:?}: {answer}");
        assert!(took < SCRAPE_WITHIN, "{shown:?} took {took:?}");
    }
    ex.scrape("after malformed requests");
    drop(open);
}

#[test]
fn an_idle_connection_is_closed_after_the_head_timeout() {
    let ex = Exporter::start("hostile-timeout");
    let mut s = ex.connect();
    s.set_read_timeout(Some(HEAD_TIMEOUT + Duration::from_secs(5)))
        .unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let end = s.read_to_end(&mut rest);
    let took = start.elapsed();
    assert!(
        end.is_ok()
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
        "{end:?} after {took:?}"
    );
    assert!(
        took >= HEAD_TIMEOUT - Duration::from_millis(500)
            && took < HEAD_TIMEOUT + Duration::from_secs(3),
        "closed after {took:?}; the head timeout is {HEAD_TIMEOUT:?}"
    );
}
