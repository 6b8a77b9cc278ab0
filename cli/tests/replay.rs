//! `poolside replay` end to end: the tool loads libpoolside_cuda.so (built beside it by
//! `cargo build --release -p poolside-cuda`, as .ci/test does) and replays snapshots that
//! Python's own pickle wrote the way PyTorch writes them (frames shared through the memo):
//! cuda-plugin/tests/data/snapshots, made by cuda-plugin/tests/data/make_snapshots.py.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn plugin() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_poolside"));
    let lib = exe.parent().unwrap().join("libpoolside_cuda.so");
    assert!(
        lib.is_file(),
        "{} missing: build it with cargo build -p poolside-cuda (same profile)",
        lib.display()
    );
    lib
}

fn snapshot(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cuda-plugin/tests/data/snapshots")
        .join(name)
}

fn replay(args: &[&str], snap: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolside"))
        .arg("replay")
        .args(args)
        .arg(snap)
        .env("POOLSIDE_CUDA_LIB", plugin())
        .env("POOLSIDE_CONF", "stats:false")
        .output()
        .unwrap()
}

#[test]
fn replays_a_snapshot_that_python_pickled_with_shared_frames() {
    let out = replay(&["--json"], &snapshot("multi_gpu_p4.pickle"));
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{v}");
    for d in devices {
        let alloc = d["peak_allocated_bytes"].as_u64().unwrap();
        let pytorch = d["pytorch"]["peak_reserved_bytes"].as_u64().unwrap();
        assert!(alloc > 0 && pytorch >= alloc, "{d}");
        for side in ["poolside", "poolside_expandable_false"] {
            let r = d[side]["peak_reserved_bytes"].as_u64().unwrap();
            assert!(r >= alloc, "{side}: {d}");
        }
        // The trace starts mid-run: the blocks live before it were allocated first.
        assert_eq!(d["trace"]["starts_mid_run"], true, "{d}");
        assert_eq!(d["not_replayed"], 0, "{d}");
        assert_eq!(d["capacity_source"], "pytorch_peak_reserved", "{d}");
    }
    // The human form: a table per device.
    let out = replay(&[], &snapshot("multi_gpu_p4.pickle"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for want in [
        "device 0:",
        "device 1:",
        "peak reserved",
        "expandable:false",
        "mid-run",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
}

#[test]
fn a_cut_short_snapshot_is_replayed_and_said_so() {
    let out = replay(&[], &snapshot("cut_short_p4.pickle"));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cut short"), "{text}");
}

#[test]
fn bad_snapshots_get_a_message_and_exit_1() {
    let dir = std::env::temp_dir().join(format!("poolside-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snap = dir.join("bad.pickle");
    // A list nested 10,000 deep (what pickle.dumps writes for it): refused, no abort.
    let mut deep = vec![0x80, 4];
    deep.extend(std::iter::repeat_n([b']', 0x94], 10_000).flatten());
    deep.extend(std::iter::repeat_n(b'a', 9_999));
    deep.push(b'.');
    std::fs::write(&snap, &deep).unwrap();
    let out = replay(&[], &snap);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("poolside replay:") && err.contains("nested deeper than"),
        "{err}"
    );
    // A pickle that would run code.
    std::fs::write(
        &snap,
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.",
    )
    .unwrap();
    let out = replay(&[], &snap);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused") && err.contains("os.system"),
        "{err}"
    );
    // Garbage.
    std::fs::write(&snap, b"not a pickle").unwrap();
    let out = replay(&[], &snap);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("poolside replay:"));
    std::fs::remove_dir_all(dir).unwrap();
}
