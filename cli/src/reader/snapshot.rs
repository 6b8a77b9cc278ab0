//! A consistent copy of one process's statistics.

use poolside::stats::layout::{DeviceSection, HostSection};
use std::path::PathBuf;

/// One process's statistics as read from its file. Each section is internally
/// consistent (read under its seqlock); sections may be from slightly different instants.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub path: PathBuf,
    pub pid: u32,
    pub uid: u32,
    pub start_ticks: u64,
    pub start_unix_ns: u64,
    /// Writers present (`WRITER_HOST`, `WRITER_CUDA` bits).
    pub writers: u32,
    /// Small size classes; slots `num_classes` and `num_classes + 1` are large and huge.
    pub num_classes: u32,
    /// Arguments, lossily decoded; possibly truncated.
    pub cmdline: Vec<String>,
    pub host: HostSection,
    /// Devices whose `present` flag is set.
    pub devices: Vec<DeviceSection>,
}

impl Snapshot {
    /// Splits a NUL-separated command line.
    pub fn split_cmdline(b: &[u8]) -> Vec<String> {
        b.split(|&c| c == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    /// The command line joined by spaces.
    pub fn command(&self) -> String {
        self.cmdline.join(" ")
    }
}
