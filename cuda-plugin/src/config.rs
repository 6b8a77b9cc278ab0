//! The plugin's settings, from `PYTORCH_CUDA_ALLOC_CONF` and then `POOLSIDE_CONF` (so
//! poolside's own variable wins where both set a key).
//!
//! Keys (PyTorch's meaning unless said otherwise):
//! - `expandable_segments:true|false` (default true here): large blocks come from one
//!   virtual reservation per stream, mapped on demand; false uses cuMemAlloc segments;
//! - `max_split_size_mb:N`: cached blocks of N MiB or more are never split (cuMemAlloc
//!   segments only: an expandable segment has no fixed blocks to protect);
//! - `garbage_collection_threshold:F` (0 < F < 1): with a memory fraction set, cached
//!   memory is released before the pool grows past F of the allowed memory;
//! - `roundup_power2_divisions:N` or `[256:1,512:2,>:4]`: sizes are rounded up to N
//!   divisions of their power-of-two interval; the bracket form sets N per interval,
//!   keyed by the interval's start in MiB (a power of two); the first entry also covers
//!   all smaller sizes, `>` all larger ones;
//! - `per_process_memory_fraction:F` (0 < F <= 1): cap on reserved memory;
//! - `device_capacity_mb:N`: memory of a simulated device (poolside only).
//!
//! Keys PyTorch knows that have no effect in poolside are accepted with a warning that
//! says so: `release_lock_on_cudamalloc:True` (the pool keeps its lock around driver
//! calls: they change the structures the lock guards), `pinned_use_cuda_host_register`
//! and `pinned_num_register_threads` (pinned host memory is PyTorch's own host
//! allocator's, never poolside's; PyTorch still reads them from
//! `PYTORCH_CUDA_ALLOC_CONF`), and `max_split_size_mb` while expandable segments are on.
//!
//! Unknown keys in `PYTORCH_CUDA_ALLOC_CONF` get a warning here (the host engine warns
//! about those in `POOLSIDE_CONF`, or this plugin when libpoolside.so is not loaded); a
//! bad value of one of these keys gets a warning and the earlier value stays. Warnings
//! come once per process, one line per variable (see [`PluginConfig::from_env`]).

use poolside::config::{cut, parse_bool, parse_f64, parse_u64, HostConfig, Problems, KNOWN_KEYS};
use std::sync::atomic::{AtomicBool, Ordering};

/// Intervals of `roundup_power2_divisions`, as in PyTorch: index 0 for sizes up to
/// 1 MiB, then one per power of two.
pub const ROUNDUP_INTERVALS: usize = 16;

/// The plugin's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginConfig {
    pub expandable_segments: bool,
    /// Bytes; `usize::MAX` for no limit.
    pub max_split_size: usize,
    /// 0 for off.
    pub gc_threshold: f64,
    /// Divisions per interval (0 or 1 = round to 512 B only).
    pub roundup_divisions: [u32; ROUNDUP_INTERVALS],
    /// 0 for none.
    pub memory_fraction: f64,
    /// Bytes of a simulated device.
    pub sim_capacity: u64,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            expandable_segments: true,
            max_split_size: usize::MAX,
            gc_threshold: 0.0,
            roundup_divisions: [0; ROUNDUP_INTERVALS],
            memory_fraction: 0.0,
            sim_capacity: 16 << 30,
        }
    }
}

