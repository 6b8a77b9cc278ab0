//! The device pool on the simulated driver: layout, streams, expandable segments, every
//! out-of-memory path and injected driver failure, and threads. Stream safety
//! (record_stream, events) is in streams.rs.

use poolside_cuda::config::PluginConfig;
use poolside_cuda::driver::sim::{SimCall, SimDriver, CUDA_ERROR_LAUNCH_FAILED};
use poolside_cuda::driver::CUDA_ERROR_OUT_OF_MEMORY;
use poolside_cuda::pool::{AllocError, DevicePool};
use std::sync::Arc;

const MIB: usize = 1 << 20;

fn setup(capacity_mb: u64, conf: &str) -> (Arc<SimDriver>, DevicePool) {
    let driver = Arc::new(SimDriver::new(2, capacity_mb << 20));
    let mut cfg = PluginConfig::default();
    cfg.apply("TEST", conf, true);
    let pool = DevicePool::new(driver.clone(), 0, &cfg).unwrap();
    (driver, pool)
}

fn rng(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn random_workload_keeps_blocks_disjoint_aligned_and_counted() {
    for conf in ["", "expandable_segments:false"] {
        let (driver, pool) = setup(65536, conf);
        let mut live = Vec::new();
        let mut x = 99u64;
        for i in 0..4000 {
            if !rng(&mut x).is_multiple_of(3) || live.is_empty() {
                let size = match rng(&mut x) % 4 {
                    0 => (rng(&mut x) % 2048) as usize + 1,
                    1 => (rng(&mut x) % MIB as u64) as usize + 1,
                    _ => (rng(&mut x) % (40 * MIB as u64)) as usize + MIB + 1,
                };
                let stream = rng(&mut x) % 3;
                let p = pool.malloc(size, stream).unwrap();
                assert_eq!(p % 512, 0);
                live.push((p, size));
            } else {
                let k = (rng(&mut x) as usize) % live.len();
                let (p, _) = live.swap_remove(k);
                pool.free(p).unwrap();
            }
            if i % 200 == 0 {
                pool.check().unwrap();
            }
        }
        let s = pool.stats();
        assert_eq!(s.allocations.current, live.len() as u64);
        assert_eq!(
            s.requested_bytes.current,
            live.iter().map(|l| l.1 as u64).sum::<u64>()
        );
        for (p, _) in live {
            pool.free(p).unwrap();
        }
        pool.check().unwrap();
        pool.empty_cache();
        assert_eq!(pool.stats().reserved_bytes.current, 0, "conf {conf}");
        assert_eq!(driver.used(0), 0);
        assert_eq!(driver.misuse(), 0);
    }
}

#[test]
fn freed_block_is_reused_at_once_on_its_stream_only() {
    let (_d, pool) = setup(1024, "");
    let a = pool.malloc(4 * MIB, 1).unwrap();
    pool.free(a).unwrap();
    assert_eq!(
        pool.malloc(4 * MIB, 1).unwrap(),
        a,
        "same stream reuses at once"
    );
    let b = pool.malloc(4 * MIB, 2).unwrap();
    assert_ne!(a, b, "another stream has its own memory");
    let s = pool.malloc(1000, 1).unwrap();
    pool.free(s).unwrap();
    assert_ne!(pool.malloc(1000, 2).unwrap(), s);
    pool.check().unwrap();
}

#[test]
fn expandable_segment_grows_and_shrinks() {
    let (driver, pool) = setup(1024, "");
    assert!(pool.is_expandable());
    let blocks: Vec<_> = (0..8).map(|_| pool.malloc(10 * MIB, 0).unwrap()).collect();
    // One reservation: blocks are contiguous, pages mapped only under them.
    for w in blocks.windows(2) {
        assert_eq!(w[1] - w[0], 10 * MIB as u64);
    }
    assert_eq!(driver.used(0), 80 * MIB as u64);
    assert_eq!(pool.stats().reserved_bytes.current, 80 * MIB as u64);
    for &b in &blocks[2..] {
        pool.free(b).unwrap();
    }
    assert_eq!(driver.used(0), 80 * MIB as u64, "freed memory stays cached");
    pool.empty_cache();
    assert_eq!(driver.used(0), 20 * MIB as u64, "fully free pages unmapped");
    pool.check().unwrap();
    let again = pool.malloc(30 * MIB, 0).unwrap();
    assert_eq!(again, blocks[2], "grows at the lowest free address");
    assert_eq!(driver.used(0), 50 * MIB as u64);
    pool.check().unwrap();
}

#[test]
fn oom_releases_cache_then_reports_like_pytorch() {
    let (driver, pool) = setup(100, "");
    // Cache 60 MiB on stream 1, then ask for 80 MiB on stream 2: step 1 frees it.
    let a = pool.malloc(60 * MIB, 1).unwrap();
    pool.free(a).unwrap();
    let b = pool.malloc(80 * MIB, 2).unwrap();
    let s = pool.stats();
    assert_eq!(s.alloc_retries, 1);
    assert_eq!(s.ooms, 0);
    // Now nothing can free 40 MiB more.
    let err = pool.malloc(40 * MIB, 2).unwrap_err();
    let AllocError::OutOfMemory(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.starts_with("CUDA out of memory. Tried to allocate 40.00 MiB. GPU 0 has a total capacity of 100.00 MiB of which 20.00 MiB is free."), "{msg}");
    assert!(msg.contains("80.00 MiB is allocated by poolside"), "{msg}");
    let s = pool.stats();
    assert_eq!(s.ooms, 1);
    assert_eq!(s.alloc_retries, 3);
    pool.check().unwrap();
    pool.free(b).unwrap();
    assert!(pool.malloc(90 * MIB, 2).is_ok(), "the pool still works");
    assert_eq!(driver.misuse(), 0);
}

#[test]
fn small_pool_oom_and_memory_fraction() {
    let (_d, pool) = setup(64, "");
    pool.set_memory_fraction(0.25).unwrap(); // 16 MiB
    assert!(pool.set_memory_fraction(1.5).is_err());
    let mut blocks = Vec::new();
    loop {
        match pool.malloc(MIB, 0) {
            Ok(p) => blocks.push(p),
            Err(AllocError::OutOfMemory(m)) => {
                assert!(
                    m.contains("limited to 16.00 MiB by the memory fraction"),
                    "{m}"
                );
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
        assert!(blocks.len() < 100);
    }
    assert!(pool.stats().reserved_bytes.current <= 16 * MIB as u64);
    pool.check().unwrap();
    for p in blocks {
        pool.free(p).unwrap();
    }
    pool.check().unwrap();
}

#[test]
fn every_injected_driver_failure_leaves_the_pool_consistent() {
    let calls = [
        SimCall::Reserve,
        SimCall::Map,
        SimCall::Malloc,
        SimCall::Unmap,
        SimCall::Free,
        SimCall::Synchronize,
        SimCall::MemInfo,
        SimCall::Release,
    ];
    for conf in ["", "expandable_segments:false"] {
        for &call in &calls {
            for code in [CUDA_ERROR_OUT_OF_MEMORY, CUDA_ERROR_LAUNCH_FAILED] {
                for skip in [0, 1, 3] {
                    let (driver, pool) = setup(512, conf);
                    driver.inject(call, skip, 2, code);
                    let mut live = Vec::new();
                    for (i, size) in [100usize, 3 * MIB, 700_000, 30 * MIB, 5000, 12 * MIB]
                        .iter()
                        .cycle()
                        .take(24)
                        .enumerate()
                    {
                        match pool.malloc(*size, (i % 2) as u64) {
                            Ok(p) => live.push(p),
                            Err(AllocError::OutOfMemory(m)) => {
                                assert!(m.starts_with("CUDA out of memory. Tried to allocate"))
                            }
                            Err(AllocError::Driver(m)) => assert!(m.contains("failed"), "{m}"),
                        }
                        if i % 5 == 4 {
                            if let Some(p) = live.pop() {
                                pool.free(p).unwrap();
                            }
                            pool.empty_cache();
                        }
                        pool.check()
                            .unwrap_or_else(|e| panic!("{call:?} {code} {skip} {conf}: {e}"));
                    }
                    driver.clear_faults();
                    for p in live {
                        pool.free(p).unwrap();
                    }
                    pool.empty_cache();
                    pool.check().unwrap();
                    assert_eq!(driver.misuse(), 0, "{call:?} {code} {skip} {conf}");
                    assert!(pool.malloc(MIB * 4, 0).is_ok());
                }
            }
        }
    }
}

#[test]
fn bad_input_is_refused_without_damage() {
    let (driver, pool) = setup(64, "");
    let a = pool.malloc(1000, 0).unwrap();
    assert!(pool.free(a + 512).is_err());
    assert!(pool.free(0xdead_0000).is_err());
    pool.free(a).unwrap();
    assert!(pool.free(a).is_err(), "double free");
    assert_eq!(pool.invalid_frees(), 3);
    assert_eq!(pool.malloc(0, 0), Ok(0));
    assert!(DevicePool::new(driver.clone(), 5, &PluginConfig::default()).is_err());
    assert!(DevicePool::new(driver, -1, &PluginConfig::default()).is_err());
    pool.check().unwrap();
}

#[test]
fn max_split_size_keeps_big_cached_blocks_whole() {
    let (_d, pool) = setup(2048, "expandable_segments:false,max_split_size_mb:100");
    let big = pool.malloc(200 * MIB, 0).unwrap();
    pool.free(big).unwrap();
    let small = pool.malloc(30 * MIB, 0).unwrap();
    assert_ne!(small, big, "a 200 MiB cached block does not serve 30 MiB");
    let near = pool.malloc(210 * MIB, 0).unwrap();
    assert_ne!(near, big, "too small");
    pool.free(near).unwrap();
    let fits = pool.malloc(190 * MIB, 0).unwrap();
    assert_eq!(fits, big, "within 20 MiB of its size");
    assert_eq!(
        pool.base_alloc(fits + 100).unwrap(),
        (big, 200 * MIB as u64)
    );
    pool.check().unwrap();
}

#[test]
fn threads_hammering_one_pool() {
    let (driver, pool) = setup(8192, "");
    let pool = Arc::new(pool);
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut x = 7 + t;
                let mut live = Vec::new();
                for _ in 0..3000 {
                    if rng(&mut x).is_multiple_of(2) || live.is_empty() {
                        let size = if rng(&mut x).is_multiple_of(4) {
                            2 * MIB + (rng(&mut x) % (8 * MIB as u64)) as usize
                        } else {
                            (rng(&mut x) % 100_000) as usize + 1
                        };
                        live.push(pool.malloc(size, t % 2).unwrap());
                    } else {
                        let k = rng(&mut x) as usize % live.len();
                        pool.free(live.swap_remove(k)).unwrap();
                    }
                }
                for p in live {
                    pool.free(p).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    pool.check().unwrap();
    assert_eq!(pool.stats().allocations.current, 0);
    pool.empty_cache();
    assert_eq!(driver.used(0), 0);
}

#[test]
fn stats_track_peaks_and_reset() {
    let (driver, pool) = setup(1024, "");
    let a = pool.malloc(30 * MIB, 0).unwrap();
    let b = pool.malloc(1000, 0).unwrap();
    pool.free(a).unwrap();
    let s = pool.stats();
    assert_eq!(s.allocated_bytes.peak, 30 * MIB as u64 + 1024);
    assert_eq!(s.allocated_bytes.current, 1024);
    assert_eq!(s.requested_bytes.current, 1000);
    assert_eq!(s.reserved_bytes.current, driver.used(0));
    pool.reset_peak_stats();
    assert_eq!(pool.stats().allocated_bytes.peak, 1024);
    pool.free(b).unwrap();
}

#[test]
fn shared_stats_section_follows_the_pool() {
    // Device 1: the section in this process's stats (process memory, or the file).
    let driver = Arc::new(SimDriver::new(2, 1 << 30));
    let pool = DevicePool::new(driver, 1, &PluginConfig::default()).unwrap();
    let p = pool.malloc(5 * MIB, 0).unwrap();
    let sec = poolside::stats::shm::device_section(1);
    // SAFETY: the section is valid for the life of the process; the pool is idle.
    let copy = unsafe { poolside::stats::seqlock::read(sec, 100) }.unwrap();
    assert_eq!(copy.present, 1);
    assert_eq!(copy.allocated_bytes.current, 5 * MIB as u64);
    assert_eq!(
        copy.reserved_bytes.current,
        pool.stats().reserved_bytes.current
    );
    pool.free(p).unwrap();
    // SAFETY: as above.
    let copy = unsafe { poolside::stats::seqlock::read(sec, 100) }.unwrap();
    assert_eq!(copy.allocated_bytes.current, 0);
    assert_eq!(copy.allocated_bytes.peak, 5 * MIB as u64);
}

#[test]
fn garbage_collection_threshold_releases_cache_before_growing() {
    let (driver, pool) = setup(100, "garbage_collection_threshold:0.6");
    pool.set_memory_fraction(0.5).unwrap(); // 50 MiB allowed, collect above 30 MiB
    let a = pool.malloc(20 * MIB, 1).unwrap();
    pool.free(a).unwrap();
    let b = pool.malloc(20 * MIB, 2).unwrap();
    assert_eq!(
        driver.used(0),
        40 * MIB as u64,
        "stream 1's block is cached"
    );
    let c = pool.malloc(4 * MIB, 2).unwrap();
    assert_eq!(
        driver.used(0),
        24 * MIB as u64,
        "over 30 MiB: the cache went first"
    );
    pool.free(b).unwrap();
    pool.free(c).unwrap();
    pool.check().unwrap();
}

#[test]
fn roundup_power2_divisions_round_large_requests() {
    let (_d, pool) = setup(1024, "roundup_power2_divisions:4");
    let p = pool.malloc(5 * MIB + 1, 0).unwrap();
    // [4 MiB, 8 MiB) in quarters of 1 MiB: 6 MiB.
    assert_eq!(pool.stats().allocated_bytes.current, 6 * MIB as u64);
    assert_eq!(pool.stats().requested_bytes.current, 5 * MIB as u64 + 1);
    pool.free(p).unwrap();
}

/// Issue 16: sizes from `SIZE_MAX` down past the rounding range used to wrap to a
/// zero-size block that every such call shared. Each must now be an out-of-memory with
/// PyTorch's message, counted once, leaving the pool's figures and blocks as they were.
#[test]
fn sizes_near_size_max_are_out_of_memory_and_change_nothing() {
    for conf in [
        "",
        "expandable_segments:false",
        "roundup_power2_divisions:4",
    ] {
        let (_driver, pool) = setup(1024, conf);
        let kept = pool.malloc(3 * MIB, 0).unwrap();
        let before = pool.stats();
        let sizes = [
            usize::MAX,
            usize::MAX - 1,
            usize::MAX - 0x1fe,
            usize::MAX - 511,
            0xffff_ffff_ffdf_ffff,
            usize::MAX / 2 + 1,
            (1usize << 40) + 1,
            (1024 * MIB) + 1,
        ];
        for (i, &size) in sizes.iter().enumerate() {
            match pool.malloc(size, 0) {
                Err(AllocError::OutOfMemory(m)) => {
                    assert!(
                        m.starts_with("CUDA out of memory. Tried to allocate "),
                        "{m}"
                    );
                    assert!(m.contains("GPU 0 has a total capacity of 1.00 GiB"), "{m}");
                }
                other => panic!("{conf}: malloc({size:#x}) gave {other:?}"),
            }
            let s = pool.stats();
            assert_eq!(s.ooms, before.ooms + i as u64 + 1, "{conf}");
            assert_eq!(s.requested_bytes.current, before.requested_bytes.current);
            assert_eq!(s.allocated_bytes.current, before.allocated_bytes.current);
            assert_eq!(s.allocations.current, 1);
            assert_eq!(s.reserved_bytes.current, before.reserved_bytes.current);
        }
        pool.check().unwrap();
        // The block held across the failures is intact, and the pool still serves.
        assert_eq!(pool.base_alloc(kept).map(|b| b.0), Some(kept));
        let p = pool.malloc(5 * MIB, 0).unwrap();
        assert_ne!(p, kept);
        pool.free(p).unwrap();
        pool.free(kept).unwrap();
        pool.check().unwrap();
    }
}
