//! Synthetic workloads, written as PyTorch snapshots and replayed through the pool on the
//! simulated driver: with expandable segments, peak reserved stays within 5% of peak
//! allocated.

mod common;

use common::{kv_cache_inference, transformer_training};
use poolside_cuda::config::PluginConfig;
use poolside_cuda::replay::{run::replay, snapshot::parse};

fn ratio(pickle: &[u8], conf: &str) -> (f64, u64, u64) {
    let traces = parse(pickle).unwrap();
    let mut cfg = PluginConfig::default();
    cfg.apply("TEST", conf, true);
    let f = replay(&traces, &cfg).unwrap();
    assert_eq!(f.ooms, 0);
    assert_eq!(f.unknown_frees, 0);
    (
        f.peak_reserved_bytes as f64 / f.peak_allocated_bytes as f64,
        f.peak_reserved_bytes,
        f.peak_allocated_bytes,
    )
}

#[test]
fn transformer_training_with_varying_sequence_lengths() {
    let pickle = transformer_training(30, 42).pickle();
    let (r, res, alloc) = ratio(&pickle, "");
    println!("training: reserved {res} allocated {alloc} ratio {r:.4}");
    assert!(
        r <= 1.05,
        "peak reserved {res} > 1.05 x peak allocated {alloc}"
    );
}

#[test]
fn inference_with_a_growing_kv_cache() {
    let pickle = kv_cache_inference(300, 7).pickle();
    let (r, res, alloc) = ratio(&pickle, "");
    println!("kv cache: reserved {res} allocated {alloc} ratio {r:.4}");
    assert!(
        r <= 1.05,
        "peak reserved {res} > 1.05 x peak allocated {alloc}"
    );
}

#[test]
fn cumemalloc_segments_replay_cleanly_too() {
    // No bound claimed for the fallback, only that it serves the same trace.
    let pickle = kv_cache_inference(50, 3).pickle();
    let (r, _, _) = ratio(&pickle, "expandable_segments:false");
    assert!(r >= 1.0);
}
