//! The device section's record_stream counters (event_record_failures,
//! event_query_failures, sync_fallbacks) reach `poolside stat`, its JSON and the
//! Prometheus exposition, read from a stats file laid out as the plugin writes it.

mod common;

use common::*;
use poolside_cli::{export::prometheus, reader, report::build};
use prometheus_parse::{Scrape, Value};

#[test]
fn stream_safety_counters_show_in_stat_json_and_prometheus() {
    let dir = temp_dir("stream-counters");
    let me = std::process::id();
    let mut f = stats_file(me);
    for (i, d) in f.devices.iter_mut().take(2).enumerate() {
        d.present = 1;
        d.device = i as i32;
    }
    f.devices[0].event_record_failures = 3;
    f.devices[0].event_query_failures = 5;
    f.devices[0].sync_fallbacks = 7;
    let p = write(&dir, me, bytes(&f));
    let _keep = Mapped::new(&p);
    let stat = |extra: &[&str]| stat_in(&dir, extra);

    let out = stat(&[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "{me} cuda:0: record_stream events failed (3 records, 5 queries); 7 device synchronizes ran instead"
        )),
        "{text}"
    );
    assert!(!text.contains("cuda:1: record_stream"), "{text}");

    let out = stat(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d0 = &v[0]["devices"][0];
    assert_eq!(
        [
            &d0["event_record_failures"],
            &d0["event_query_failures"],
            &d0["sync_fallbacks"]
        ],
        [3, 5, 7]
    );
    assert_eq!(v[0]["devices"][1]["sync_fallbacks"], 0);

    let report = build::process(&reader::read_pid(&dir, me).unwrap(), false);
    let text = prometheus::render(&[report], 0);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, dev: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("device") == Some(dev))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        value("poolside_event_record_failures_total", "cuda:0"),
        Some(3.0)
    );
    assert_eq!(
        value("poolside_event_query_failures_total", "cuda:0"),
        Some(5.0)
    );
    assert_eq!(value("poolside_sync_fallbacks_total", "cuda:0"), Some(7.0));
    assert_eq!(value("poolside_sync_fallbacks_total", "cuda:1"), Some(0.0));
    std::fs::remove_dir_all(dir).unwrap();
}
