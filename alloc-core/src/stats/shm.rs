//! Where this process's statistics live.
//!
//! For now the sections live in process memory; publishing them in a file under /dev/shm
//! is the statistics issue's work and replaces the body of `file()`.

use super::layout::{DeviceSection, HostSection, StatsFile, MAX_DEVICES};
use core::cell::UnsafeCell;

struct Local(UnsafeCell<core::mem::MaybeUninit<StatsFile>>);
// SAFETY: all access goes through raw pointers under the seqlock protocol.
unsafe impl Sync for Local {}
// Zero-initialised (in .bss): an all-zero StatsFile is a valid, empty one.
static LOCAL: Local = Local(UnsafeCell::new(core::mem::MaybeUninit::zeroed()));

/// The process's stats file (never null).
pub fn file() -> *mut StatsFile {
    LOCAL.0.get() as *mut StatsFile
}

/// The host section, for the engine's folds.
pub fn host_section() -> *mut HostSection {
    // SAFETY: file() is valid for the life of the process.
    unsafe { core::ptr::addr_of_mut!((*file()).host) }
}

/// The section of device `dev`, or null when `dev` is out of range.
pub fn device_section(dev: usize) -> *mut DeviceSection {
    if dev >= MAX_DEVICES {
        return core::ptr::null_mut();
    }
    // SAFETY: dev is in range; file() is valid for the life of the process.
    unsafe { core::ptr::addr_of_mut!((*file()).devices[dev]) }
}

/// Opens the stats file for this process (to be implemented by the stats work).
pub fn open(_cfg: &crate::config::HostConfig, _writer: u32) {}

/// Called in the child after fork (to be implemented by the stats work).
pub fn after_fork_child() {}
