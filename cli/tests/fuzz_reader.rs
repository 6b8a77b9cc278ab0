//! Fuzzing the stats-file reader and everything that shows what it read: arbitrary bytes,
//! truncated valid files, and valid files (built from the real layout) with fields mutated
//! to absurd values, named for a live process (this one, mapping the file) or a dead one.
//! The reader must answer with a snapshot or a message, and the report, tables, JSON,
//! alerts and `top` view of any snapshot must render: never a panic.
//!
//! Also the small parsers of outside text the reader uses: stats file names,
//! `/proc/PID/stat` (whose command field may hold spaces and parentheses) and
//! `/proc/PID/maps`. Case counts keep the file within a few seconds in release builds;
//! `PROPTEST_CASES` raises them locally.

mod common;

use common::*;
use poolside::stats::layout::{
    ClassCounters, DeviceSection, HostSection, StatsFile, MAX_CLASSES, MAX_DEVICES, STATS_MAGIC,
};
use poolside::stats::proc_self::parse_start_ticks;
use poolside_cli::reader::file_name::FileName;
use poolside_cli::reader::liveness::maps_inode;
use poolside_cli::reader::verdict::{examine, Verdict, FILE_SIZE};
use poolside_cli::reader::Snapshot;
use proptest::prelude::*;
use std::mem::{offset_of, size_of};

/// 8-byte words in a device section.
const DEVICE_WORDS: usize = size_of::<DeviceSection>() / 8;
use std::path::Path;

/// Everything a snapshot is shown through; panics are what this looks for.
fn render(s: &Snapshot) {
    let r = poolside_cli::report::build::process(s, true);
    let reports = vec![r.clone(), r];
    let _ = poolside_cli::stat::table::processes(&reports);
    let _ = poolside_cli::stat::table::classes(&reports);
    let _ = serde_json::to_string(&reports).unwrap();
    let _ = poolside_cli::stat::alert::alerts(&reports, 50.0, Some(1 << 30));
    use poolside_cli::top::view::{render, sort, SortKey};
    for c in ['p', 'm', 'l', 'v', 'h', 'f', 'c'] {
        let mut ps = reports.clone();
        let key = SortKey::from_char(c).unwrap();
        sort(&mut ps, key, true);
        let _ = render(&ps, key, true, "", 80, 24);
    }
}

/// Examines `bytes` written as `pid`'s file in `dir`, keeping it mapped here when `map` is
/// set (so that the reader sees a live writer). A live snapshot is rendered.
fn examine_bytes(dir: &Path, pid: u32, bytes: &[u8], map: bool) -> Verdict {
    let p = write(dir, pid, bytes);
    let _keep = (map && bytes.len() >= FILE_SIZE).then(|| Mapped::new(&p));
    let v = examine(&p, FileName { uid: uid(), pid }, uid());
    match &v {
        Verdict::Live(s) => render(s),
        Verdict::Invalid(m) | Verdict::Stale(m) => assert!(!m.is_empty()),
        Verdict::Creating => {}
    }
    v
}

fn valid_bytes(pid: u32) -> Vec<u8> {
    bytes(&stats_file(pid)).to_vec()
}

/// A field of the header, or a word anywhere, set to a value.
#[derive(Clone, Debug)]
enum Mutation {
    Magic(u64),
    Version(u32),
    HeaderSize(u32),
    TotalSize(u64),
    Pid(u32),
    StartTicks(u64),
    Writers(u32),
    NumClasses(u32),
    CmdlineLen(u32),
    Cmdline(Vec<u8>),
    /// A device section present, with this ordinal.
    Device(usize, i32),
    /// Any 8-byte word after the header prefix, set to a huge or random number.
    Word(usize, u64),
    /// The same counter (word `i` of `ClassCounters`) in every class slot.
    AllClasses(usize, u64),
    /// Word `i` (after `present`/`device`) of every device section, each present.
    AllDevices(usize, u64),
    /// A section's sequence number left odd (a writer that died inside it).
    OddSeq(Option<usize>),
}

