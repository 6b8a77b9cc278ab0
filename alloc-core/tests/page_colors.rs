//! The first blocks of a class's spans start at different offsets from their 64 KiB
//! boundaries (`host::page::first_block_offset`), so that they do not all fall on one set of
//! the L1 data cache.

use std::collections::{BTreeMap, BTreeSet};

#[test]
fn first_blocks_of_spans_spread_over_cache_sets() {
    // A fresh thread, so that its heap takes new spans for these classes.
    std::thread::spawn(|| {
        for size in [64usize, 256, 1152] {
            // Enough blocks to fill 24 spans of one 64 KiB unit.
            let n = 24 * 65536 / size;
            let blocks: Vec<usize> = (0..n).map(|_| poolside::alloc(size, 8) as usize).collect();
            assert!(blocks.iter().all(|&b| b != 0));
            // The lowest block in each unit is its span's first block.
            let mut first = BTreeMap::new();
            for &b in &blocks {
                let e = first.entry(b >> 16).or_insert(b);
                *e = (*e).min(b);
            }
            let sets: BTreeSet<usize> = first.values().map(|&b| b % 4096).collect();
            assert!(
                sets.len() >= 4,
                "size {size}: first blocks of {} spans at offsets {sets:x?} mod 4 KiB",
                first.len()
            );
            for b in blocks {
                // SAFETY: allocated above, freed once.
                unsafe { poolside::free(b as *mut u8) };
            }
        }
    })
    .join()
    .unwrap();
}
