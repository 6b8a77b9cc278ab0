//! What `poolside top` draws: a title with the keys, and the process table sorted by the
//! chosen column. Pure functions, so that the layout is testable without a terminal.

use crate::report::ProcessReport;
use crate::stat::format::table;
use crate::stat::table::{rows, HEADER, LEFT};
use std::cmp::Ordering;

/// Columns `top` sorts by, in the order the arrow keys visit them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Pid,
    Rss,
    Live,
    Reserved,
    Cached,
    HitRate,
    Fragmentation,
    Command,
}

impl SortKey {
    pub const ALL: [SortKey; 8] = [
        SortKey::Pid,
        SortKey::Rss,
        SortKey::Live,
        SortKey::Reserved,
        SortKey::Cached,
        SortKey::HitRate,
        SortKey::Fragmentation,
        SortKey::Command,
    ];

    /// The key that selects this column directly.
    pub fn from_char(c: char) -> Option<SortKey> {
        Some(match c {
            'p' => SortKey::Pid,
            'm' => SortKey::Rss,
            'l' => SortKey::Live,
            'v' => SortKey::Reserved,
            'a' => SortKey::Cached,
            'h' => SortKey::HitRate,
            'f' => SortKey::Fragmentation,
            'c' => SortKey::Command,
            _ => return None,
        })
    }

    /// The heading of this column in the table.
    pub fn heading(self) -> &'static str {
        match self {
            SortKey::Pid => "PID",
            SortKey::Rss => "RSS",
            SortKey::Live => "LIVE",
            SortKey::Reserved => "RESERVED",
            SortKey::Cached => "CACHED",
            SortKey::HitRate => "HIT",
            SortKey::Fragmentation => "FRAG",
            SortKey::Command => "COMMAND",
        }
    }

    /// The next (or previous) column.
    pub fn step(self, forward: bool) -> SortKey {
        let i = SortKey::ALL.iter().position(|&k| k == self).unwrap_or(0);
        let n = SortKey::ALL.len();
        SortKey::ALL[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }

    /// Whether large values come first by default.
    pub fn descending_by_default(self) -> bool {
        !matches!(self, SortKey::Pid | SortKey::Command)
    }
}

fn total_live(p: &ProcessReport) -> u64 {
    // Saturating: figures from a stats file may be absurd (see report::build).
    p.devices.iter().fold(p.host.live_bytes, |t, d| {
        t.saturating_add(d.allocated_bytes.current)
    })
}

fn total_reserved(p: &ProcessReport) -> u64 {
    p.devices.iter().fold(p.host.reserved_bytes, |t, d| {
        t.saturating_add(d.reserved_bytes.current)
    })
}

fn total_cached(p: &ProcessReport) -> u64 {
    p.devices
        .iter()
        .fold(p.host.cached_bytes, |t, d| t.saturating_add(d.cached_bytes))
}

/// The most fragmented pool of a process, host or device.
fn worst_fragmentation(p: &ProcessReport) -> Option<f64> {
    p.devices
        .iter()
        .filter_map(|d| d.fragmentation)
        .chain(p.host.fragmentation)
        .max_by(f64::total_cmp)
}

fn cmp_f(a: Option<f64>, b: Option<f64>) -> Ordering {
    a.unwrap_or(-1.0).total_cmp(&b.unwrap_or(-1.0))
}

/// Sorts processes by `key` (pools of a process stay together; devices add to live,
/// reserved and cached; fragmentation is the process's most fragmented pool), ties
/// broken by PID.
pub fn sort(ps: &mut [ProcessReport], key: SortKey, descending: bool) {
    ps.sort_by(|a, b| {
        let o = match key {
            SortKey::Pid => a.pid.cmp(&b.pid),
            SortKey::Rss => a.rss_bytes.cmp(&b.rss_bytes),
            SortKey::Live => total_live(a).cmp(&total_live(b)),
            SortKey::Reserved => total_reserved(a).cmp(&total_reserved(b)),
            SortKey::Cached => total_cached(a).cmp(&total_cached(b)),
            SortKey::HitRate => cmp_f(a.host.hit_rate, b.host.hit_rate),
            SortKey::Fragmentation => cmp_f(worst_fragmentation(a), worst_fragmentation(b)),
            SortKey::Command => a.command.cmp(&b.command),
        };
        let o = if descending { o.reverse() } else { o };
        o.then(a.pid.cmp(&b.pid))
    });
}

/// The screen's lines, at most `height` of them, each cut to `width` characters.
pub fn render(
    ps: &[ProcessReport],
    key: SortKey,
    descending: bool,
    status: &str,
    width: usize,
    height: usize,
) -> Vec<String> {
    let mut lines = vec![
        format!(
            "poolside top: {} process{}, sorted by {} {}",
            ps.len(),
            if ps.len() == 1 { "" } else { "es" },
            key.heading(),
            if descending {
                "(descending)"
            } else {
                "(ascending)"
            },
        ),
        "keys: p m l v a h f c pick a column, left/right move, i reverses, q quits".to_string(),
        status.to_string(),
    ];
    let mut header = HEADER.map(String::from);
    for h in header.iter_mut() {
        if h == key.heading() {
            h.push(if descending { 'v' } else { '^' });
        }
    }
    let header: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    let rows: Vec<_> = ps.iter().flat_map(rows).collect();
    lines.extend(table(&header, &rows, &LEFT).lines().map(str::to_string));
    if ps.is_empty() {
        lines.push("(no poolside processes of this user)".into());
    }
    lines.truncate(height);
    for l in lines.iter_mut() {
        if l.chars().count() > width {
            *l = l.chars().take(width).collect();
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::HostReport;

    fn proc(pid: u32, reserved: u64) -> ProcessReport {
        ProcessReport {
            pid,
            rank: None,
            local_rank: None,
            world_size: None,
            command: format!("cmd{pid}"),
            start_unix_ns: 0,
            rss_bytes: Some(pid as u64),
            anon_huge_bytes: None,
            host: HostReport {
                reserved_bytes: reserved,
                ..Default::default()
            },
            devices: vec![],
            classes: None,
        }
    }

    #[test]
    fn sorts_and_cycles() {
        let mut ps = vec![proc(1, 10), proc(2, 30), proc(3, 20)];
        sort(&mut ps, SortKey::Reserved, true);
        assert_eq!(ps.iter().map(|p| p.pid).collect::<Vec<_>>(), [2, 3, 1]);
        sort(&mut ps, SortKey::Pid, false);
        assert_eq!(ps.iter().map(|p| p.pid).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(SortKey::Pid.step(false), SortKey::Command);
        assert_eq!(SortKey::Command.step(true), SortKey::Pid);
        assert_eq!(SortKey::from_char('v'), Some(SortKey::Reserved));
    }

    #[test]
    fn renders_within_bounds() {
        let ps = vec![proc(1, 10), proc(2, 30)];
        let l = render(&ps, SortKey::Reserved, true, "", 30, 5);
        assert_eq!(l.len(), 5);
        assert!(l.iter().all(|x| x.chars().count() <= 30));
        let full = render(&ps, SortKey::Reserved, true, "", 200, 50);
        assert!(full[3].contains("RESERVEDv"), "{full:?}");
    }
}
