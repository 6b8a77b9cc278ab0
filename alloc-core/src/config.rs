//! Configuration from `POOLSIDE_CONF=key:value,key:value`, read without allocating.
//!
//! Every component of poolside reads the same variable. [`KNOWN_KEYS`] lists the keys of
//! all of them, so that the host engine can warn once about a key nobody knows; each
//! component warns about malformed values of its own keys. Warnings never stop the
//! program: the setting keeps its earlier value (its default unless an earlier entry set it).
//!
//! A process prints at most one warning line per variable and component, however many bad
//! entries the variable holds, however many threads start and however often it is parsed
//! ([`HostConfig::from_env`] warns on its first call only). The line names the first
//! [`NAMED_PROBLEMS`] problems and counts the rest; a key or value longer than
//! [`SHOWN_BYTES`] is cut, with its length given, and control characters are shown as `?`,
//! so that a hostile value can neither flood stderr nor split the line.

use crate::sys;
use core::sync::atomic::{AtomicBool, Ordering};

/// Keys any poolside component understands.
pub const KNOWN_KEYS: &[&[u8]] = &[
    // host engine
    b"purge_delay_ms",
    b"huge_pages",
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

/// Longest key or value a warning shows; a longer one is cut and its length given.
pub const SHOWN_BYTES: usize = 64;
/// Problems a warning line names; the others are counted ("and N more").
pub const NAMED_PROBLEMS: usize = 3;
/// Bytes of a warning line's list of problems (enough for [`NAMED_PROBLEMS`] cut items
/// with their wording; anything beyond is dropped).
const PROBLEM_TEXT_BYTES: usize = 1024;
/// Bytes of a whole warning line: the list, the prefix, the variable and the count.
const LINE_BYTES: usize = PROBLEM_TEXT_BYTES + 128;

/// `item` cut to at most [`SHOWN_BYTES`] at a UTF-8 character boundary, and whether it
/// was cut.
pub fn cut(item: &[u8]) -> (&[u8], bool) {
    if item.len() <= SHOWN_BYTES {
        return (item, false);
    }
    let mut end = SHOWN_BYTES;
    // Back off over continuation bytes (10xxxxxx) so that a character is not split.
    while end > 0 && item[end] & 0xc0 == 0x80 {
        end -= 1;
    }
    (&item[..end], true)
}

/// The problems found in one configuration variable, kept for a single warning line in a
/// fixed buffer (no allocation: the host engine collects them inside the first malloc).
pub struct Problems {
    text: [u8; PROBLEM_TEXT_BYTES],
    len: usize,
    count: usize,
}

impl Default for Problems {
    fn default() -> Self {
        Problems::new()
    }
}

impl Problems {
    /// No problems yet.
    pub const fn new() -> Problems {
        Problems {
            text: [0; PROBLEM_TEXT_BYTES],
            len: 0,
            count: 0,
        }
    }

    /// Problems recorded, named or counted.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The named problems, separated by `; ` (without the line's prefix and count).
    pub fn text(&self) -> &[u8] {
        &self.text[..self.len]
    }

    /// Records `WHAT 'KEY'` or, with a value, `WHAT 'KEY': 'VALUE'`. Only the first
    /// [`NAMED_PROBLEMS`] are written out; later ones are counted.
    pub fn add(&mut self, what: &[u8], key: &[u8], value: Option<&[u8]>) {
        self.count += 1;
        if self.count > NAMED_PROBLEMS {
            return;
        }
        if self.count > 1 {
            self.push(b"; ");
        }
        self.push(what);
        self.push(b" ");
        self.push_quoted(key);
        if let Some(v) = value {
            self.push(b": ");
            self.push_quoted(v);
        }
    }

    /// Records a message another component formatted (its items already cut with
    /// [`cut`]); control characters are shown as `?`. Counted like [`Problems::add`].
    pub fn add_text(&mut self, msg: &[u8]) {
        self.count += 1;
        if self.count > NAMED_PROBLEMS {
            return;
        }
        if self.count > 1 {
            self.push(b"; ");
        }
        self.push_sanitized(msg);
    }

    fn push(&mut self, b: &[u8]) {
        push_into(&mut self.text, &mut self.len, b);
    }

    fn push_sanitized(&mut self, b: &[u8]) {
        for &c in b {
            self.push(&[if c < 0x20 || c == 0x7f { b'?' } else { c }]);
        }
    }

    /// Pushes a user-supplied item in quotes, control characters as `?`; one longer than
    /// [`SHOWN_BYTES`] as `'its start...' (N bytes)`.
    fn push_quoted(&mut self, item: &[u8]) {
        let (shown, was_cut) = cut(item);
        self.push(b"'");
        self.push_sanitized(shown);
        if was_cut {
            let mut num = [0u8; 20];
            self.push(b"...' (");
            self.push(sys::fmt_u64(item.len() as u64, &mut num));
            self.push(b" bytes)");
        } else {
            self.push(b"'");
        }
    }

    /// Writes the single line `poolside: warning: VAR: P1; P2; P3; and N more (ignored)`
    /// to stderr with one raw write(2) (so that processes sharing stderr do not interleave
    /// its pieces); nothing when there are no problems.
    pub fn emit(&self, var: &[u8]) {
        if self.count == 0 {
            return;
        }
        let mut line = [0u8; LINE_BYTES];
        let mut len = 0;
        let mut num = [0u8; 20];
        let more = self.count.saturating_sub(NAMED_PROBLEMS);
        for part in [b"poolside: warning: ", var, b": ", self.text()] {
            push_into(&mut line, &mut len, part);
        }
        if more > 0 {
            push_into(&mut line, &mut len, b"; and ");
            push_into(&mut line, &mut len, sys::fmt_u64(more as u64, &mut num));
            push_into(&mut line, &mut len, b" more");
        }
        // The ending always fits: it replaces the tail of an overlong line.
        const END: &[u8] = b" (ignored)\n";
        len = len.min(LINE_BYTES - END.len());
        push_into(&mut line, &mut len, END);
        sys::write_stderr(&[&line[..len]]);
    }
}

/// Appends what fits of `b` to `buf[..*len]`.
fn push_into(buf: &mut [u8], len: &mut usize, b: &[u8]) {
    let n = b.len().min(buf.len() - *len);
    buf[*len..*len + n].copy_from_slice(&b[..n]);
    *len += n;
}

/// Whether the host pool's segments use transparent huge pages (`huge_pages`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugePages {
    /// As the kernel's THP mode allows: segments are advised `MADV_HUGEPAGE` when the mode
    /// is `madvise`, left alone when it is `always` (they get huge pages anyway) or `never`.
    Auto,
    /// No huge pages, even when the kernel's mode is `always` (`MADV_NOHUGEPAGE`).
    Never,
    /// Segments are advised `MADV_HUGEPAGE` whatever the mode (nothing when it is `never`).
    Always,
}

