//! Fuzzing the CUDA plugin's settings (`PYTORCH_CUDA_ALLOC_CONF`, and `POOLSIDE_CONF`'s
//! device keys): arbitrary strings never panic, each bad entry leaves the settings exactly
//! as they were and yields one bounded, single-line message, valid settings round-trip to
//! the values given, and the rounding the settings drive never wraps. Case counts keep the
//! file well under a second in release builds; `PROPTEST_CASES` raises them locally.

use poolside::config::SHOWN_BYTES;
use poolside_cuda::config::{quoted, PluginConfig, ROUNDUP_INTERVALS};
use proptest::prelude::*;

const VAR: &str = "PYTORCH_CUDA_ALLOC_CONF";

/// The plugin's keys, PyTorch's and its own.
const KEYS: &[&str] = &[
    "expandable_segments",
    "max_split_size_mb",
    "garbage_collection_threshold",
    "roundup_power2_divisions",
    "per_process_memory_fraction",
    "device_capacity_mb",
    "backend",
    "release_lock_on_cudamalloc",
    "pinned_use_cuda_host_register",
    "pinned_num_register_threads",
];

/// Messages stay one bounded line: the value is cut, control characters replaced.
fn check_messages(w: &[String]) -> Result<(), TestCaseError> {
    for m in w {
        prop_assert!(!m.chars().any(char::is_control), "{m:?}");
        // Two quoted items at most (a key and a value), each cut to SHOWN_BYTES bytes of
        // text, plus the longest fixed wording.
        prop_assert!(
            m.len() <= 2 * (SHOWN_BYTES + 30) + 120,
            "{} bytes: {m}",
            m.len()
        );
    }
    Ok(())
}

/// A value without `,`, `[` or `]`, so that one generated entry is one parsed entry.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 .:>_\\-]{0,10}",
        3 => prop_oneof![
            Just("true"), Just("False"), Just("21"), Just("20"), Just("0.5"), Just("1"),
            Just("1.0"), Just("0"), Just("NaN"), Just("inf"), Just("-0.0"), Just("1e-300"),
            Just("18446744073709551615"), Just("17592186044416"), Just("9999999999999999999"),
            Just("65536"), Just("131072"), Just("3"), Just("native"), Just("cudaMallocAsync"),
        ]
        .prop_map(String::from),
        2 => "[^,\\[\\]]{0,8}",
        1 => (200usize..3000).prop_map(|n| "9".repeat(n)),
    ]
}

/// A bracketed `roundup_power2_divisions` value, balanced, valid or nearly so.
fn brackets() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop_oneof![
                3 => (0u32..20).prop_map(|e| (1u64 << e).to_string()),
                1 => Just(">".to_string()),
                1 => "[0-9]{1,4}",
            ],
            prop_oneof![
                Just("1"),
                Just("2"),
                Just("4"),
                Just("3"),
                Just("0"),
                Just("x"),
                Just("65536")
            ],
        ),
        0..6,
    )
    .prop_map(|items| {
        let inner: Vec<String> = items.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        format!("[{}]", inner.join(","))
    })
}

