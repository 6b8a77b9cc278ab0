//! Configuration from `POOLSIDE_CONF=key:value,key:value`, read without allocating.
//!
//! Every component of poolside reads the same variable. [`KNOWN_KEYS`] lists the keys of
//! all of them, so that the host engine can warn once about a key nobody knows; each
//! component warns about malformed values of its own keys. Warnings are one line on stderr
//! and never stop the program: the setting keeps its default.

use crate::sys;

/// Keys any poolside component understands.
pub const KNOWN_KEYS: &[&[u8]] = &[
    // host engine
    b"purge_delay_ms",
    b"stats",
    b"stats_dir",
    b"verbose",
    // CUDA plugin (PyTorch's names where they exist)
    b"expandable_segments",
    b"max_split_size_mb",
    b"garbage_collection_threshold",
    b"roundup_power2_divisions",
    b"per_process_memory_fraction",
    b"backend",
    b"release_lock_on_cudamalloc",
    b"pinned_use_cuda_host_register",
    b"pinned_num_register_threads",
    b"device_capacity_mb",
];

/// Pairs of `key:value` in a configuration string. An entry without `:` yields an empty
/// value; empty entries are skipped.
pub struct Entries<'a> {
    rest: &'a [u8],
}

/// Iterates over `conf`'s entries.
pub fn entries(conf: &[u8]) -> Entries<'_> {
    Entries { rest: conf }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', r @ ..] = s {
        s = r;
    }
    while let [r @ .., b' ' | b'\t'] = s {
        s = r;
    }
    s
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let end = self
                .rest
                .iter()
                .position(|&b| b == b',')
                .unwrap_or(self.rest.len());
            let entry = &self.rest[..end];
            self.rest = if end < self.rest.len() {
                &self.rest[end + 1..]
            } else {
                &[]
            };
            let entry = trim(entry);
            if entry.is_empty() {
                continue;
            }
            return Some(match entry.iter().position(|&b| b == b':') {
                Some(i) => (trim(&entry[..i]), trim(&entry[i + 1..])),
                None => (entry, &[][..]),
            });
        }
    }
}

/// Parses a decimal integer.
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
    }
    Some(n)
}

/// Parses true/false, 1/0, on/off, yes/no (any case).
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    let mut buf = [0u8; 5];
    if v.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(v) {
        *d = s.to_ascii_lowercase();
    }
    match &buf[..v.len()] {
        b"true" | b"1" | b"on" | b"yes" => Some(true),
        b"false" | b"0" | b"off" | b"no" => Some(false),
        _ => None,
    }
}

/// Parses a decimal number such as `0.8`.
pub fn parse_f64(v: &[u8]) -> Option<f64> {
    core::str::from_utf8(v).ok()?.parse().ok()
}

/// Prints `poolside: warning: VAR: WHAT 'KEY'` on stderr.
pub fn warn(var: &[u8], what: &[u8], key: &[u8]) {
    sys::write_stderr(&[
        b"poolside: warning: ",
        var,
        b": ",
        what,
        b" '",
        key,
        b"' (ignored)\n",
    ]);
}

/// Settings of the host engine.
#[derive(Clone, Copy)]
pub struct HostConfig {
    /// Delay before freed pages are returned to the OS.
    pub purge_delay_ms: u64,
    /// Publish statistics in a shared-memory file.
    pub stats: bool,
    /// Directory of the stats file (default /dev/shm), NUL-terminated in `stats_dir`.
    pub stats_dir: [u8; 256],
    pub stats_dir_len: usize,
    /// Print a summary of the pool at exit.
    pub verbose: bool,
}

impl HostConfig {
    /// Defaults: mimalloc's purge delay, stats on, /dev/shm.
    pub const DEFAULT: HostConfig = {
        let mut dir = [0u8; 256];
        let d = b"/dev/shm";
        let mut i = 0;
        while i < d.len() {
            dir[i] = d[i];
            i += 1;
        }
        HostConfig {
            purge_delay_ms: 10,
            stats: true,
            stats_dir: dir,
            stats_dir_len: 8,
            verbose: false,
        }
    };

    /// The stats directory without its NUL.
    pub fn stats_dir(&self) -> &[u8] {
        &self.stats_dir[..self.stats_dir_len]
    }

    /// Applies a configuration string, warning about unknown keys and bad values.
    pub fn apply(&mut self, conf: &[u8]) {
        const VAR: &[u8] = b"POOLSIDE_CONF";
        for (key, value) in entries(conf) {
            match key {
                b"purge_delay_ms" => match parse_u64(value) {
                    Some(v) => self.purge_delay_ms = v,
                    None => warn(VAR, b"bad value for", key),
                },
                b"stats" => match parse_bool(value) {
                    Some(v) => self.stats = v,
                    None => warn(VAR, b"bad value for", key),
                },
                b"verbose" => match parse_bool(value) {
                    Some(v) => self.verbose = v,
                    None => warn(VAR, b"bad value for", key),
                },
                b"stats_dir" => {
                    if value.is_empty() || value.len() >= self.stats_dir.len() || value[0] != b'/' {
                        warn(
                            VAR,
                            b"stats_dir must be an absolute path under 256 bytes, got",
                            value,
                        );
                    } else {
                        self.stats_dir = [0; 256];
                        self.stats_dir[..value.len()].copy_from_slice(value);
                        self.stats_dir_len = value.len();
                    }
                }
                k if KNOWN_KEYS.contains(&k) => {}
                _ => warn(VAR, b"unknown key", key),
            }
        }
    }

    /// Reads `POOLSIDE_CONF` from the environment.
    pub fn from_env() -> HostConfig {
        let mut c = HostConfig::DEFAULT;
        if let Some(conf) = sys::getenv(b"POOLSIDE_CONF\0") {
            c.apply(conf);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_entries() {
        let v: std::vec::Vec<_> = entries(b" a:1 ,, b : x,c").collect();
        assert_eq!(v, [(&b"a"[..], &b"1"[..]), (b"b", b"x"), (b"c", b"")]);
    }

    #[test]
    fn applies_known_keys_and_survives_bad_ones() {
        let mut c = HostConfig::DEFAULT;
        c.apply(b"purge_delay_ms:250,stats:off,stats_dir:/tmp/x,bogus:1,purge_delay_ms:abc");
        assert_eq!(c.purge_delay_ms, 250);
        assert!(!c.stats);
        assert_eq!(c.stats_dir(), b"/tmp/x");
        c.apply(b"stats_dir:relative");
        assert_eq!(c.stats_dir(), b"/tmp/x");
    }

    #[test]
    fn parses_values() {
        assert_eq!(parse_u64(b"123"), Some(123));
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
        assert_eq!(parse_bool(b"TRUE"), Some(true));
        assert_eq!(parse_bool(b"maybe"), None);
        assert_eq!(parse_f64(b"0.5"), Some(0.5));
    }
}
