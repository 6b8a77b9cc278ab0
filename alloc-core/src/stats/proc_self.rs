//! Facts about the calling process, read without allocating: its start time in clock ticks
//! (to tell it from a later process with the same PID), its command line, the random bytes
//! that identify this exec image, and the wall clock.

/// Reads up to `buf.len()` bytes of a small file with raw syscalls. Returns the bytes read
/// (0 when the file cannot be opened).
pub fn read_small(path: &[u8], buf: &mut [u8]) -> usize {
    debug_assert!(path.last() == Some(&0));
    // SAFETY: path is NUL-terminated.
    let fd = unsafe {
        libc::open(
            path.as_ptr() as *const libc::c_char,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return 0;
    }
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: the destination is inside buf.
        let n = unsafe {
            libc::read(
                fd,
                buf[len..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - len,
            )
        };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: fd was opened above.
    unsafe { libc::close(fd) };
    len
}

/// Field 22 (`starttime`) of a `/proc/PID/stat` line. The second field (the command name)
/// is in parentheses and may itself hold spaces and parentheses, so fields are counted
/// from the last `)`.
pub fn parse_start_ticks(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    // After ") " comes field 3; field 22 is the 20th field from there.
    let mut fields = stat[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    crate::config::parse_u64(fields.nth(19)?)
}

/// This process's start time in clock ticks since boot (0 when /proc is unreadable).
pub fn start_ticks() -> u64 {
    let mut buf = [0u8; 1024];
    let n = read_small(b"/proc/self/stat\0", &mut buf);
    parse_start_ticks(&buf[..n]).unwrap_or(0)
}

/// Copies this process's command line (NUL-separated arguments) into `buf`, truncated.
pub fn cmdline(buf: &mut [u8]) -> usize {
    read_small(b"/proc/self/cmdline\0", buf)
}

/// The 16 random bytes the kernel handed this exec image (`AT_RANDOM`). A fork child keeps
/// its parent's; an exec gets new ones.
pub fn exec_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // SAFETY: getauxval has no preconditions.
    let p = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u8;
    if !p.is_null() {
        // SAFETY: AT_RANDOM points at 16 bytes that live as long as the process.
        unsafe { core::ptr::copy_nonoverlapping(p, id.as_mut_ptr(), 16) };
    }
    id
}

/// Nanoseconds since the Unix epoch.
pub fn now_unix_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_start_ticks_after_odd_command_names() {
        let mut line = std::vec::Vec::from(&b"42 (a) b) c) S"[..]);
        for f in 4..=21 {
            line.extend_from_slice(std::format!(" {f}").as_bytes());
        }
        line.extend_from_slice(b" 987654 23 24\n");
        assert_eq!(parse_start_ticks(&line), Some(987654));
        assert_eq!(parse_start_ticks(b"42 (x) S 1 2"), None);
    }

    #[test]
    fn reads_own_process() {
        assert!(start_ticks() > 0);
        let mut b = [0u8; 64];
        assert!(cmdline(&mut b) > 0);
        assert_ne!(exec_id(), [0u8; 16]);
    }
}
