//! Whether the process that wrote a stats file still has it.
//!
//! A file is live when its PID runs, the process started at the tick the file records
//! (otherwise the PID was reused), and the process maps the file's inode (otherwise the
//! process exec'd a program without poolside after a fork created the file).

use poolside::stats::proc_self::parse_start_ticks;
use std::fs;
use std::io::ErrorKind;

/// What became of a file's writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// No process with that PID.
    Dead,
    /// The PID belongs to a process started later.
    Reused,
    /// The process runs but no longer maps the file.
    Unmapped,
}

impl Liveness {
    /// Why a file of a process in this state is stale, or `None` when it is live.
    pub fn stale_reason(self) -> Option<&'static str> {
        match self {
            Liveness::Alive => None,
            Liveness::Dead => Some("process has exited"),
            Liveness::Reused => Some("PID reused by a later process"),
            Liveness::Unmapped => Some("process no longer maps it"),
        }
    }
}

/// Start time of `pid` in clock ticks, `Ok(None)` when no such process exists.
pub fn start_ticks(pid: u32) -> std::io::Result<Option<u64>> {
    match fs::read(format!("/proc/{pid}/stat")) {
        Ok(b) => Ok(parse_start_ticks(&b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// True when `pid` exists (an unreadable /proc entry counts as existing).
pub fn exists(pid: u32) -> bool {
    !matches!(start_ticks(pid), Ok(None))
}

/// Checks the writer of a file with inode `ino` on device `dev`.
pub fn check(pid: u32, recorded_start: u64, dev: u64, ino: u64) -> Liveness {
    match start_ticks(pid) {
        Ok(None) => return Liveness::Dead,
        Ok(Some(t)) if recorded_start != 0 && t != recorded_start => return Liveness::Reused,
        _ => {}
    }
    match fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(maps) if !maps_inode(&maps, dev, ino) => Liveness::Unmapped,
        // Unreadable maps (another user, hidepid): trust PID and start time.
        _ => Liveness::Alive,
    }
}

/// True when a line of /proc/PID/maps maps inode `ino` of device `dev`.
pub fn maps_inode(maps: &str, dev: u64, ino: u64) -> bool {
    let (major, minor) = (
        libc::major(dev as libc::dev_t),
        libc::minor(dev as libc::dev_t),
    );
    maps.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (Some(d), Some(i)) = (f.nth(3), f.next()) else {
            return false;
        };
        let Some((ma, mi)) = d.split_once(':') else {
            return false;
        };
        i.parse::<u64>().ok() == Some(ino)
            && u32::from_str_radix(ma, 16).ok() == Some(major)
            && u32::from_str_radix(mi, 16).ok() == Some(minor)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_inode_in_maps() {
        let dev = libc::makedev(0, 0x1a) as u64;
        let maps = "7f00-7f10 rw-s 00000000 00:1a 4242 /dev/shm/poolside-1-2\n\
                    7f10-7f20 r-xp 00000000 08:01 4242 /usr/lib/x\n";
        assert!(maps_inode(maps, dev, 4242));
        assert!(!maps_inode(maps, dev, 4243));
        assert!(!maps_inode(maps, libc::makedev(8, 2) as u64, 4242));
    }

    #[test]
    fn tells_dead_and_reused_processes() {
        let me = std::process::id();
        let t = start_ticks(me).unwrap().unwrap();
        // A file we do not map.
        assert_eq!(check(me, t, 0, u64::MAX), Liveness::Unmapped);
        assert_eq!(check(me, t + 1, 0, 0), Liveness::Reused);
        // PIDs are below 2^22 on Linux.
        assert_eq!(check(u32::MAX - 1, t, 0, 0), Liveness::Dead);
    }
}
