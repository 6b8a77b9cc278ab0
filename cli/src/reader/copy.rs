//! Consistent copies of a validated stats file's header and sections, read with pread(2).
//!
//! Writers map the file and update each section under its seqlock (see
//! `poolside::stats::seqlock`). The reader does not map it: a file that its owner
//! truncates while a mapping of it is read raises SIGBUS, which would kill `poolside stat`,
//! `top` or `export`; pread gives an error instead. A section is read as its sequence
//! number, then the whole section, then the sequence number again, each a system call that
//! completes before the next starts; the copy is consistent when the three agree and are
//! even, since a writer makes the number odd before it touches the section and moves it on
//! when it leaves.

use super::snapshot::Snapshot;
use poolside::stats::layout::{DeviceSection, HostSection, StatsFile, CMDLINE_BYTES, MAX_DEVICES};
use std::fs::File;
use std::io;
use std::mem::{offset_of, size_of, MaybeUninit};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// Copies tried before a pause, and pauses (1 ms) before giving up on a section whose
/// writer stays inside it (one that died there): about 0.1 s in all.
const TRIES: usize = 100;
const ROUNDS: usize = 100;

/// A section of the file: copied bytewise from it.
///
/// # Safety
/// Implementors are `repr(C)`, made of integers only (so any bytes are a valid value and
/// there is no padding), and start with their `u64` sequence number.
unsafe trait Section: Copy {}
// SAFETY: both are repr(C) structs of u64, u32 and i32 fields, sequence first (layout.rs).
unsafe impl Section for HostSection {}
// SAFETY: as above.
unsafe impl Section for DeviceSection {}

fn u64_at(file: &File, off: u64) -> io::Result<u64> {
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, off)?;
    Ok(u64::from_ne_bytes(b))
}

/// A consistent copy of the section at `off`; `Ok(None)` when a writer stayed inside it.
fn section<T: Section>(file: &File, off: usize) -> io::Result<Option<T>> {
    let off = off as u64;
    for _ in 0..ROUNDS {
        for _ in 0..TRIES {
            let before = u64_at(file, off)?;
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut v = MaybeUninit::<T>::zeroed();
            // SAFETY: v holds size_of::<T>() bytes, all initialised (zeroed).
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, size_of::<T>())
            };
            file.read_exact_at(bytes, off)?;
            let copied = u64::from_ne_bytes(bytes[..8].try_into().unwrap());
            if copied == before && u64_at(file, off)? == before {
                // SAFETY: T is made of integers (Section): the bytes read are a valid T.
                return Ok(Some(unsafe { v.assume_init() }));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(None)
}

fn u32_in(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_in(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

/// Copies the header and sections of `file` (already checked: magic, version, sizes).
/// `Ok(None)` when a writer stayed inside a section; an error when the file shrank or
/// could not be read meanwhile.
pub fn snapshot(file: &File, path: &Path) -> io::Result<Option<Snapshot>> {
    // The header: stable once the magic is written, except `writers` (one u32).
    let mut h = vec![0u8; offset_of!(StatsFile, host)];
    file.read_exact_at(&mut h, 0)?;
    let Some(host) = section::<HostSection>(file, offset_of!(StatsFile, host))? else {
        return Ok(None);
    };
    let mut devices = Vec::new();
    for d in 0..MAX_DEVICES {
        let off = offset_of!(StatsFile, devices) + d * size_of::<DeviceSection>();
        let Some(s) = section::<DeviceSection>(file, off)? else {
            return Ok(None);
        };
        if s.present != 0 {
            devices.push(s);
        }
    }
    let at = offset_of!(StatsFile, cmdline);
    let cmdline = &h[at..at + CMDLINE_BYTES];
    let len = (u32_in(&h, offset_of!(StatsFile, cmdline_len)) as usize).min(cmdline.len());
    Ok(Some(Snapshot {
        path: path.to_path_buf(),
        pid: u32_in(&h, offset_of!(StatsFile, pid)),
        uid: u32_in(&h, offset_of!(StatsFile, uid)),
        start_ticks: u64_in(&h, offset_of!(StatsFile, start_ticks)),
        start_unix_ns: u64_in(&h, offset_of!(StatsFile, start_unix_ns)),
        writers: u32_in(&h, offset_of!(StatsFile, writers)),
        num_classes: u32_in(&h, offset_of!(StatsFile, num_classes)),
        cmdline: Snapshot::split_cmdline(&cmdline[..len]),
        host,
        devices,
    }))
}
