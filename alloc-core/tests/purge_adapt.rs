//! The purge delay adapts: when memory a timed purge returned is taken back soon after, the
//! delay grows (up to 1 s), so that the next round of a program that frees and rebuilds
//! its data finds it still faulted in; it halves again for each second without such a
//! refault (a unit test in `host::arena` checks that arithmetic), and a forced collect
//! sets it back to the configured one.
//!
//! Its own test binary: the delay is process-wide, and the other purge tests expect the
//! configured 10 ms.

use poolside::host::arena::ARENA;
use std::time::Duration;

/// 1 KiB blocks: pages of one 64 KiB unit (dense spans), 16 MiB in all.
const BLOCK: usize = 1 << 10;
const BLOCKS: usize = 16 << 10;

fn fill() -> Vec<*mut u8> {
    let blocks: Vec<*mut u8> = (0..BLOCKS).map(|_| poolside::alloc(BLOCK, 8)).collect();
    for &p in &blocks {
        assert!(!p.is_null());
        // SAFETY: a live block of BLOCK bytes.
        unsafe { p.write_bytes(3, BLOCK) };
    }
    blocks
}

fn free_all(blocks: Vec<*mut u8>) {
    for p in blocks {
        // SAFETY: live blocks of ours, freed once.
        unsafe { poolside::free(p) };
    }
    // Empty pages go back to the arena (all but the heap's own few).
    poolside::collect(false);
}

fn delay() -> u64 {
    ARENA.lock().delay(poolside::sys::now_ms())
}

fn purged() -> u64 {
    poolside::flush_stats();
    poolside::stats_snapshot().purged_bytes
}

#[test]
fn refaults_lengthen_the_delay_and_a_forced_collect_resets_it() {
    poolside::collect(true);
    assert_eq!(delay(), 10, "the configured delay");

    // Round 1: freed, and purged after the configured delay.
    free_all(fill());
    let before = purged();
    std::thread::sleep(Duration::from_millis(60));
    poolside::collect(false);
    let round1 = purged() - before;
    assert!(round1 >= 8 << 20, "round 1 purged only {round1} bytes");
    assert_eq!(delay(), 10, "nothing was taken back yet");

    // Round 2 takes the purged units back within a second: a refault. The delay becomes
    // about twice the time the memory sat free (60 ms or more): over 100 ms.
    let blocks = fill();
    let grown = delay();
    assert!(
        (100..=1000).contains(&grown),
        "delay after the refault: {grown} ms"
    );
    free_all(blocks);
    let before = purged();
    std::thread::sleep(Duration::from_millis(60));
    poolside::collect(false);
    let early = purged() - before;
    assert!(
        early < 4 << 20,
        "round 2 purged {early} bytes 60 ms after its free, within a {grown} ms delay"
    );
    // The memory still goes back once the longer delay has passed.
    std::thread::sleep(Duration::from_millis(grown + 50));
    poolside::collect(false);
    let later = purged() - before;
    assert!(
        later >= 8 << 20,
        "round 2 purged only {later} bytes after its {grown} ms delay"
    );

    // A forced collect starts over from the configured delay.
    poolside::collect(true);
    assert_eq!(delay(), 10);
}