/// Parses `auto`, `never` or `always` (any case).
pub fn parse_huge_pages(v: &[u8]) -> Option<HugePages> {
    let mut buf = [0u8; 6];
    if v.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(v) {
        *d = s.to_ascii_lowercase();
    }
    match &buf[..v.len()] {
        b"auto" => Some(HugePages::Auto),
        b"never" => Some(HugePages::Never),
        b"always" => Some(HugePages::Always),
        _ => None,
    }
}

/// Settings of the host engine.
#[derive(Clone, Copy)]
pub struct HostConfig {
    /// Delay before freed pages are returned to the OS.
    pub purge_delay_ms: u64,
    /// Transparent huge pages for the host pool's segments.
    pub huge_pages: HugePages,
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
            huge_pages: HugePages::Auto,
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

    /// Applies a configuration string; returns the unknown keys and bad values, which
    /// leave the settings as they were. Prints nothing.
    #[must_use]
    pub fn apply(&mut self, conf: &[u8]) -> Problems {
        let mut p = Problems::new();
        for (key, value) in entries(conf) {
            match key {
                b"purge_delay_ms" => match parse_u64(value) {
                    Some(v) => self.purge_delay_ms = v,
                    None => p.add(b"bad value for", key, Some(value)),
                },
                b"huge_pages" => match parse_huge_pages(value) {
                    Some(v) => self.huge_pages = v,
                    None => p.add(b"bad value for", key, Some(value)),
                },
                b"stats" => match parse_bool(value) {
                    Some(v) => self.stats = v,
                    None => p.add(b"bad value for", key, Some(value)),
                },
                b"verbose" => match parse_bool(value) {
                    Some(v) => self.verbose = v,
                    None => p.add(b"bad value for", key, Some(value)),
                },
                b"stats_dir" => {
                    if value.is_empty() || value.len() >= self.stats_dir.len() || value[0] != b'/' {
                        p.add(
                            b"stats_dir must be an absolute path under 256 bytes, not",
                            value,
                            None,
                        );
                    } else {
                        self.stats_dir = [0; 256];
                        self.stats_dir[..value.len()].copy_from_slice(value);
                        self.stats_dir_len = value.len();
                    }
                }
                k if KNOWN_KEYS.contains(&k) => {}
                _ => p.add(b"unknown key", key, None),
            }
        }
        p
    }

    /// Reads `POOLSIDE_CONF` from the environment. The first call in this copy of the
    /// engine prints one warning line about its problems (see the module docs); later calls
    /// print nothing.
    pub fn from_env() -> HostConfig {
        HostConfig::from_env_warning(true)
    }

    /// Reads `POOLSIDE_CONF`; with `warn` false never prints (for a component of a process
    /// in which another copy of the engine has already warned).
    pub fn from_env_warning(warn: bool) -> HostConfig {
        /// Set once this copy printed (or chose not to print) its warning.
        static WARNED: AtomicBool = AtomicBool::new(false);
        let mut c = HostConfig::DEFAULT;
        if let Some(conf) = sys::getenv(b"POOLSIDE_CONF\0") {
            let problems = c.apply(conf);
            if warn && problems.count() > 0 && !WARNED.swap(true, Ordering::Relaxed) {
                problems.emit(b"POOLSIDE_CONF");
            }
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
        let p =
            c.apply(b"purge_delay_ms:250,stats:off,stats_dir:/tmp/x,bogus:1,purge_delay_ms:abc");
        assert_eq!(c.purge_delay_ms, 250);
        assert!(!c.stats);
        assert_eq!(c.stats_dir(), b"/tmp/x");
        assert_eq!(p.count(), 2);
        assert_eq!(
            p.text(),
            b"unknown key 'bogus'; bad value for 'purge_delay_ms': 'abc'"
        );
        assert_eq!(c.apply(b"stats_dir:relative").count(), 1);
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
        assert_eq!(parse_huge_pages(b"Always"), Some(HugePages::Always));
        assert_eq!(parse_huge_pages(b"never"), Some(HugePages::Never));
        assert_eq!(parse_huge_pages(b"AUTO"), Some(HugePages::Auto));
        assert_eq!(parse_huge_pages(b"always!"), None);
        assert_eq!(parse_huge_pages(b"madvise"), None);
    }
}
