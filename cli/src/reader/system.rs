//! Figures about processes and the machine that come from /proc rather than the stats file.

use std::fs;

/// Bytes per page.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

/// Resident set size of `pid` (second field of /proc/PID/statm, in pages).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// Anonymous memory of `pid` mapped as transparent huge pages (`AnonHugePages` of
/// /proc/PID/smaps_rollup; none when the file is missing or unreadable, as it is for
/// another user's process).
pub fn anon_huge_bytes(pid: u32) -> Option<u64> {
    parse_meminfo(
        &fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?,
        "AnonHugePages",
    )
}

/// A `Key:  N kB` line of /proc/meminfo, in bytes.
pub fn meminfo(key: &str) -> Option<u64> {
    parse_meminfo(&fs::read_to_string("/proc/meminfo").ok()?, key)
}

/// A `Key:  N kB` line of a /proc file (meminfo, smaps_rollup), in bytes.
fn parse_meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k != key {
            return None;
        }
        let mut it = v.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        Some(if it.next() == Some("kB") { n * 1024 } else { n })
    })
}

/// The reader's uid.
pub fn my_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo_lines() {
        let t = "MemTotal:       16384 kB\nMemAvailable:    1024 kB\nHugePages_Total:       3\n";
        assert_eq!(parse_meminfo(t, "MemTotal"), Some(16384 * 1024));
        assert_eq!(parse_meminfo(t, "MemAvailable"), Some(1024 * 1024));
        assert_eq!(parse_meminfo(t, "HugePages_Total"), Some(3));
        assert_eq!(parse_meminfo(t, "Mem"), None);
        assert!(meminfo("MemTotal").unwrap() > 0);
    }

    #[test]
    fn reads_own_rss() {
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn reads_smaps_rollup_lines() {
        let t = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:   2048 kB\nAnonHugePages:   4096 kB\nShmemPmdMapped:  0 kB\n";
        assert_eq!(parse_meminfo(t, "AnonHugePages"), Some(4096 * 1024));
        assert_eq!(anon_huge_bytes(u32::MAX), None, "no such process");
    }
}