/// Splits `a:1,b:[x:1,y:2]` at the commas outside brackets.
fn entries(conf: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut depth = 0i32;
    let mut start = 0;
    let mut out = Vec::new();
    for (i, ch) in conf.char_indices() {
        match ch {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth <= 0 => {
                out.push(&conf[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&conf[start..]);
    out.into_iter().filter_map(|e| {
        let e = e.trim();
        if e.is_empty() {
            return None;
        }
        Some(match e.split_once(':') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (e, ""),
        })
    })
}

/// A key or value for a warning, in quotes: cut to `SHOWN_BYTES` with its length given,
/// control characters as `?`, so that a hostile value can neither flood nor split the line.
pub fn quoted(v: &str) -> String {
    let (shown, was_cut) = cut(v.as_bytes());
    let s: String = String::from_utf8_lossy(shown)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if was_cut {
        format!("'{s}...' ({} bytes)", v.len())
    } else {
        format!("'{s}'")
    }
}

impl PluginConfig {
    /// Settings from the environment. The first call in the process prints at most one
    /// warning line per variable (the first few problems named, the rest counted); later
    /// calls print nothing. A value that is not UTF-8 is read lossily, so its bad entries
    /// are warned about rather than the whole variable silently dropped.
    ///
    /// Unknown keys and the host engine's keys in `POOLSIDE_CONF` are the host engine's to
    /// warn about; when libpoolside.so is not in the process, this line reports them too.
    pub fn from_env() -> PluginConfig {
        static WARNED: AtomicBool = AtomicBool::new(false);
        let warn_now = !WARNED.swap(true, Ordering::Relaxed);
        let mut c = PluginConfig::default();
        let vars = [("PYTORCH_CUDA_ALLOC_CONF", true), ("POOLSIDE_CONF", false)];
        let mut lines = Vec::new();
        // The variable that set max_split_size_mb last (its line gets the note).
        let mut split_from = None;
        for (var, warn_unknown) in vars {
            let Some(v) = std::env::var_os(var) else {
                continue;
            };
            let v = v.to_string_lossy();
            let mut problems = if var == "POOLSIDE_CONF" && !host_engine_loaded() {
                let mut host = HostConfig::DEFAULT;
                host.apply(v.as_bytes())
            } else {
                Problems::new()
            };
            let split = c.max_split_size;
            for m in c.apply(var, &v, warn_unknown) {
                problems.add_text(m.as_bytes());
            }
            if c.max_split_size != split {
                split_from = Some(lines.len());
            }
            lines.push((var, problems));
        }
        // Known only once both variables are read: POOLSIDE_CONF may turn them off.
        if let (Some(i), Some(note)) = (split_from, c.split_size_note()) {
            lines[i].1.add_text(note.as_bytes());
        }
        if warn_now {
            for (var, problems) in &lines {
                problems.emit(var.as_bytes());
            }
        }
        c
    }

    /// Why `max_split_size_mb` does nothing, when it is set while expandable segments
    /// are on (an expandable segment has no fixed blocks to protect from splitting).
    pub fn split_size_note(&self) -> Option<&'static str> {
        (self.expandable_segments && self.max_split_size != usize::MAX).then_some(
            "'max_split_size_mb' has no effect with expandable segments (poolside's default): set expandable_segments:false for it to apply",
        )
    }

    /// Applies one variable's value (`var` names it). Returns its problems, one message
    /// each, without printing them; bad entries leave the settings as they were.
    pub fn apply(&mut self, var: &str, conf: &str, warn_unknown: bool) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut bad = |msg: String| warnings.push(msg);
        for (key, value) in entries(conf) {
            let shown = quoted(value);
            match key {
                "expandable_segments" => match parse_bool(value.as_bytes()) {
                    Some(v) => self.expandable_segments = v,
                    None => bad(format!("bad value for 'expandable_segments': {shown}, expected true or false")),
                },
                "max_split_size_mb" => match parse_u64(value.as_bytes()) {
                    Some(v) if v > 20 => self.max_split_size = (v as usize).saturating_mul(1 << 20),
                    _ => bad(format!("bad value for 'max_split_size_mb': {shown}, expected an integer above 20")),
                },
                "garbage_collection_threshold" => match parse_f64(value.as_bytes()) {
                    Some(v) if v > 0.0 && v < 1.0 => self.gc_threshold = v,
                    _ => bad(format!("bad value for 'garbage_collection_threshold': {shown}, expected a number between 0 and 1")),
                },
                "per_process_memory_fraction" => match parse_f64(value.as_bytes()) {
                    Some(v) if v > 0.0 && v <= 1.0 => self.memory_fraction = v,
                    _ => bad(format!("bad value for 'per_process_memory_fraction': {shown}, expected a number in (0, 1]")),
                },
                "device_capacity_mb" => match parse_u64(value.as_bytes()) {
                    // Checked: a shift would drop the high bits of 2^44 MiB and more.
                    Some(v) if v > 0 && v <= u64::MAX >> 20 => self.sim_capacity = v << 20,
                    _ => bad(format!("bad value for 'device_capacity_mb': {shown}, expected a positive integer below 2^44")),
                },
                "roundup_power2_divisions" => match parse_divisions(value) {
                    Some(d) => self.roundup_divisions = d,
                    None => bad(format!("bad value for 'roundup_power2_divisions': {shown}, expected a power of two or [MB:N,...,>:N]")),
                },
                "release_lock_on_cudamalloc" => match parse_bool(value.as_bytes()) {
                    Some(false) => {}
                    Some(true) => bad("'release_lock_on_cudamalloc' has no effect in poolside: the pool keeps its lock around driver calls".into()),
                    None => bad(format!("bad value for 'release_lock_on_cudamalloc': {shown}, expected true or false")),
                },
                "pinned_use_cuda_host_register" | "pinned_num_register_threads" => {
                    let who = if var == "PYTORCH_CUDA_ALLOC_CONF" {
                        "PyTorch's own pinned-memory allocator reads it"
                    } else {
                        "it has no effect here"
                    };
                    bad(format!("'{key}' concerns pinned host memory, which poolside does not allocate: {who}"));
                }
                "backend" => {
                    if value != "native" {
                        bad(format!("'backend' {shown} does not apply: poolside is the allocator"));
                    }
                }
                k if KNOWN_KEYS.contains(&k.as_bytes()) => {}
                k => {
                    if warn_unknown {
                        bad(format!("unknown key {}", quoted(k)));
                    }
                }
            }
        }
        warnings
    }
}

/// The host settings for this component's stats file, read quietly: their problems are
/// reported once, by the host engine or by [`PluginConfig::from_env`].
pub fn host_config() -> HostConfig {
    HostConfig::from_env_warning(false)
}

/// Whether libpoolside.so's host engine is in the process (it warns about `POOLSIDE_CONF`).
fn host_engine_loaded() -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other precondition.
    !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"poolside_malloc".as_ptr()) }.is_null()
}

