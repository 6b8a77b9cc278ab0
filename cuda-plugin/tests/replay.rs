//! `poolside_cuda::replay::run` on generated snapshots: figures, stray frees, PyTorch's
//! side from segment events, and refusal of files that are not snapshots.

mod common;

use common::TraceWriter;
use poolside_cuda::replay::run;

fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("poolside-replay-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn field(json: &str, side: &str, key: &str) -> f64 {
    let at = json.find(&format!("\"{side}\"")).unwrap();
    let rest = &json[at..];
    let k = rest.find(&format!("\"{key}\": ")).unwrap() + key.len() + 4;
    let end = rest[k..].find([',', '}']).unwrap();
    rest[k..k + end].trim().parse().unwrap()
}

#[test]
fn replays_and_reports_both_allocators() {
    let mut t = TraceWriter::default();
    t.stray_free(0xabc000);
    t.segment("segment_alloc", 20 << 20);
    let a = t.alloc(3 << 20, 0);
    let b = t.alloc(1000, 0);
    t.free(a, 0);
    let c = t.alloc(5 << 20, 1);
    t.free(b, 0);
    t.free(c, 1);
    let path = write("basic.pickle", &t.pickle());
    let json = run(&path, true).unwrap();
    assert!(
        json.starts_with("{\"poolside\": {\"peak_allocated_bytes\": "),
        "{json}"
    );
    // The peak: 5 MiB on stream 1 while the small block (1000 B, rounded to 1024) lives.
    assert_eq!(
        field(&json, "poolside", "peak_allocated_bytes"),
        ((5 << 20) + 1024) as f64
    );
    assert_eq!(field(&json, "poolside", "unknown_frees"), 1.0);
    assert_eq!(field(&json, "poolside", "allocs"), 3.0);
    assert_eq!(
        field(&json, "pytorch", "peak_reserved_bytes"),
        (20 << 20) as f64
    );
    assert_eq!(
        field(&json, "pytorch", "peak_allocated_bytes"),
        ((5 << 20) + 1000) as f64
    );
    let text = run(&path, false).unwrap();
    assert!(
        text.contains("peak reserved") && text.contains("1 free(s)"),
        "{text}"
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn refuses_what_is_not_a_snapshot() {
    let p = write("bad.pickle", b"not a pickle");
    assert!(run(&p, true)
        .unwrap_err()
        .contains("not a PyTorch memory snapshot"));
    // A pickle that names a Python global (it would need code to load) is refused.
    let global =
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.";
    let p2 = write("global.pickle", global);
    assert!(run(&p2, true).is_err());
    assert!(run(std::path::Path::new("/nonexistent/x.pickle"), true)
        .unwrap_err()
        .contains("cannot read"));
    std::fs::remove_file(p).ok();
    std::fs::remove_file(p2).ok();
}
