//! A program that frees all its data and builds it again, round after round, finds its
//! memory still faulted in: the dirty cap follows the recent peak of live data, so freeing
//! everything at once purges nothing before the purge delay. (The earlier cap, a quarter of
//! the live bytes, fell to its 32 MiB floor as soon as the data was freed, and every round
//! purged and faulted back all but 24 MiB of it.)

/// Minor page faults of the process so far.
fn minor_faults() -> u64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid out-parameter.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) }, 0);
    ru.ru_minflt as u64
}

#[test]
fn rounds_of_free_and_refill_do_not_purge_or_fault() {
    // Before the pool's first use: a delay long enough that only the cap could purge
    // during the test, however slowly a loaded machine runs it.
    std::env::set_var("POOLSIDE_CONF", "purge_delay_ms:60000");
    const BLOCK: usize = 2 << 20; // large spans, straight from the arena
    const BLOCKS: usize = 64; // 128 MiB: four times the cap's 32 MiB floor
    const PAGE: usize = 4096;
    let fill = |round: u8| -> Vec<*mut u8> {
        (0..BLOCKS)
            .map(|_| {
                let p = poolside::alloc(BLOCK, 8);
                assert!(!p.is_null());
                for off in (0..BLOCK).step_by(PAGE) {
                    // SAFETY: p holds BLOCK bytes.
                    unsafe { p.add(off).write(round) };
                }
                p
            })
            .collect()
    };
    let free_all = |blocks: Vec<*mut u8>| {
        for p in blocks {
            // SAFETY: live blocks of ours, freed once.
            unsafe { poolside::free(p) };
        }
    };
    // Round 0 faults the memory in.
    free_all(fill(0));
    poolside::flush_stats();
    let purged_before = poolside::stats_snapshot().purged_bytes;
    let faults_before = minor_faults();
    for round in 1..=5 {
        free_all(fill(round));
    }
    let faults = minor_faults() - faults_before;
    poolside::flush_stats();
    let purged = poolside::stats_snapshot().purged_bytes - purged_before;
    let pages_per_round = (BLOCKS * BLOCK / PAGE) as u64;
    println!("5 rounds of {BLOCKS} x {BLOCK} bytes: {purged} bytes purged, {faults} minor faults ({pages_per_round} pages a round)");
    assert_eq!(purged, 0, "rounds purged memory they then faulted back");
    // A round that faulted its data back would fault pages_per_round pages (4 KiB pages;
    // 1/512 of that with huge pages, which purged_bytes above catches).
    assert!(
        faults < pages_per_round / 8,
        "{faults} minor faults in 5 rounds"
    );
}
