//! Small blocks (up to 1 MiB) share device pages, as PyTorch's small pool packs them into
//! shared 2 MiB segments: mixed sizes on one page, a page given back only once its last
//! block is gone, no sharing across streams or with a CUDA graph's private pool, and the
//! published figures equal to a walk at every step. Both modes: expandable segments and
//! cuMemAlloc segments. (The old small pool kept one 2 MiB page per size class and stream:
//! every test here that counts reserved bytes fails on it.)

use poolside_cuda::config::PluginConfig;
use poolside_cuda::driver::sim::SimDriver;
use poolside_cuda::pool::graph_pool::Filter;
use poolside_cuda::pool::DevicePool;
use std::sync::Arc;

const MIB: u64 = 1 << 20;
const PAGE: u64 = 2 * MIB;
const CONFS: [&str; 2] = ["", "expandable_segments:false"];

fn setup(conf: &str) -> DevicePool {
    let driver = Arc::new(SimDriver::new(1, 4096 * MIB));
    let mut cfg = PluginConfig::default();
    cfg.apply("TEST", conf, true);
    DevicePool::new(driver, 0, &cfg).unwrap()
}

/// The pool's invariants, and the published figures against a walk of its structures.
fn checked(pool: &DevicePool) {
    pool.check().unwrap();
    let s = pool.stats();
    assert_eq!(
        pool.figures_by_walk(),
        (s.cached_bytes, s.largest_free_block)
    );
    let segs = pool.segments();
    let listed: u64 = segs.iter().map(|g| g.total_size).sum();
    assert_eq!(
        listed, s.reserved_bytes.current,
        "segments add up to reserved"
    );
    let live: u64 = segs.iter().map(|g| g.allocated_size()).sum();
    assert_eq!(
        live, s.allocated_bytes.current,
        "blocks add up to allocated"
    );
}

/// 30 sizes from 512 B to 45 KiB, 683 KiB in all, in 22 size classes of the old pool
/// (`poolside::detached`, which gave each class a page of its own).
fn sizes() -> Vec<usize> {
    let v: Vec<usize> = (0..30).map(|i| 512 + i * 1536).collect();
    let classes: std::collections::BTreeSet<_> = v
        .iter()
        .map(|&s| poolside::detached::class_for_request(s))
        .collect();
    assert_eq!(classes.len(), 22);
    v
}

#[test]
fn mixed_small_sizes_share_one_page() {
    for conf in CONFS {
        let pool = setup(conf);
        let sizes = sizes();
        let total: u64 = sizes.iter().map(|&s| (s as u64).div_ceil(512) * 512).sum();
        assert!(total < PAGE);
        let mut blocks = Vec::new();
        for &s in &sizes {
            let p = pool.malloc(s, 0).unwrap();
            assert_eq!(p % 512, 0);
            blocks.push(p);
            checked(&pool);
        }
        let s = pool.stats();
        assert_eq!(
            s.reserved_bytes.current, PAGE,
            "{conf}: one page for all of them"
        );
        assert_eq!(
            s.allocated_bytes.current, total,
            "{conf}: rounded to 512 B only"
        );
        let pages: std::collections::BTreeSet<u64> = blocks.iter().map(|p| p / PAGE).collect();
        assert_eq!(pages.len(), 1, "{conf}");
        for p in blocks {
            pool.free(p).unwrap();
        }
        checked(&pool);
    }
}

#[test]
fn a_page_is_given_back_once_its_last_block_is_gone() {
    for conf in CONFS {
        let pool = setup(conf);
        let blocks: Vec<u64> = sizes()
            .iter()
            .map(|&s| pool.malloc(s, 0).unwrap())
            .collect();
        let (last, rest) = blocks.split_last().unwrap();
        for &p in rest {
            pool.free(p).unwrap();
        }
        let s = pool.stats();
        // The page still holds a block: nothing to give back, the rest is fragmentation.
        assert_eq!(s.cached_bytes, 0, "{conf}");
        assert_eq!(
            s.fragmented_bytes.current,
            PAGE - s.allocated_bytes.current,
            "{conf}"
        );
        pool.empty_cache();
        assert_eq!(pool.stats().reserved_bytes.current, PAGE, "{conf}");
        checked(&pool);
        pool.free(*last).unwrap();
        let s = pool.stats();
        assert_eq!(
            (s.cached_bytes, s.fragmented_bytes.current),
            (PAGE, 0),
            "{conf}"
        );
        checked(&pool);
        pool.empty_cache();
        assert_eq!(pool.stats().reserved_bytes.current, 0, "{conf}");
        checked(&pool);
    }
}

