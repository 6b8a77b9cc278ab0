//! `--alert-above PCT`: which pools use more than a share of what they may use.
//!
//! Host: reserved bytes against the machine's MemTotal. Device: reserved bytes against the
//! pool's cap (`limit_bytes`) when set, else the device's total memory.

use super::format::bytes;
use crate::report::ProcessReport;

/// One threshold crossing, as a line naming the process.
pub fn alerts(ps: &[ProcessReport], pct: f64, mem_total: Option<u64>) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |p: &ProcessReport, pool: &str, used: u64, limit: u64, what: &str| {
        if limit == 0 {
            return;
        }
        let share = used as f64 * 100.0 / limit as f64;
        if share > pct {
            out.push(format!(
                "pid {} ({}): {pool} reserved {} is {share:.1}% of {what} {}, above {pct}%",
                p.pid,
                p.command.split(' ').next().unwrap_or(""),
                bytes(used),
                bytes(limit),
            ));
        }
    };
    for p in ps {
        if let Some(total) = mem_total {
            check(p, "host", p.host.reserved_bytes, total, "MemTotal");
        }
        for d in &p.devices {
            let (limit, what) = if d.limit_bytes > 0 {
                (d.limit_bytes, "its limit")
            } else {
                (d.total_memory, "device memory")
            };
            check(p, &d.name, d.reserved_bytes.current, limit, what);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{DeviceReport, GaugeReport, HostReport};

    fn proc_with(host_reserved: u64, dev_reserved: u64, limit: u64) -> ProcessReport {
        ProcessReport {
            pid: 7,
            rank: None,
            local_rank: None,
            world_size: None,
            command: "python train.py".into(),
            start_unix_ns: 0,
            rss_bytes: None,
            anon_huge_bytes: None,
            host: HostReport {
                reserved_bytes: host_reserved,
                ..Default::default()
            },
            devices: vec![DeviceReport {
                name: "cuda:0".into(),
                total_memory: 1000,
                limit_bytes: limit,
                reserved_bytes: GaugeReport {
                    current: dev_reserved,
                    peak: 0,
                },
                ..Default::default()
            }],
            classes: None,
        }
    }

    #[test]
    fn flags_pools_above_threshold() {
        let a = alerts(&[proc_with(600, 100, 0)], 50.0, Some(1000));
        assert_eq!(a.len(), 1);
        assert!(
            a[0].contains("pid 7 (python)") && a[0].contains("host"),
            "{a:?}"
        );
        // Device against its limit rather than total memory.
        let a = alerts(&[proc_with(0, 300, 400)], 50.0, Some(1000));
        assert_eq!(a.len(), 1);
        assert!(a[0].contains("cuda:0") && a[0].contains("75.0%"), "{a:?}");
        assert!(alerts(&[proc_with(500, 500, 0)], 50.0, Some(1000)).is_empty());
    }

    /// The H200 run of issue 11: 29 of 141 GiB reserved, 27 GiB of it cached free
    /// memory. Alerts look at reserved memory only, whatever the cache or the
    /// fragmentation figure says.
    #[test]
    fn a_healthy_cache_does_not_alert() {
        let gib = 1u64 << 30;
        let mut p = proc_with(0, 29 * gib, 0);
        let d = &mut p.devices[0];
        d.total_memory = 141 * gib;
        d.cached_bytes = 27 * gib;
        d.fragmentation = Some(0.9);
        assert!(alerts(std::slice::from_ref(&p), 50.0, None).is_empty());
        assert_eq!(alerts(&[p], 20.0, None).len(), 1, "29/141 GiB is 20.6%");
    }
}
