//! Huge blocks under threads, now that their system calls run outside the arena lock
//! (`host::huge_path`): a free into a full cache unmaps the oldest entry, a block is never
//! unmapped or moved while in use, and the accounting stays exact. The huge part of
//! `mapped_bytes` is exact to check: it is `mapped_bytes` less the segments' 32 MiB each.

use poolside::stats::layout::HostSection;
use std::sync::{mpsc, Barrier, Mutex};

/// The tests read process-wide figures: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const SEGMENT: u64 = 32 << 20;
const LARGE_MAX: usize = 4 << 20;
const PAGE: usize = 4096;

/// Serialises the test and, before the pool's first use, sets a purge delay long enough
/// that nothing cached expires behind the test's back.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("POOLSIDE_CONF", "purge_delay_ms:60000");
    g
}

/// Bytes of huge mappings (live and cached) the pool counts.
fn huge_mapped(s: &HostSection) -> u64 {
    s.mapped_bytes - s.segments * SEGMENT
}

/// Whether the page holding `p` is mapped (mincore fails with ENOMEM where nothing is).
fn is_mapped(p: *mut u8) -> bool {
    let page = (p as usize & !(PAGE - 1)) as *mut libc::c_void;
    let mut v = 0u8;
    // SAFETY: mincore only reads the page tables; v receives one byte.
    unsafe { libc::mincore(page, PAGE, &mut v) == 0 }
}

/// Writes the pattern of `tag` into one byte per page of `[p, p + len)` and its last byte.
fn fill(p: *mut u8, len: usize, tag: u8) {
    for off in (0..len).step_by(PAGE).chain([len - 1]) {
        // SAFETY: off < len, inside the caller's block.
        unsafe { *p.add(off) = tag.wrapping_add((off / PAGE) as u8) };
    }
}

/// Checks the pattern [`fill`] wrote over the first `len` bytes.
fn check(p: *mut u8, len: usize, tag: u8) {
    for off in (0..len).step_by(PAGE) {
        // SAFETY: as in fill.
        let v = unsafe { *p.add(off) };
        assert_eq!(
            v,
            tag.wrapping_add((off / PAGE) as u8),
            "block {p:?} at {off}"
        );
    }
}

#[test]
fn a_huge_free_into_a_full_cache_unmaps_the_oldest_entry() {
    let _serial = serial();
    poolside::collect(true);
    // Eighteen distinct sizes (5 to 22 MiB), so that no free block is taken for the next one.
    let sizes: Vec<usize> = (0..18).map(|i| (5 << 20) + (i << 20)).collect();
    let mut blocks = Vec::with_capacity(sizes.len());
    let base = poolside::stats_snapshot();
    for (i, &n) in sizes.iter().enumerate() {
        let p = poolside::alloc(n, 8);
        assert!(!p.is_null());
        fill(p, n, i as u8);
        blocks.push(p);
    }
    let held = poolside::stats_snapshot();
    let total: usize = sizes.iter().sum();
    assert_eq!(huge_mapped(&held), huge_mapped(&base) + total as u64);
    for (i, &p) in blocks.iter().enumerate() {
        // SAFETY: a live block of ours.
        unsafe { poolside::free(p) };
        // The cache holds sixteen: the 17th and 18th frees evict the two oldest, and
        // unmap them before free returns.
        if i >= 16 {
            let evicted = blocks[i - 16];
            assert!(!poolside::owns(evicted));
            assert!(!is_mapped(evicted), "evicted block {} still mapped", i - 16);
        }
    }
    assert!(
        is_mapped(blocks[2]) && is_mapped(blocks[17]),
        "cached blocks stay mapped"
    );
    let freed = poolside::stats_snapshot();
    let cached: usize = sizes[2..].iter().sum();
    assert_eq!(huge_mapped(&freed), huge_mapped(&base) + cached as u64);
    assert_eq!(
        held.reserved_bytes - freed.reserved_bytes,
        (sizes[0] + sizes[1]) as u64
    );
    assert!(freed.cached_bytes >= cached as u64, "{freed:?}");
    poolside::collect(true);
    let after = poolside::stats_snapshot();
    assert_eq!(huge_mapped(&after), huge_mapped(&base));
    assert!(after.purged_bytes >= freed.purged_bytes + cached as u64);
    for &p in &blocks {
        assert!(!is_mapped(p) && !poolside::owns(p));
    }
}

