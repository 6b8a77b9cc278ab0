//! The `poolside stat` tables: one row per pool (host, then each device), and the
//! per-class breakdown.

use super::format::{bytes, opt_bytes, percent, table};
use crate::report::ProcessReport;

/// Longest command shown in a table cell.
const COMMAND_CHARS: usize = 40;

/// Shortens a command line for a table cell.
pub fn short_command(c: &str) -> String {
    if c.chars().count() <= COMMAND_CHARS {
        c.to_string()
    } else {
        let mut s: String = c.chars().take(COMMAND_CHARS - 1).collect();
        s.push('…');
        s
    }
}

/// Column headings of the process table. RANK is RANK/WORLD_SIZE of a distributed job's
/// worker ("-" for other processes); THP the part of RSS in transparent huge pages ("-"
/// when /proc does not say); CACHED is free memory the pool could return now; FRAG the
/// share of RESERVED that is free but cannot be returned.
pub const HEADER: [&str; 11] = [
    "PID", "RANK", "POOL", "RSS", "THP", "LIVE", "RESERVED", "CACHED", "HIT", "FRAG", "COMMAND",
];

/// Columns aligned left (POOL, COMMAND); the others are numbers.
pub const LEFT: [usize; 2] = [2, 10];

/// The RANK cell: `rank/world_size`, the rank alone when WORLD_SIZE is unset, "-" when
/// RANK is unset.
pub fn rank_cell(p: &ProcessReport) -> String {
    match (p.rank, p.world_size) {
        (Some(r), Some(w)) => format!("{r}/{w}"),
        (Some(r), None) => r.to_string(),
        (None, _) => "-".into(),
    }
}

/// The cells of one process's rows: the host pool, then each device.
pub fn rows(p: &ProcessReport) -> Vec<Vec<String>> {
    let mut out = vec![vec![
        p.pid.to_string(),
        rank_cell(p),
        "host".into(),
        opt_bytes(p.rss_bytes),
        opt_bytes(p.anon_huge_bytes),
        bytes(p.host.live_bytes),
        bytes(p.host.reserved_bytes),
        bytes(p.host.cached_bytes),
        percent(p.host.hit_rate),
        percent(p.host.fragmentation),
        short_command(&p.command),
    ]];
    for d in &p.devices {
        out.push(vec![
            p.pid.to_string(),
            rank_cell(p),
            d.name.clone(),
            "".into(),
            "".into(),
            bytes(d.allocated_bytes.current),
            bytes(d.reserved_bytes.current),
            bytes(d.cached_bytes),
            percent(d.hit_rate),
            percent(d.fragmentation),
            "".into(),
        ]);
    }
    out
}

/// The process table.
pub fn processes(ps: &[ProcessReport]) -> String {
    let rows: Vec<_> = ps.iter().flat_map(rows).collect();
    table(&HEADER, &rows, &LEFT)
}

/// One line per device whose record_stream events failed: a synchronize fallback stalls
/// the whole device, so it is shown even though the pool stays correct. Empty when none.
pub fn stream_notes(ps: &[ProcessReport]) -> String {
    let mut out = String::new();
    for p in ps {
        for d in &p.devices {
            // Any non-zero (not a sum: the file is untrusted and could overflow it).
            if [
                d.event_record_failures,
                d.event_query_failures,
                d.sync_fallbacks,
            ] != [0; 3]
            {
                out.push_str(&format!(
                    "{} {}: record_stream events failed ({} records, {} queries); \
                     {} device synchronizes ran instead\n",
                    p.pid,
                    d.name,
                    d.event_record_failures,
                    d.event_query_failures,
                    d.sync_fallbacks
                ));
            }
        }
    }
    out
}

/// One line per device whose CUDA graphs hold private pools: that memory is in RESERVED
/// but serves only the graphs. Empty when none.
pub fn graph_notes(ps: &[ProcessReport]) -> String {
    let mut out = String::new();
    for p in ps {
        for d in &p.devices {
            if d.private_pool_bytes.current > 0 {
                out.push_str(&format!(
                    "{} {}: {} of RESERVED held by CUDA graphs' private pools\n",
                    p.pid,
                    d.name,
                    bytes(d.private_pool_bytes.current)
                ));
            }
        }
    }
    out
}

/// The per-class breakdown of each process.
pub fn classes(ps: &[ProcessReport]) -> String {
    let mut out = String::new();
    for p in ps {
        out.push_str(&format!("\n{} {}\n", p.pid, short_command(&p.command)));
        let rows: Vec<Vec<String>> = p
            .classes
            .iter()
            .flatten()
            .map(|c| {
                vec![
                    c.slot.to_string(),
                    c.kind.to_string(),
                    if c.block_size == 0 {
                        "-".into()
                    } else {
                        c.block_size.to_string()
                    },
                    c.allocations.to_string(),
                    c.frees.to_string(),
                    c.hits.to_string(),
                    c.misses.to_string(),
                    bytes(c.live_bytes),
                    percent(c.hit_rate),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "CLASS", "KIND", "BLOCK", "ALLOCS", "FREES", "HITS", "MISSES", "LIVE", "HIT",
            ],
            &rows,
            &[1],
        ));
    }
    out
}

#[cfg(test)]
mod graph_note_tests {
    use super::*;
    use crate::report::{DeviceReport, GaugeReport};

    #[test]
    fn graph_notes_name_devices_with_private_pools_only() {
        let p = ProcessReport {
            pid: 7,
            rank: None,
            local_rank: None,
            world_size: None,
            devices: vec![
                DeviceReport {
                    name: "cuda:0".into(),
                    private_pool_bytes: GaugeReport {
                        current: 3 << 20,
                        peak: 3 << 20,
                    },
                    ..Default::default()
                },
                DeviceReport {
                    name: "cuda:1".into(),
                    ..Default::default()
                },
            ],
            command: String::new(),
            start_unix_ns: 0,
            rss_bytes: None,
            anon_huge_bytes: None,
            host: Default::default(),
            classes: None,
        };
        let n = graph_notes(&[p]);
        assert_eq!(n.lines().count(), 1, "{n}");
        assert!(
            n.starts_with("7 cuda:0: ") && n.contains("CUDA graphs' private pools"),
            "{n}"
        );
        assert!(n.contains(&bytes(3 << 20)), "{n}");
    }
}