fn huge() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1 << 63),
        Just(i64::MAX as u64),
        Just(0),
        any::<u64>()
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let words = FILE_SIZE / 8;
    let first_free = (offset_of!(StatsFile, start_ticks) + 8) / 8;
    prop_oneof![
        2 => prop_oneof![huge(), Just(STATS_MAGIC + 1), Just(u64::from_be_bytes(*b"POOLSIDE"))]
            .prop_map(Mutation::Magic),
        1 => any::<u32>().prop_map(Mutation::Version),
        1 => prop_oneof![any::<u32>(), Just(FILE_SIZE as u32 - 8), Just(FILE_SIZE as u32 + 8)]
            .prop_map(Mutation::HeaderSize),
        1 => prop_oneof![huge(), Just(FILE_SIZE as u64 * 2)].prop_map(Mutation::TotalSize),
        1 => prop_oneof![any::<u32>(), Just(0), Just(u32::MAX)].prop_map(Mutation::Pid),
        1 => huge().prop_map(Mutation::StartTicks),
        1 => any::<u32>().prop_map(Mutation::Writers),
        2 => prop_oneof![any::<u32>(), Just(126), Just(127), Just(128), Just(u32::MAX)]
            .prop_map(Mutation::NumClasses),
        2 => prop_oneof![any::<u32>(), Just(512), Just(513), Just(u32::MAX)]
            .prop_map(Mutation::CmdlineLen),
        2 => prop::collection::vec(any::<u8>(), 0..600).prop_map(Mutation::Cmdline),
        2 => (0..MAX_DEVICES, any::<i32>()).prop_map(|(d, n)| Mutation::Device(d, n)),
        6 => (first_free..words, huge()).prop_map(|(w, v)| Mutation::Word(w, v)),
        3 => (0usize..9, huge()).prop_map(|(i, v)| Mutation::AllClasses(i, v)),
        3 => (2usize..DEVICE_WORDS, huge()).prop_map(|(i, v)| Mutation::AllDevices(i, v)),
        // Rare: each costs the reader's full retry budget (about 0.1 s).
        1 => prop::option::of(0..MAX_DEVICES).prop_map(Mutation::OddSeq),
    ]
}

fn apply(b: &mut [u8], m: &Mutation) {
    let put = |b: &mut [u8], at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
    match m {
        Mutation::Magic(v) => put(b, offset_of!(StatsFile, magic), &v.to_le_bytes()),
        Mutation::Version(v) => put(b, offset_of!(StatsFile, version), &v.to_le_bytes()),
        Mutation::HeaderSize(v) => put(b, offset_of!(StatsFile, header_size), &v.to_le_bytes()),
        Mutation::TotalSize(v) => put(b, offset_of!(StatsFile, total_size), &v.to_le_bytes()),
        Mutation::Pid(v) => put(b, offset_of!(StatsFile, pid), &v.to_le_bytes()),
        Mutation::StartTicks(v) => put(b, offset_of!(StatsFile, start_ticks), &v.to_le_bytes()),
        Mutation::Writers(v) => put(b, offset_of!(StatsFile, writers), &v.to_le_bytes()),
        Mutation::NumClasses(v) => put(b, offset_of!(StatsFile, num_classes), &v.to_le_bytes()),
        Mutation::CmdlineLen(v) => put(b, offset_of!(StatsFile, cmdline_len), &v.to_le_bytes()),
        Mutation::Cmdline(c) => {
            let n = c.len().min(poolside::stats::layout::CMDLINE_BYTES);
            put(b, offset_of!(StatsFile, cmdline), &c[..n]);
            put(
                b,
                offset_of!(StatsFile, cmdline_len),
                &(c.len() as u32).to_le_bytes(),
            );
        }
        Mutation::Device(d, n) => {
            let base = offset_of!(StatsFile, devices) + d * size_of::<DeviceSection>();
            put(b, base + 8, &1u32.to_le_bytes());
            put(b, base + 12, &n.to_le_bytes());
        }
        Mutation::Word(w, v) => put(b, w * 8, &v.to_le_bytes()),
        Mutation::AllClasses(i, v) => {
            let classes = offset_of!(StatsFile, host) + offset_of!(HostSection, classes);
            for c in 0..MAX_CLASSES {
                put(
                    b,
                    classes + c * size_of::<ClassCounters>() + i * 8,
                    &v.to_le_bytes(),
                );
            }
        }
        Mutation::AllDevices(i, v) => {
            for d in 0..MAX_DEVICES {
                let base = offset_of!(StatsFile, devices) + d * size_of::<DeviceSection>();
                put(b, base + 8, &1u32.to_le_bytes());
                put(b, base + i * 8, &v.to_le_bytes());
            }
        }
        Mutation::OddSeq(d) => {
            let at = match d {
                None => offset_of!(StatsFile, host),
                Some(d) => offset_of!(StatsFile, devices) + d * size_of::<DeviceSection>(),
            };
            put(b, at, &7u64.to_le_bytes());
        }
    }
}