/// One thread's loop over `live` buffers of 1-8 MiB: frees one and allocates another, or
/// reallocates one (checking what it keeps), writing every page; sends its live blocks
/// (address, size) when done, waits twice (the main thread checks the accounting between),
/// then checks and frees them.
fn worker(seed: u64, rounds: usize, done: mpsc::Sender<Vec<(usize, usize)>>, gate: &Barrier) {
    let mut s = seed;
    let mut rand = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut held: Vec<(*mut u8, usize, u8)> = Vec::new();
    let live = 4;
    for round in 0..rounds {
        let r = rand();
        let n = (1 << 20) + (r as usize % (7 << 20));
        let tag = (r >> 40) as u8;
        if held.len() < live {
            let p = poolside::alloc(n, 8);
            assert!(!p.is_null());
            fill(p, n, tag);
            held.push((p, n, tag));
            continue;
        }
        let k = (r >> 32) as usize % live;
        let (p, old, old_tag) = held[k];
        check(p, old, old_tag);
        let q = if round % 8 == 0 {
            // SAFETY: a live block of ours with alignment 8.
            let q = unsafe { poolside::realloc(p, n, 8) };
            assert!(!q.is_null());
            check(q, old.min(n) / PAGE * PAGE, old_tag);
            q
        } else {
            // SAFETY: a live block of ours.
            unsafe { poolside::free(p) };
            poolside::alloc(n, 8)
        };
        assert!(!q.is_null());
        fill(q, n, tag);
        held[k] = (q, n, tag);
    }
    done.send(held.iter().map(|&(p, n, _)| (p as usize, n)).collect())
        .unwrap();
    gate.wait();
    gate.wait();
    for (p, n, tag) in held {
        check(p, n, tag);
        // SAFETY: a live block of ours.
        unsafe { poolside::free(p) };
    }
}

#[test]
fn threads_over_big_buffers_keep_the_huge_accounting_exact() {
    let _serial = serial();
    poolside::collect(true);
    let base = poolside::stats_snapshot();
    let threads = 4;
    let gate = Barrier::new(threads + 1);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (tx, gate) = (tx.clone(), &gate);
            let seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(t as u64 + 1);
            scope.spawn(move || worker(seed, 400, tx, gate));
        }
        // Only the workers hold senders now, so the receive below cannot outlive them all
        // (workers that still wait at the gate keep theirs).
        drop(tx);
        let live: Vec<(usize, usize)> = (0..threads).flat_map(|_| rx.recv().unwrap()).collect();
        gate.wait();
        // Every thread waits: drop the cached mappings, and what is left is what is live.
        poolside::collect(true);
        let s = poolside::stats_snapshot();
        let huge_live: usize = live
            .iter()
            .filter(|&&(_, n)| n > LARGE_MAX)
            .map(|&(p, _)| poolside::usable_size(p as *const u8))
            .sum();
        assert_eq!(
            huge_mapped(&s),
            huge_mapped(&base) + huge_live as u64,
            "{s:?}"
        );
        assert!(s.reserved_bytes <= s.mapped_bytes && s.reserved_bytes <= s.peak_reserved_bytes);
        gate.wait();
    });
    poolside::collect(true);
    let after = poolside::stats_snapshot();
    assert_eq!(huge_mapped(&after), huge_mapped(&base), "{after:?}");
    assert!(after.reserved_bytes <= after.mapped_bytes);
}
