//! The stats file's name, `<dir>/poolside-<uid>-<pid>`, built in a fixed buffer.

use crate::sys::fmt_u64;

/// Longest path: a 255-byte directory, `/poolside-`, two 10-digit numbers, `-`, NUL.
pub const PATH_BYTES: usize = 256 + 10 + 20 + 1 + 20 + 1;

/// A NUL-terminated path.
#[derive(Clone, Copy)]
pub struct StatsPath {
    buf: [u8; PATH_BYTES],
    /// Length without the NUL.
    len: usize,
}

impl StatsPath {
    pub const EMPTY: StatsPath = StatsPath {
        buf: [0; PATH_BYTES],
        len: 0,
    };

    /// `<dir>/poolside-<uid>-<pid>`; `None` if it does not fit.
    pub fn new(dir: &[u8], uid: u32, pid: u32) -> Option<StatsPath> {
        let mut p = StatsPath::EMPTY;
        let (mut a, mut b) = ([0u8; 20], [0u8; 20]);
        let dir = match dir {
            [d @ .., b'/'] if !d.is_empty() => d,
            d => d,
        };
        for part in [
            dir,
            b"/poolside-",
            fmt_u64(uid as u64, &mut a),
            b"-",
            fmt_u64(pid as u64, &mut b),
        ] {
            p.push(part)?;
        }
        Some(p)
    }

    fn push(&mut self, s: &[u8]) -> Option<()> {
        // Keep one byte for the NUL.
        if self.len + s.len() >= PATH_BYTES {
            return None;
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
        Some(())
    }

    /// The path without its NUL.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The path for libc calls.
    pub fn c_str(&self) -> *const libc::c_char {
        self.buf.as_ptr() as *const libc::c_char
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_names() {
        let p = StatsPath::new(b"/dev/shm", 1000, 42).unwrap();
        assert_eq!(p.bytes(), b"/dev/shm/poolside-1000-42");
        let p = StatsPath::new(b"/tmp/", 0, 7).unwrap();
        assert_eq!(p.bytes(), b"/tmp/poolside-0-7");
        assert!(StatsPath::new(&[b'a'; 300], 1, 1).is_none());
    }
}
