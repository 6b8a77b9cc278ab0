//! Fuzzing `POOLSIDE_CONF` as the host engine parses it (inside the first malloc, without
//! allocating): arbitrary bytes, near-valid strings (known keys with random values and
//! separators, unicode, very long values), a round trip of valid settings, and the limits
//! of the warning line. Case counts keep the file well under a second in release builds;
//! `PROPTEST_CASES` raises them for a longer local run.

use poolside::config::{
    entries, parse_u64, HostConfig, HugePages, Problems, KNOWN_KEYS, NAMED_PROBLEMS, SHOWN_BYTES,
};
use proptest::prelude::*;

/// Settings as plain values, for comparing.
#[derive(Clone, Debug, PartialEq)]
struct Settings {
    purge_delay_ms: u64,
    huge_pages: HugePages,
    stats: bool,
    stats_dir: Vec<u8>,
    verbose: bool,
}

fn settings(c: &HostConfig) -> Settings {
    Settings {
        purge_delay_ms: c.purge_delay_ms,
        huge_pages: c.huge_pages,
        stats: c.stats,
        stats_dir: c.stats_dir().to_vec(),
        verbose: c.verbose,
    }
}

/// The documented rules, written independently of the parser: what one entry does to the
/// settings, or `Err` when it is a problem (bad value, unknown key).
fn model_entry(s: &mut Settings, key: &[u8], value: &[u8]) -> Result<(), ()> {
    let boolean = |v: &[u8]| match v.to_ascii_lowercase().as_slice() {
        b"true" | b"1" | b"on" | b"yes" => Ok(true),
        b"false" | b"0" | b"off" | b"no" => Ok(false),
        _ => Err(()),
    };
    match key {
        b"purge_delay_ms" => {
            // Up to 19 decimal digits (always below 2^64), nothing else.
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(());
            }
            s.purge_delay_ms = std::str::from_utf8(value).unwrap().parse().unwrap();
        }
        b"huge_pages" => {
            s.huge_pages = match value.to_ascii_lowercase().as_slice() {
                b"auto" => HugePages::Auto,
                b"never" => HugePages::Never,
                b"always" => HugePages::Always,
                _ => return Err(()),
            }
        }
        b"stats" => s.stats = boolean(value)?,
        b"verbose" => s.verbose = boolean(value)?,
        b"stats_dir" => {
            if value.first() != Some(&b'/') || value.len() >= 256 {
                return Err(());
            }
            s.stats_dir = value.to_vec();
        }
        k if KNOWN_KEYS.contains(&k) => {}
        _ => return Err(()),
    }
    Ok(())
}

/// Checks `conf` against the model: settings and the number of problems.
fn check_against_model(conf: &[u8]) -> Result<(), TestCaseError> {
    let mut expect = settings(&HostConfig::DEFAULT);
    let mut bad = 0;
    for (k, v) in entries(conf) {
        if model_entry(&mut expect, k, v).is_err() {
            bad += 1;
        }
    }
    let mut c = HostConfig::DEFAULT;
    let p = c.apply(conf);
    prop_assert_eq!(settings(&c), expect);
    prop_assert_eq!(p.count(), bad);
    check_line(&p)?;
    Ok(())
}

/// The warning text stays one bounded line whatever the input.
fn check_line(p: &Problems) -> Result<(), TestCaseError> {
    let t = p.text();
    prop_assert!(
        !t.iter().any(|&b| b < 0x20 || b == 0x7f),
        "control byte in {:?}",
        String::from_utf8_lossy(t)
    );
    // Three items of at most SHOWN_BYTES, each with its longest wording and length note.
    prop_assert!(t.len() <= NAMED_PROBLEMS * (SHOWN_BYTES * 2 + 160));
    prop_assert_eq!(p.count() == 0, t.is_empty());
    Ok(())
}

/// A value: mostly short, sometimes valid-looking, sometimes unicode or very long.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[a-zA-Z0-9 :./_\\-\\[\\]>]{0,12}".prop_map(String::into_bytes),
        2 => prop_oneof![
            Just("true"), Just("OFF"), Just("Yes"), Just("0"), Just("1"), Just("no"),
            Just("18446744073709551615"), Just("9999999999999999999"), Just("-1"),
            Just("+5"), Just("0x10"), Just("1e3"), Just("/tmp/x"), Just("/"), Just(""),
            Just("auto"), Just("NEVER"), Just("Always"), Just("madvise"), Just("alwayss"),
        ]
        .prop_map(|s| s.as_bytes().to_vec()),
        2 => "\\PC{0,8}".prop_map(String::into_bytes),
        1 => any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        1 => (any::<u8>(), 200usize..3000).prop_map(|(b, n)| [b, n as u8].repeat(n / 2)),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(KNOWN_KEYS).prop_map(<[u8]>::to_vec),
        1 => "[a-z_]{0,20}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ]
}