#[test]
fn streams_never_share_a_page_and_reuse_only_their_own_blocks() {
    for conf in CONFS {
        let pool = setup(conf);
        let a: Vec<u64> = sizes()
            .iter()
            .map(|&s| pool.malloc(s, 1).unwrap())
            .collect();
        let b: Vec<u64> = sizes()
            .iter()
            .map(|&s| pool.malloc(s, 2).unwrap())
            .collect();
        for x in &a {
            assert!(b.iter().all(|y| x / PAGE != y / PAGE), "{conf}");
        }
        assert_eq!(pool.stats().reserved_bytes.current, 2 * PAGE, "{conf}");
        // A block freed on stream 1 goes back to stream 1 only.
        pool.free(a[7]).unwrap();
        let on_2 = pool.malloc(sizes()[7], 2).unwrap();
        assert_ne!(on_2, a[7], "{conf}");
        assert_ne!(on_2 / PAGE, a[0] / PAGE, "{conf}");
        assert_eq!(pool.malloc(sizes()[7], 1).unwrap(), a[7], "{conf}");
        checked(&pool);
    }
}

#[test]
fn a_graph_private_pool_packs_its_small_blocks_apart_from_the_general_pool() {
    for conf in CONFS {
        let pool = setup(conf);
        let general = pool.malloc(4096, 5).unwrap();
        pool.begin_allocate_to_pool((3, 0), Filter::new(|s| s == 5))
            .map_err(|e| e.0)
            .unwrap();
        let private: Vec<u64> = sizes()
            .iter()
            .map(|&s| pool.malloc(s, 5).unwrap())
            .collect();
        pool.end_allocate_to_pool((3, 0)).unwrap();
        for &p in &private {
            assert_eq!(pool.private_pool_of(p), Some((3, 0)), "{conf}");
            assert_ne!(p / PAGE, general / PAGE, "{conf}");
        }
        let s = pool.stats();
        // One page for the general block, one for all the graph's blocks.
        assert_eq!(s.reserved_bytes.current, 2 * PAGE, "{conf}");
        assert_eq!(s.private_pool_bytes.current, PAGE, "{conf}");
        checked(&pool);
        // Freed, the graph's blocks go back to its pool, whose page stays reserved (a
        // replay writes there) until the pool is released.
        for p in private {
            pool.free(p).unwrap();
        }
        let again = pool.malloc(4096, 5).unwrap();
        assert_eq!(pool.private_pool_of(again), None, "{conf}");
        assert_eq!(again / PAGE, general / PAGE, "{conf}");
        pool.empty_cache();
        assert_eq!(pool.stats().reserved_bytes.current, 2 * PAGE, "{conf}");
        checked(&pool);
        pool.release_pool((3, 0)).unwrap();
        pool.empty_cache();
        assert_eq!(pool.stats().reserved_bytes.current, PAGE, "{conf}");
        checked(&pool);
    }
}

#[test]
fn a_random_small_workload_stays_within_a_few_pages_of_its_live_bytes() {
    // Many sizes (every 512 B step up to 1 MiB), live sets growing and shrinking; at every
    // step reserved is at most the peak of live bytes, page-rounded, plus what best fit
    // loses to holes, bounded here at 4 pages.
    for conf in CONFS {
        let pool = setup(conf);
        let mut x = 7u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut live: Vec<u64> = Vec::new();
        let mut peak_live = 0;
        for i in 0..3000 {
            // Grows to about 40 blocks, then holds there.
            if live.len() < 40 && next() % 5 < 3 || live.is_empty() {
                let size = match next() % 4 {
                    0 => next() % 8192 + 1,
                    1 => next() % (64 << 10) + 1,
                    _ => next() % MIB + 1,
                };
                live.push(pool.malloc(size as usize, 0).unwrap());
            } else {
                let k = next() as usize % live.len();
                pool.free(live.swap_remove(k)).unwrap();
            }
            let s = pool.stats();
            peak_live = peak_live.max(s.allocated_bytes.current);
            assert!(
                s.reserved_bytes.peak <= peak_live.div_ceil(PAGE) * PAGE + 4 * PAGE,
                "{conf} step {i}: reserved {} for a peak of {peak_live} live",
                s.reserved_bytes.peak
            );
            if i % 100 == 0 {
                checked(&pool);
            }
        }
        checked(&pool);
        println!(
            "{conf:?}: peak reserved {} for peak live {peak_live}",
            pool.stats().reserved_bytes.peak
        );
    }
}
