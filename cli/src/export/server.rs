//! A minimal HTTP server for the exposition: `GET /metrics` (and `/`) answer with a fresh
//! scan; anything else is 404. One connection at a time, each with a timeout, which is
//! plenty for a scraper every few seconds.

use super::prometheus;
use crate::reader;
use crate::report::build;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

/// Longest request head read.
const MAX_HEAD: usize = 8192;

/// Serves forever on `listener`, reading stats files from `dir`. Each scan warning is
/// printed once on stderr.
pub fn serve(listener: TcpListener, dir: &Path) -> std::io::Result<()> {
    let mut warned = HashSet::new();
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        if let Err(e) = answer(stream, dir, &mut warned) {
            eprintln!("poolside export: connection: {e}");
        }
    }
    Ok(())
}

/// The path of a request head's first line, when it is a GET.
pub fn request_path(head: &str) -> Option<&str> {
    let mut parts = head.lines().next()?.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(p)) => Some(p),
        _ => None,
    }
}

fn answer(mut s: TcpStream, dir: &Path, warned: &mut HashSet<String>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let (status, body) = match request_path(&head).map(|p| p.split('?').next().unwrap_or(p)) {
        Some("/metrics") | Some("/") => match reader::scan(dir) {
            Ok(scan) => {
                for w in &scan.warnings {
                    if warned.insert(w.clone()) {
                        eprintln!("poolside export: warning: {w}");
                    }
                }
                let reports: Vec<_> = scan
                    .processes
                    .iter()
                    .map(|p| build::process(p, true))
                    .collect();
                ("200 OK", prometheus::render(&reports, scan.warnings.len()))
            }
            Err(e) => (
                "500 Internal Server Error",
                format!("cannot read {}: {e}\n", dir.display()),
            ),
        },
        Some(_) => ("404 Not Found", "try /metrics\n".to_string()),
        None => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            request_path("GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Some("/metrics")
        );
        assert_eq!(request_path("POST /metrics HTTP/1.1\r\n"), None);
        assert_eq!(request_path(""), None);
    }
}
