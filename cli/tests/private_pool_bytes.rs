//! The device section's private_pool_bytes (memory CUDA graphs' private pools hold)
//! reaches `poolside stat`, its JSON and the Prometheus exposition, read from a stats file
//! laid out as the plugin writes it.

mod common;

use common::*;
use poolside_cli::{export::prometheus, reader, report::build};
use prometheus_parse::{Scrape, Value};

#[test]
fn private_pool_bytes_show_in_stat_json_and_prometheus() {
    let dir = temp_dir("private-pool");
    let me = std::process::id();
    let mut f = stats_file(me);
    for (i, d) in f.devices.iter_mut().take(2).enumerate() {
        d.present = 1;
        d.device = i as i32;
    }
    f.devices[0].reserved_bytes.current = 96 << 20;
    f.devices[0].private_pool_bytes.current = 40 << 20;
    f.devices[0].private_pool_bytes.peak = 64 << 20;
    let p = write(&dir, me, bytes(&f));
    let _keep = Mapped::new(&p);
    let stat = |extra: &[&str]| stat_in(&dir, extra);

    let out = stat(&[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{me} cuda:0: "))
            && text.contains("held by CUDA graphs' private pools"),
        "{text}"
    );
    assert!(!text.contains("cuda:1: "), "{text}");

    let out = stat(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = &v[0]["devices"][0]["private_pool_bytes"];
    assert_eq!([&g["current"], &g["peak"]], [40u64 << 20, 64u64 << 20]);
    assert_eq!(v[0]["devices"][1]["private_pool_bytes"]["current"], 0);

    let report = build::process(&reader::read_pid(&dir, me).unwrap(), false);
    let text = prometheus::render(&[report], 0);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |dev: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "poolside_private_pool_bytes" && s.labels.get("device") == Some(dev)
            })
            .map(|s| match s.value {
                Value::Gauge(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(value("cuda:0"), Some((40u64 << 20) as f64));
    assert_eq!(value("cuda:1"), Some(0.0));
    std::fs::remove_dir_all(dir).unwrap();
}