fn entry() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (prop::sample::select(KEYS), prop::sample::select(&[":", " : ", ": "][..]), value())
            .prop_map(|(k, c, v)| format!("{k}{c}{v}")),
        2 => brackets().prop_map(|b| format!("roundup_power2_divisions:{b}")),
        1 => "[a-z_]{1,12}:[a-z0-9]{0,4}",
        1 => prop::sample::select(KEYS).prop_map(String::from),
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
    fn arbitrary_strings_never_panic(conf in prop_oneof![
        any::<String>(),
        "[a-z_:,\\[\\]>0-9. ]{0,80}",
        prop::collection::vec(prop::sample::select(&["[", "]", ",", ":", ">", "roundup_power2_divisions", "1", " "][..]), 0..30)
            .prop_map(|v| v.concat()),
    ]) {
        let mut c = PluginConfig::default();
        let w = c.apply(VAR, &conf, true);
        check_messages(&w)?;
        let _ = c.round_size(1 << 20);
    }

    #[test]
    fn each_bad_entry_keeps_the_settings_and_the_whole_string_agrees(
        es in prop::collection::vec(entry(), 0..10),
    ) {
        // Entry by entry: a message means nothing changed.
        let mut one_by_one = PluginConfig::default();
        let mut messages = 0;
        for e in &es {
            let before = one_by_one.clone();
            let w = one_by_one.apply(VAR, e, true);
            check_messages(&w)?;
            prop_assert!(w.len() <= 1, "{e}: {w:?}");
            if !w.is_empty() {
                prop_assert_eq!(&one_by_one, &before, "{} changed the settings: {:?}", e, w);
            }
            messages += w.len();
        }
        // All at once, as the environment gives them.
        let mut whole = PluginConfig::default();
        let w = whole.apply(VAR, &es.join(","), true);
        prop_assert_eq!(&whole, &one_by_one);
        prop_assert_eq!(w.len(), messages);
    }

    #[test]
    fn valid_settings_round_trip(
        expandable in any::<bool>(),
        split_mb in 21u64..1 << 30,
        gc in 0.0001f64..0.9999,
        fraction in 0.0001f64..=1.0,
        capacity_mb in 1u64..=u64::MAX >> 20,
        div_exp in 0u32..=16,
    ) {
        let conf = format!(
            "expandable_segments:{expandable}, max_split_size_mb:{split_mb},\
             garbage_collection_threshold:{gc},per_process_memory_fraction:{fraction},\
             device_capacity_mb:{capacity_mb},roundup_power2_divisions:{}",
            1u32 << div_exp
        );
        let mut c = PluginConfig::default();
        let w = c.apply(VAR, &conf, true);
        prop_assert!(w.is_empty(), "{w:?}");
        prop_assert_eq!(c, PluginConfig {
            expandable_segments: expandable,
            max_split_size: (split_mb << 20) as usize,
            gc_threshold: gc,
            roundup_divisions: [1 << div_exp; ROUNDUP_INTERVALS],
            memory_fraction: fraction,
            sim_capacity: capacity_mb << 20,
        });
    }

    #[test]
    fn bracketed_divisions_round_trip(
        picks in prop::collection::btree_map(0usize..ROUNDUP_INTERVALS, 0u32..=16, 1..6),
        rest in prop::option::of(0u32..=16),
    ) {
        // Interval starts in MiB (powers of two, increasing), then optionally `>`.
        let mut items: Vec<String> =
            picks.iter().map(|(i, e)| format!("{}:{}", 1u64 << i, 1u32 << e)).collect();
        let mut expect = [0u32; ROUNDUP_INTERVALS];
        let mut from = 0;
        for (&i, &e) in &picks {
            expect[from..=i].fill(1 << e);
            from = i + 1;
        }
        if let Some(e) = rest {
            items.push(format!(">:{}", 1u32 << e));
            expect[from..].fill(1 << e);
        }
        let mut c = PluginConfig::default();
        let w = c.apply(VAR, &format!("roundup_power2_divisions:[{}]", items.join(",")), true);
        prop_assert!(w.is_empty(), "{w:?}");
        prop_assert_eq!(c.roundup_divisions, expect);
    }

    #[test]
    fn rounding_never_wraps(
        size in prop_oneof![any::<usize>(), usize::MAX - 1_000_000..=usize::MAX, 0usize..1 << 32],
        div_exp in prop::option::of(0u32..=16),
    ) {
        let mut c = PluginConfig::default();
        if let Some(e) = div_exp {
            c.apply(VAR, &format!("roundup_power2_divisions:{}", 1u32 << e), true);
        }
        if let Some(r) = c.round_size(size) {
            prop_assert!(r >= size && r >= 512 && r % 512 == 0, "{size} -> {r}");
        }
    }
}

#[test]
fn regression_device_capacity_beyond_u64_bytes_is_refused_not_wrapped() {
    // Found while writing these tests: 2^44 MiB shifted left by 20 wrapped to a 0-byte
    // simulated device, without a message.
    let mut c = PluginConfig::default();
    let w = c.apply(VAR, "device_capacity_mb:17592186044416", true);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(c.sim_capacity, PluginConfig::default().sim_capacity);
    let w = c.apply(VAR, "device_capacity_mb:17592186044415", true);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.sim_capacity, 17592186044415 << 20);
}

#[test]
fn long_values_are_cut_with_their_length() {
    let value = "7".repeat(100_000);
    let w = PluginConfig::default().apply(VAR, &format!("max_split_size_mb:{value}"), true);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains(&format!("'{}...' (100000 bytes)", "7".repeat(SHOWN_BYTES))),
        "{}",
        w[0]
    );
    assert!(w[0].len() < 200, "{}", w[0]);
    assert_eq!(quoted("a\nb\u{1b}[2J"), "'a?b?[2J'");
    // A cut inside a multi-byte character backs off to its start.
    let s = format!("{}é", "x".repeat(SHOWN_BYTES - 1));
    assert_eq!(
        quoted(&s),
        format!("'{}...' ({} bytes)", "x".repeat(SHOWN_BYTES - 1), s.len())
    );
}
