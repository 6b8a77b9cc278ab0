//! `poolside stat` end to end: read, report, print, alert.

use super::{alert, table};
use crate::reader::{self, system};
use crate::report::{build, ProcessReport};
use std::path::Path;

/// Exit status when an alert fired.
pub const ALERT_STATUS: i32 = 3;

/// What `stat` asks for.
pub struct StatOptions<'a> {
    pub dir: &'a Path,
    pub pids: &'a [u32],
    pub json: bool,
    pub size_classes: bool,
    pub alert_above: Option<f64>,
}

/// Runs `stat`, printing to stdout and stderr; returns the exit status.
pub fn run(o: &StatOptions) -> i32 {
    let mut status = 0;
    let snapshots = if o.pids.is_empty() {
        match reader::scan(o.dir) {
            Ok(s) => {
                for w in &s.warnings {
                    eprintln!("poolside: warning: {w}");
                }
                s.processes
            }
            Err(e) => {
                eprintln!("poolside: cannot read {}: {e}", o.dir.display());
                return 1;
            }
        }
    } else {
        let mut v = Vec::new();
        for &pid in o.pids {
            match reader::read_pid(o.dir, pid) {
                Ok(s) => v.push(s),
                Err(e) => {
                    eprintln!("poolside: {e}");
                    status = 1;
                }
            }
        }
        v
    };
    let reports: Vec<ProcessReport> = snapshots
        .iter()
        .map(|s| build::process(s, o.size_classes))
        .collect();
    if o.json {
        match serde_json::to_string_pretty(&reports) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("poolside: cannot encode JSON: {e}");
                return 1;
            }
        }
    } else {
        print!("{}", table::processes(&reports));
        print!("{}", table::stream_notes(&reports));
        print!("{}", table::graph_notes(&reports));
        if o.size_classes {
            print!("{}", table::classes(&reports));
        }
    }
    if let Some(pct) = o.alert_above {
        let alerts = alert::alerts(&reports, pct, system::meminfo("MemTotal"));
        for a in &alerts {
            eprintln!("poolside: alert: {a}");
        }
        if !alerts.is_empty() {
            status = ALERT_STATUS;
        }
    }
    status
}
