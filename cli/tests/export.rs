//! The exporter's output parses as Prometheus text and carries the file's numbers.

mod common;

use common::*;
use prometheus_parse::{Scrape, Value};

fn value(scrape: &Scrape, name: &str, device: &str) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("device") == Some(device))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn serves_parseable_metrics_with_the_files_numbers() {
    let dir = temp_dir("export");
    let me = std::process::id();
    let mut f = stats_file(me);
    f.host.reserved_bytes = 1 << 21;
    f.host.classes[0].block_size = 8;
    f.host.classes[0].allocs = 5;
    f.host.classes[0].hits = 4;
    f.host.classes[0].misses = 1;
    f.host.classes[0].live_bytes = 40;
    f.devices[0].present = 1;
    f.devices[0].reserved_bytes.current = 8 << 20;
    f.devices[0].reserved_bytes.peak = 9 << 20;
    f.devices[0].ooms = 2;
    // A command line that needs escaping in a label.
    let cmd = b"say \"hi\"\\\0";
    f.cmdline[..cmd.len()].copy_from_slice(cmd);
    f.cmdline_len = cmd.len() as u32;
    let p = write(&dir, me, bytes(&f));
    let _keep = Mapped::new(&p);

    let (head, body) = Export::start(&dir).scrape_once();

    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let pid = me.to_string();
    assert!(scrape
        .samples
        .iter()
        .all(|s| s.labels.get("pid").is_none_or(|p| p == pid)));
    assert_eq!(
        value(&scrape, "poolside_reserved_bytes", "host"),
        Some((1 << 21) as f64)
    );
    assert_eq!(value(&scrape, "poolside_live_bytes", "host"), Some(40.0));
    assert_eq!(value(&scrape, "poolside_hits_total", "host"), Some(4.0));
    assert_eq!(value(&scrape, "poolside_hit_ratio", "host"), Some(0.8));
    assert_eq!(
        value(&scrape, "poolside_reserved_bytes", "cuda:0"),
        Some((8 << 20) as f64)
    );
    assert_eq!(
        value(&scrape, "poolside_peak_reserved_bytes", "cuda:0"),
        Some((9 << 20) as f64)
    );
    assert_eq!(value(&scrape, "poolside_ooms_total", "cuda:0"), Some(2.0));
    // Counters are typed as counters, and only they end in _total.
    for s in &scrape.samples {
        let is_counter = matches!(s.value, Value::Counter(_));
        assert_eq!(is_counter, s.metric.ends_with("_total"), "{}", s.metric);
    }
    let info = scrape
        .samples
        .iter()
        .find(|s| s.metric == "poolside_process_info")
        .unwrap();
    // prometheus-parse keeps escape sequences as written; the text format escapes `"` and
    // `\` with a backslash.
    assert_eq!(info.labels.get("command"), Some(r#"say \"hi\"\\"#));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn renders_exposition_without_processes() {
    let text = poolside_cli::export::prometheus::render(&[], 3);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let skipped = scrape
        .samples
        .iter()
        .find(|s| s.metric == "poolside_skipped_files")
        .unwrap();
    assert!(matches!(skipped.value, Value::Gauge(v) if v == 3.0));
}
