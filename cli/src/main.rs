//! `poolside`: run, stat, top, export, replay.

use clap::Parser;
use poolside_cli::args::{Cli, Command};
use poolside_cli::stat::command::StatOptions;
use std::time::Duration;

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { conf, cmd } => match poolside_cli::run::run(conf.as_deref(), &cmd) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("poolside run: {e}");
                127
            }
        },
        Command::Stat {
            pids,
            json,
            size_classes,
            alert_above,
            dir,
        } => poolside_cli::stat::command::run(&StatOptions {
            dir: &dir.dir(),
            pids: &pids,
            json,
            size_classes,
            alert_above,
        }),
        Command::Top { interval_ms, dir } => {
            match poolside_cli::top::terminal::run(&dir.dir(), Duration::from_millis(interval_ms)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("poolside top: {e} (top needs a terminal; try `poolside stat`)");
                    1
                }
            }
        }
        Command::Replay { json, snapshot } => {
            let lib = poolside_cli::run::exe_dir().and_then(|d| {
                poolside_cli::replay::plugin_path(
                    &poolside_cli::run::locate::Places::of_this_build(&d),
                    std::env::var("POOLSIDE_CUDA_LIB").ok().as_deref(),
                )
            });
            match lib.and_then(|l| poolside_cli::replay::run(&l, &snapshot, json)) {
                Ok(text) => {
                    print!("{text}");
                    0
                }
                Err(e) => {
                    eprintln!("poolside replay: {e}");
                    1
                }
            }
        }
        Command::Export { listen, dir } => {
            let listener = match std::net::TcpListener::bind(listen) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("poolside export: cannot listen on {listen}: {e}");
                    std::process::exit(1);
                }
            };
            let addr = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            eprintln!("poolside export: serving http://{addr}/metrics");
            match poolside_cli::export::server::serve(listener, &dir.dir()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("poolside export: {e}");
                    1
                }
            }
        }
    };
    std::process::exit(code);
}