/// A division count: 0, 1, or a power of two.
fn divisions(v: &str) -> Option<u32> {
    let n = parse_u64(v.as_bytes())?;
    if n > 1 && !n.is_power_of_two() || n > 1 << 16 {
        return None;
    }
    Some(n as u32)
}

/// `N` or `[MB:N,...,>:N]` into per-interval division counts.
fn parse_divisions(v: &str) -> Option<[u32; ROUNDUP_INTERVALS]> {
    let mut out = [0u32; ROUNDUP_INTERVALS];
    let Some(inner) = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        out.fill(divisions(v)?);
        return Some(out);
    };
    let mut last: Option<usize> = None;
    for item in inner.split(',') {
        let (k, n) = item.split_once(':')?;
        let n = divisions(n.trim())?;
        let k = k.trim();
        if k == ">" {
            let from = last.map_or(0, |l| l + 1);
            out[from.min(ROUNDUP_INTERVALS)..].fill(n);
            continue;
        }
        let mb = parse_u64(k.as_bytes())?;
        if mb == 0 || !mb.is_power_of_two() {
            return None;
        }
        let index = (mb.trailing_zeros() as usize).min(ROUNDUP_INTERVALS - 1);
        let from = match last {
            None => 0,
            Some(l) if index > l => l + 1,
            Some(_) => return None,
        };
        out[from..=index].fill(n);
        last = Some(index);
    }
    Some(out)
}

