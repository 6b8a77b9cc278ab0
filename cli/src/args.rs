//! The command line, declared with clap.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// poolside: run programs on the poolside allocator and watch their pools.
#[derive(Parser, Debug)]
#[command(name = "poolside", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where stats files are read from.
#[derive(Args, Debug, Clone)]
pub struct DirArg {
    /// Stats directory (default: stats_dir from POOLSIDE_CONF, else /dev/shm).
    #[arg(long, value_name = "DIR")]
    pub stats_dir: Option<PathBuf>,
}

impl DirArg {
    /// The directory to read.
    pub fn dir(&self) -> PathBuf {
        self.stats_dir
            .clone()
            .unwrap_or_else(crate::reader::default_dir)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run CMD with libpoolside.so preloaded; exits with CMD's status.
    Run {
        /// Settings for POOLSIDE_CONF, e.g. stats:false,purge_delay_ms:100.
        #[arg(long, value_name = "K:V,...")]
        conf: Option<String>,
        /// The command and its arguments (after `--`).
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        cmd: Vec<String>,
    },
    /// Show every live poolside process of this user (or only the given PIDs).
    Stat {
        /// PIDs to show (default: all).
        pids: Vec<u32>,
        /// JSON for machines.
        #[arg(long)]
        json: bool,
        /// Add the per-size-class breakdown of the host pool.
        #[arg(long)]
        size_classes: bool,
        /// Exit with status 3 and name each process whose reserved memory exceeds PCT
        /// percent of MemTotal (host) or of its limit or total memory (device).
        #[arg(long, value_name = "PCT", value_parser = parse_percent)]
        alert_above: Option<f64>,
        #[command(flatten)]
        dir: DirArg,
    },
    /// A live, refreshing view; keys pick the sort column, q quits.
    Top {
        /// Refresh interval in milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..))]
        interval_ms: u64,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Serve Prometheus metrics for every poolside process of this user.
    Export {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Replay a PyTorch memory snapshot (torch.cuda.memory._snapshot() pickle) through the
    /// device pool on a simulated driver and compare with PyTorch's allocator.
    Replay {
        /// JSON for machines.
        #[arg(long)]
        json: bool,
        /// The snapshot file.
        #[arg(value_name = "SNAPSHOT.pickle")]
        snapshot: PathBuf,
    },
}

/// A percentage in [0, 100].
fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 100"))
    }
}
