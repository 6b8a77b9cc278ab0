//! Fuzzing the command line: any argument vector through the clap parser gives a command
//! or an error (whose message renders), never a panic; arguments that are not UTF-8
//! included. Valid `stat` options round-trip. Case counts keep the file well under a
//! second in release builds; `PROPTEST_CASES` raises them locally.

use clap::{CommandFactory, Parser};
use poolside_cli::args::{Cli, Command};
use proptest::prelude::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// Words the parser knows, and values near their edges.
const WORDS: &[&str] = &[
    "run",
    "stat",
    "top",
    "export",
    "replay",
    "help",
    "--help",
    "-h",
    "--version",
    "-V",
    "--conf",
    "--json",
    "--size-classes",
    "--alert-above",
    "--stats-dir",
    "--interval-ms",
    "--listen",
    "--",
    "-",
    "--=",
    "--json=1",
    "--alert-above=",
    "50",
    "50%",
    "100.0",
    "-1",
    "101",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "0x10",
    "49",
    "50",
    "18446744073709551616",
    "4294967296",
    "127.0.0.1:9464",
    "[::1]:0",
    "0.0.0.0:99999",
    "localhost:80",
    "/tmp",
    "",
    " ",
    "snap.pickle",
    "-x",
    "--no-such-flag",
    "é",
    "\u{0}",
];

fn arg() -> impl Strategy<Value = OsString> {
    prop_oneof![
        6 => prop::sample::select(WORDS).prop_map(OsString::from),
        2 => any::<String>().prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(OsString::from_vec),
        1 => (1usize..5000).prop_map(|n| OsString::from("9".repeat(n))),
    ]
}

/// `default` cases per property in CI; `PROPTEST_CASES` overrides it for a longer run
/// (`with_cases` alone would ignore the variable).
fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    ProptestConfig::with_cases(n.unwrap_or(default))
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn any_arguments_give_a_command_or_an_error(args in prop::collection::vec(arg(), 0..8)) {
        let argv = std::iter::once(OsString::from("poolside")).chain(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => {
                if let Command::Stat { alert_above: Some(p), .. } = cli.command {
                    prop_assert!((0.0..=100.0).contains(&p), "{p}");
                }
                if let Command::Top { interval_ms, .. } = cli.command {
                    prop_assert!(interval_ms >= 50);
                }
            }
            Err(e) => {
                // Help and version are errors in clap's sense; both render.
                prop_assert!(!e.render().to_string().is_empty());
            }
        }
    }

    #[test]
    fn stat_options_round_trip(
        pids in prop::collection::vec(any::<u32>(), 0..5),
        json in any::<bool>(),
        size_classes in any::<bool>(),
        pct in prop::option::of(0.0f64..=100.0),
        dir in prop::option::of("/[a-z0-9/]{1,30}"),
    ) {
        let mut argv: Vec<String> = vec!["poolside".into(), "stat".into()];
        argv.extend(pids.iter().map(u32::to_string));
        if json { argv.push("--json".into()); }
        if size_classes { argv.push("--size-classes".into()); }
        if let Some(p) = pct { argv.push(format!("--alert-above={p}")); }
        if let Some(d) = &dir { argv.extend(["--stats-dir".into(), d.clone()]); }
        let cli = Cli::try_parse_from(&argv).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Command::Stat { pids: p, json: j, size_classes: s, alert_above: a, dir: d } = cli.command
        else { return Err(TestCaseError::fail("not stat")) };
        prop_assert_eq!(p, pids);
        prop_assert_eq!((j, s, a), (json, size_classes, pct));
        prop_assert_eq!(d.stats_dir.map(|p| p.to_string_lossy().into_owned()), dir);
    }
}

/// clap's own consistency checks of the declared command line (names, conflicts,
/// requirements), which it otherwise makes only in debug builds when parsing.
#[test]
fn the_command_line_declaration_is_consistent() {
    Cli::command().debug_assert();
}