impl PluginConfig {
    /// PyTorch's `round_size`: at least 512 B, a multiple of 512 B, and with divisions set
    /// for the size's interval, up to the next division of its power-of-two interval.
    ///
    /// `None` when the rounded size does not fit in a `usize` (a request within a few KiB
    /// of `SIZE_MAX`, or within a division step of it): such a request can never be
    /// served, and the caller reports it as out of memory. Every step is checked, so no
    /// size wraps to a small one.
    pub fn round_size(&self, size: usize) -> Option<usize> {
        const MIN: usize = 512;
        if size <= MIN {
            return Some(MIN);
        }
        let log = (usize::BITS - 1 - size.leading_zeros()) as usize;
        let index = log.saturating_sub(20).min(ROUNDUP_INTERVALS - 1);
        let div = self.roundup_divisions[index] as usize;
        if div > 1 && size > MIN.saturating_mul(div) {
            if size.is_power_of_two() {
                return Some(size);
            }
            let floor = 1usize << log;
            let step = floor / div;
            if step == 0 {
                return floor.checked_mul(2);
            }
            // `step` is a power of two (floor and div both are), so masking rounds up.
            return Some(size.checked_add(step - 1)? & !(step - 1));
        }
        size.div_ceil(MIN).checked_mul(MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pytorch_keys_and_warns_about_bad_ones() {
        let mut c = PluginConfig::default();
        let w = c.apply(
            "PYTORCH_CUDA_ALLOC_CONF",
            "expandable_segments:False,max_split_size_mb:128,garbage_collection_threshold:0.6,roundup_power2_divisions:[256:1,512:2,>:4],bogus:1,max_split_size_mb:x",
            true,
        );
        assert!(!c.expandable_segments);
        assert_eq!(c.max_split_size, 128 << 20);
        assert_eq!(c.gc_threshold, 0.6);
        assert_eq!(c.roundup_divisions[8], 1);
        assert_eq!(c.roundup_divisions[9], 2);
        assert_eq!(c.roundup_divisions[10], 4);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("unknown key 'bogus'"));
        assert!(w[1].contains("max_split_size_mb"));
    }

    #[test]
    fn keys_without_effect_are_accepted_with_a_warning_saying_so() {
        let mut c = PluginConfig::default();
        let w = c.apply(
            "PYTORCH_CUDA_ALLOC_CONF",
            "release_lock_on_cudamalloc:True,pinned_use_cuda_host_register:True,pinned_num_register_threads:8,max_split_size_mb:128",
            true,
        );
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("'release_lock_on_cudamalloc' has no effect"),
            "{w:?}"
        );
        assert!(w[1].contains("'pinned_use_cuda_host_register'") && w[1].contains("PyTorch's own"));
        assert!(w[2].contains("'pinned_num_register_threads'"));
        let note = c.split_size_note().unwrap();
        assert!(note.contains("no effect with expandable segments"));
        // Values that change nothing, or a setting that applies: no warning.
        let mut c = PluginConfig::default();
        let w = c.apply(
            "PYTORCH_CUDA_ALLOC_CONF",
            "release_lock_on_cudamalloc:False,expandable_segments:false,max_split_size_mb:128",
            true,
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.max_split_size, 128 << 20);
        assert_eq!(c.split_size_note(), None, "cuMemAlloc segments: it applies");
        let w = c.apply("POOLSIDE_CONF", "release_lock_on_cudamalloc:maybe", false);
        assert!(
            w[0].contains("bad value for 'release_lock_on_cudamalloc'"),
            "{w:?}"
        );
    }

    #[test]
    fn poolside_conf_does_not_warn_about_host_keys() {
        let mut c = PluginConfig::default();
        let w = c.apply(
            "POOLSIDE_CONF",
            "stats:off,device_capacity_mb:64,whatever:1",
            false,
        );
        assert!(w.is_empty());
        assert_eq!(c.sim_capacity, 64 << 20);
    }

    #[test]
    fn rounds_like_pytorch() {
        let mut c = PluginConfig::default();
        assert_eq!(c.round_size(0), Some(512));
        assert_eq!(c.round_size(513), Some(1024));
        assert_eq!(c.round_size(1_000_001), Some(1_000_448));
        c.apply("X", "roundup_power2_divisions:4", false);
        // 1.1 GiB lies in [1 GiB, 2 GiB): quarters of 256 MiB.
        assert_eq!(c.round_size((1 << 30) + 1), Some((1 << 30) + (256 << 20)));
        assert_eq!(c.round_size(1 << 30), Some(1 << 30));
        assert_eq!(c.round_size(1500), Some(1536));
        let w = c.apply("X", "roundup_power2_divisions:3", false);
        assert_eq!(w.len(), 1);
    }

    /// Issue 16: sizes near `SIZE_MAX` used to wrap to 0 (and then every such request
    /// shared one zero-size block). With and without divisions, every size either rounds
    /// to a value at least as large, a multiple of 512, or is refused.
    #[test]
    fn sizes_near_size_max_are_refused_not_wrapped() {
        for conf in [
            "",
            "roundup_power2_divisions:4",
            "roundup_power2_divisions:[>:16]",
        ] {
            let mut c = PluginConfig::default();
            c.apply("X", conf, false);
            assert_eq!(c.round_size(usize::MAX), None, "{conf}");
            assert_eq!(c.round_size(usize::MAX - 510), None, "{conf}");
            let mut refused = 0;
            for back in (0..(1usize << 24)).step_by(4093) {
                let size = usize::MAX - back;
                match c.round_size(size) {
                    None => refused += 1,
                    Some(r) => {
                        assert!(r >= size, "{conf}: {size:#x} -> {r:#x}");
                        assert_eq!(r % 512, 0, "{conf}: {size:#x} -> {r:#x}");
                    }
                }
            }
            assert!(refused > 0, "{conf}");
        }
        // The largest size that still rounds without divisions.
        let c = PluginConfig::default();
        let top = usize::MAX & !511;
        assert_eq!(c.round_size(top), Some(top));
        assert_eq!(c.round_size(top + 1), None);
    }
}