/// Separators between and inside entries, with the spacing users type.
fn sep() -> impl Strategy<Value = &'static [u8]> {
    const SEPS: &[&[u8]] = &[b",", b", ", b" ,", b",,", b"\t,", b","];
    prop::sample::select(SEPS)
}

/// Between key and value: the colon, spaced, or none (an entry without a value).
fn colon() -> impl Strategy<Value = &'static [u8]> {
    const COLONS: &[&[u8]] = &[b":", b" : ", b":", b""];
    prop::sample::select(COLONS)
}

fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((key(), colon(), value(), sep()), 0..12).prop_map(|es| {
        let mut out = Vec::new();
        for (k, colon, v, s) in es {
            out.extend_from_slice(&k);
            out.extend_from_slice(colon);
            out.extend_from_slice(&v);
            out.extend_from_slice(s);
        }
        out
    })
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
    fn arbitrary_bytes_never_panic_and_follow_the_rules(conf in prop::collection::vec(any::<u8>(), 0..400)) {
        check_against_model(&conf)?;
    }

    #[test]
    fn near_valid_strings_keep_earlier_values_for_bad_entries(conf in near_valid()) {
        check_against_model(&conf)?;
    }

    #[test]
    fn valid_settings_round_trip(
        delay in 0u64..10_000_000_000_000_000_000,
        stats in any::<bool>(),
        verbose in any::<bool>(),
        dir in "/[a-zA-Z0-9_./:\\-]{0,200}",
        spelling in 0usize..4,
        huge in prop::sample::select(&[("auto", HugePages::Auto), ("Never", HugePages::Never), ("ALWAYS", HugePages::Always)][..]),
    ) {
        let words = [("true", "false"), ("ON", "off"), ("1", "0"), ("yes", "No")][spelling];
        let b = |v: bool| if v { words.0 } else { words.1 };
        let conf = format!(
            "purge_delay_ms:{delay}, stats : {} ,stats_dir:{dir},verbose:{},huge_pages:{}",
            b(stats),
            b(verbose),
            huge.0
        );
        let mut c = HostConfig::DEFAULT;
        let p = c.apply(conf.as_bytes());
        prop_assert_eq!(p.count(), 0, "{}", String::from_utf8_lossy(p.text()));
        prop_assert_eq!(
            settings(&c),
            Settings { purge_delay_ms: delay, huge_pages: huge.1, stats, stats_dir: dir.into_bytes(), verbose }
        );
    }

    #[test]
    fn numbers_parse_exactly_or_not_at_all(n in any::<u64>()) {
        let s = n.to_string();
        // 20-digit numbers are refused rather than risking overflow.
        prop_assert_eq!(parse_u64(s.as_bytes()), (s.len() <= 19).then_some(n));
    }
}

#[test]
fn a_100_kb_value_is_cut_and_its_length_given() {
    let conf = [&b"stats_dir:/"[..], &[b'x'; 100_000][..]].concat();
    let mut c = HostConfig::DEFAULT;
    let p = c.apply(&conf);
    assert_eq!(p.count(), 1);
    let t = String::from_utf8(p.text().to_vec()).unwrap();
    assert!(t.len() < 200, "{t}");
    assert!(t.contains("...' (100001 bytes)"), "{t}");
    assert_eq!(c.stats_dir(), b"/dev/shm");
}

#[test]
fn ten_thousand_bad_keys_are_counted_and_the_first_named() {
    let conf: String = (0..10_000).map(|i| format!("bad_key_{i}:1,")).collect();
    let p = { HostConfig::DEFAULT }.apply(conf.as_bytes());
    assert_eq!(p.count(), 10_000);
    let t = String::from_utf8(p.text().to_vec()).unwrap();
    assert_eq!(
        t,
        "unknown key 'bad_key_0'; unknown key 'bad_key_1'; unknown key 'bad_key_2'"
    );
}

#[test]
fn a_cut_never_splits_a_character_and_newlines_cannot_split_the_line() {
    // 63 ASCII bytes, then a 4-byte character across the 64-byte limit.
    let value = format!("{}😀tail\nsecond line", "a".repeat(63));
    let conf = format!("stats:{value}");
    let p = { HostConfig::DEFAULT }.apply(conf.as_bytes());
    let t = std::str::from_utf8(p.text()).expect("cut at a character boundary");
    assert!(
        t.ends_with(&format!("'{}...' ({} bytes)", "a".repeat(63), value.len())),
        "{t}"
    );
    let p = { HostConfig::DEFAULT }.apply(b"bogus\nkey:1,bad\x1b[31m:2");
    assert_eq!(p.text(), b"unknown key 'bogus?key'; unknown key 'bad?[31m'");
}
