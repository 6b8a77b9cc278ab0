//! `poolside replay` end to end: the tool loads libpoolside_cuda.so (built beside it by
//! `cargo build --release -p poolside-cuda`, as .ci/test does) and replays a snapshot that
//! Python's own pickle wrote.

use std::path::PathBuf;
use std::process::Command;

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

#[test]
fn replays_a_snapshot_through_the_plugin() {
    let lib = plugin();
    let dir = std::env::temp_dir().join(format!("poolside-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snap = dir.join("snap.pickle");
    // Two 1 MiB blocks and one 8 MiB block on stream 0, freed; one free of an address the
    // trace never allocated (a trace starts mid-run).
    let script = format!(
        "import pickle\n\
         t=[dict(action='segment_alloc',addr=0x7f0000000000,size=20971520,stream=0)]\n\
         for i,s in enumerate([1<<20,1<<20,8<<20]): t.append(dict(action='alloc',addr=0x7f0000000000+i*(9<<20),size=s,stream=0))\n\
         for i,s in enumerate([1<<20,1<<20,8<<20]): t.append(dict(action='free_completed',addr=0x7f0000000000+i*(9<<20),size=s,stream=0))\n\
         t.append(dict(action='free_completed',addr=0x1234000,size=512,stream=0))\n\
         pickle.dump(dict(segments=[],device_traces=[t]),open({:?},'wb'))\n",
        snap.to_str().unwrap()
    );
    assert!(Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap()
        .success());
    let out = Command::new(env!("CARGO_BIN_EXE_poolside"))
        .args(["replay", "--json"])
        .arg(&snap)
        .env("POOLSIDE_CUDA_LIB", &lib)
        .env("POOLSIDE_CONF", "stats:false")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peak = v["poolside"]["peak_allocated_bytes"].as_u64().unwrap();
    assert!(
        peak >= 10 << 20,
        "peak allocated {peak} below the 10 MiB live at once: {v}"
    );
    assert!(v["pytorch"].is_object(), "{v}");

    // Garbage gets a message and a non-zero exit, not a crash.
    std::fs::write(&snap, b"not a pickle").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_poolside"))
        .args(["replay"])
        .arg(&snap)
        .env("POOLSIDE_CUDA_LIB", &lib)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("poolside replay:"));
    std::fs::remove_dir_all(dir).unwrap();
}