/// What the reader must say about a live file with mutation `m` (a substring of its
/// message), or `None` when it must read the file.
fn expected(m: &Mutation, me: u32, my_ticks: u64) -> Option<&'static str> {
    match m {
        Mutation::Magic(v) if *v != STATS_MAGIC => Some("bad magic"),
        Mutation::Version(v) if *v != poolside::stats::layout::STATS_VERSION => {
            Some("layout version")
        }
        Mutation::HeaderSize(v) if *v as usize != FILE_SIZE => Some("layout size"),
        Mutation::TotalSize(v) if *v != FILE_SIZE as u64 => Some("layout size"),
        Mutation::Pid(v) if *v != me => Some("header names PID"),
        Mutation::StartTicks(v) if *v != 0 && *v != my_ticks => Some("reused"),
        Mutation::OddSeq(_) => Some("writer stayed inside"),
        _ => None,
    }
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
    #![proptest_config(cases(96))]

    #[test]
    fn arbitrary_bytes_give_a_verdict(
        head in prop::collection::vec(any::<u8>(), 0..120),
        pad in prop_oneof![Just(0usize), 0..FILE_SIZE + 64, Just(FILE_SIZE)],
        live in any::<bool>(),
    ) {
        let dir = temp_dir("fuzz-bytes");
        let mut b = head;
        b.resize(b.len().max(pad), 0);
        let pid = if live { std::process::id() } else { dead_pid() };
        let v = examine_bytes(&dir, pid, &b, live);
        prop_assert!(!matches!(v, Verdict::Live(_)) || b[..8] == STATS_MAGIC.to_le_bytes());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn truncated_valid_files_are_reported_as_truncated(
        n in prop_oneof![1usize..80, 1..FILE_SIZE, Just(FILE_SIZE - 1)],
    ) {
        let dir = temp_dir("fuzz-trunc");
        let me = std::process::id();
        let v = examine_bytes(&dir, me, &valid_bytes(me)[..n], true);
        match v {
            Verdict::Invalid(m) => prop_assert!(m.contains("truncated"), "{n}: {m}"),
            other => prop_assert!(false, "{n} bytes: {other:?}"),
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn mutated_live_files_give_a_snapshot_or_the_right_message(
        ms in prop::collection::vec(mutation(), 1..4),
    ) {
        let dir = temp_dir("fuzz-mutate");
        let me = std::process::id();
        let my_ticks = start_ticks(me);
        let mut b = valid_bytes(me);
        for m in &ms {
            apply(&mut b, m);
        }
        let v = examine_bytes(&dir, me, &b, true);
        // With one mutation the verdict is known; with several, the first check the
        // reader makes wins, so only "no panic" is asserted.
        if let [m] = ms.as_slice() {
            match (expected(m, me, my_ticks), &v) {
                // No magic in a file just written: a creator at work.
                (_, Verdict::Creating) => prop_assert!(matches!(m, Mutation::Magic(0)), "{m:?}"),
                (None, Verdict::Live(s)) => prop_assert_eq!(s.pid, me),
                (Some(want), Verdict::Invalid(got) | Verdict::Stale(got)) => {
                    prop_assert!(got.contains(want), "{m:?}: {got}")
                }
                (want, got) => prop_assert!(false, "{m:?}: wanted {want:?}, got {got:?}"),
            }
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_directory_of_garbage_scans(
        files in prop::collection::vec(
            (prop_oneof![Just(0u32), Just(1), any::<u32>()], prop::collection::vec(any::<u8>(), 0..200)),
            0..6,
        ),
        odd_names in prop::collection::vec("poolside-[0-9a-z+-]{0,12}", 0..4),
    ) {
        let dir = temp_dir("fuzz-scan");
        let me = std::process::id();
        for (k, body) in &files {
            // Our PID, a dead one, or a random (probably absent) one.
            let pid = match k { 0 => me, 1 => dead_pid(), n => n % 4_000_000 + 1 };
            write(&dir, pid, body);
        }
        for n in &odd_names {
            std::fs::write(dir.join(n), b"x").unwrap();
        }
        let out = poolside_cli::reader::scan(&dir).unwrap();
        prop_assert!(out.warnings.len() <= files.len() + odd_names.len());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn file_names_parse_exactly(name in prop_oneof![
        any::<String>(),
        "poolside-[0-9+-]{0,25}",
        (any::<u32>(), any::<u32>()).prop_map(|(u, p)| FileName::format(u, p)),
    ]) {
        if let Some(f) = FileName::parse(&name) {
            // Leading zeros aside, what parses is the canonical name.
            let canonical = FileName::format(f.uid, f.pid);
            let trimmed: String = name.split('-').map(|part| {
                let t = part.trim_start_matches('0');
                if t.is_empty() && !part.is_empty() { "0" } else { t }
            }).collect::<Vec<_>>().join("-");
            prop_assert_eq!(trimmed, canonical);
        }
    }

    #[test]
    fn proc_stat_start_time_survives_any_command_name(
        comm in prop::collection::vec(any::<u8>(), 0..16),
        ticks in any::<u64>(),
        junk in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        // The kernel's line: pid (comm) state, then 49 numbers; field 22 is starttime.
        let mut line = b"4242 (".to_vec();
        line.extend_from_slice(&comm);
        line.extend_from_slice(b") S");
        for field in 4..=52 {
            let v = if field == 22 { ticks } else { field };
            line.extend_from_slice(format!(" {v}").as_bytes());
        }
        line.push(b'\n');
        let want = (ticks.to_string().len() <= 19).then_some(ticks);
        prop_assert_eq!(parse_start_ticks(&line), want);
        let _ = parse_start_ticks(&junk);
    }

    #[test]
    fn maps_lines_find_exactly_their_inode(
        major in 0u32..4096, minor in 0u32..1 << 20, ino in any::<u64>(),
        junk in "\\PC{0,200}",
    ) {
        let dev = libc::makedev(major, minor) as u64;
        let line = format!("7f00-7f10 rw-s 00000000 {major:02x}:{minor:02x} {ino} /dev/shm/x\n");
        prop_assert!(maps_inode(&line, dev, ino));
        prop_assert!(!maps_inode(&line, dev, ino ^ 1));
        let _ = maps_inode(&junk, dev, ino);
    }
}

/// Found by `mutated_live_files_give_a_snapshot_or_the_right_message`: one counter at
/// 2^64-1 in every class slot made the host report's sums overflow (a panic in debug
/// builds, a wrapped total in release).
#[test]
fn regression_counters_at_u64_max_in_every_class() {
    let dir = temp_dir("fuzz-regress-classes");
    let me = std::process::id();
    for field in 0..9 {
        let mut b = valid_bytes(me);
        apply(&mut b, &Mutation::AllClasses(field, u64::MAX));
        match examine_bytes(&dir, me, &b, true) {
            Verdict::Live(s) => {
                let r = poolside_cli::report::build::process(&s, false);
                if field == 1 {
                    assert_eq!(r.host.allocations, u64::MAX, "saturates, never wraps");
                }
            }
            other => panic!("field {field}: {other:?}"),
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Found by the same property: device byte counts at 2^64-1 overflowed `poolside top`'s
/// per-process totals when sorting by live or reserved bytes.
#[test]
fn regression_device_bytes_at_u64_max_in_every_device() {
    let dir = temp_dir("fuzz-regress-devices");
    let me = std::process::id();
    for field in [
        offset_of!(DeviceSection, allocated_bytes),
        offset_of!(DeviceSection, reserved_bytes),
    ] {
        let mut b = valid_bytes(me);
        apply(&mut b, &Mutation::AllDevices(field / 8, u64::MAX));
        match examine_bytes(&dir, me, &b, true) {
            Verdict::Live(s) => assert_eq!(s.devices.len(), MAX_DEVICES),
            other => panic!("{other:?}"),
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Found by a probe written next to these properties (not by them: it takes a race): the
/// reader mapped the file, so a file truncated between the size check and the copy raised
/// SIGBUS and killed the reader (`poolside export` with it). The copy uses pread now.
#[test]
fn regression_a_file_truncated_while_read_gives_a_message() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = temp_dir("fuzz-regress-truncate");
    let me = std::process::id();
    let p = write(&dir, me, &valid_bytes(me));
    // Mapped here so that the file counts as live; this process never reads the mapping.
    let _keep = Mapped::new(&p);
    let stop = Arc::new(AtomicBool::new(false));
    let truncator = {
        let (stop, p) = (stop.clone(), p.clone());
        std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.set_len(4096).unwrap();
                f.set_len(FILE_SIZE as u64).unwrap();
            }
        })
    };
    let mut live = 0;
    for _ in 0..3000 {
        match examine(
            &p,
            FileName {
                uid: uid(),
                pid: me,
            },
            uid(),
        ) {
            Verdict::Live(s) => {
                assert_eq!(s.pid, me);
                live += 1;
            }
            Verdict::Invalid(m) => assert!(
                m.contains("truncated") || m.contains("changed while being read"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    truncator.join().unwrap();
    println!("{live} of 3000 reads found the file whole");
    std::fs::remove_dir_all(dir).ok();
}
