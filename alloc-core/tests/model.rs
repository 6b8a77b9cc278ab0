//! Random alloc / realloc / free sequences against a model.
//!
//! The model keeps every live block's address, requested size, alignment and fill byte.
//! After each step: every block is aligned, none overlaps another live block, usable size
//! covers the request, and every byte of every live block still holds its fill pattern
//! (so realloc must carry contents over, and no allocation may scribble on another).

use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        size: usize,
        align_shift: u32,
        zeroed: bool,
    },
    Realloc {
        pick: usize,
        size: usize,
    },
    Free {
        pick: usize,
    },
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..=256,
        6 => 257usize..=64 * 1024,
        3 => (64usize * 1024)..=(1usize << 20),
        2 => (1usize << 20)..=(16usize << 20),
        1 => (16usize << 20)..=(64usize << 20),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (size_strategy(), 0u32..=20, any::<bool>()).prop_map(|(size, align_shift, zeroed)| Op::Alloc { size, align_shift, zeroed }),
        2 => (any::<usize>(), size_strategy()).prop_map(|(pick, size)| Op::Realloc { pick, size }),
        3 => any::<usize>().prop_map(|pick| Op::Free { pick }),
    ]
}

struct Live {
    size: usize,
    align: usize,
    fill: u8,
}

/// Checks the first, last and a spread of bytes (full checks of 64 MiB blocks are slow).
fn check_fill(p: usize, size: usize, fill: u8) {
    let probe = |off: usize| {
        // SAFETY: off < size and the block is live with at least `size` bytes.
        let b = unsafe { *((p + off) as *const u8) };
        assert_eq!(b, fill, "byte {off} of block {p:#x} (size {size})");
    };
    if size <= 4096 {
        (0..size).for_each(probe);
    } else {
        (0..size).step_by(size / 1024).for_each(probe);
        probe(size - 1);
    }
}

fn run(ops: Vec<Op>) {
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    let mut next_fill = 1u8;
    for op in ops {
        match op {
            Op::Alloc {
                size,
                align_shift,
                zeroed,
            } => {
                let align = 1usize << align_shift;
                let p = if zeroed {
                    poolside::alloc_zeroed(size, align)
                } else {
                    poolside::alloc(size, align)
                } as usize;
                assert_ne!(p, 0, "out of memory for {size} B");
                assert_eq!(p % align, 0, "block {p:#x} not aligned to {align}");
                assert!(poolside::usable_size(p as *const u8) >= size);
                if zeroed {
                    check_fill(p, size, 0);
                }
                next_fill = next_fill.wrapping_add(1).max(1);
                // SAFETY: a fresh block of at least `size` bytes.
                unsafe { std::ptr::write_bytes(p as *mut u8, next_fill, size) };
                assert!(
                    live.insert(
                        p,
                        Live {
                            size,
                            align,
                            fill: next_fill
                        }
                    )
                    .is_none(),
                    "address handed out twice"
                );
            }
            Op::Realloc { pick, size } => {
                if live.is_empty() {
                    continue;
                }
                let &p = live.keys().nth(pick % live.len()).unwrap();
                let old = live.remove(&p).unwrap();
                // SAFETY: p is live with alignment old.align.
                let q = unsafe { poolside::realloc(p as *mut u8, size, old.align) } as usize;
                assert_ne!(q, 0);
                assert_eq!(q % old.align, 0);
                assert!(poolside::usable_size(q as *const u8) >= size);
                check_fill(q, old.size.min(size), old.fill);
                // SAFETY: the block holds at least `size` bytes.
                unsafe { std::ptr::write_bytes(q as *mut u8, old.fill, size) };
                live.insert(q, Live { size, ..old });
            }
            Op::Free { pick } => {
                if live.is_empty() {
                    continue;
                }
                let &p = live.keys().nth(pick % live.len()).unwrap();
                let l = live.remove(&p).unwrap();
                check_fill(p, l.size, l.fill);
                // SAFETY: p is live.
                unsafe { poolside::free(p as *mut u8) };
            }
        }
        // No overlap: each block ends before the next one starts (usable size counts).
        let mut prev_end = 0usize;
        for (&p, l) in &live {
            assert!(p >= prev_end, "block {p:#x} overlaps the previous one");
            prev_end = p + l.size.max(1);
        }
    }
    for (p, l) in live {
        check_fill(p, l.size, l.fill);
        // SAFETY: p is live.
        unsafe { poolside::free(p as *mut u8) };
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn random_sequences_match_the_model(ops in proptest::collection::vec(op_strategy(), 1..200)) {
        run(ops);
    }
}

#[test]
fn every_power_of_two_alignment_up_to_1_gib() {
    for shift in 0..=30 {
        let align = 1usize << shift;
        for size in [1usize, 24, 4096, 100_000, 3 << 20] {
            let p = poolside::alloc(size, align);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "align {align} size {size}");
            // SAFETY: p holds `size` bytes.
            unsafe {
                p.write_bytes(0x5a, size);
                poolside::free(p);
            }
        }
    }
}

#[test]
fn impossible_sizes_fail_cleanly() {
    assert!(poolside::alloc(usize::MAX, 8).is_null());
    assert!(poolside::alloc(usize::MAX - 4096, 16).is_null());
    assert!(poolside::alloc(1 << 62, 1 << 30).is_null());
    let p = poolside::alloc(100, 8);
    // SAFETY: p is live; a failed realloc must leave it intact.
    unsafe {
        p.write_bytes(7, 100);
        assert!(poolside::realloc(p, usize::MAX / 2, 8).is_null());
        assert!((0..100).all(|i| *p.add(i) == 7));
        poolside::free(p);
    }
}

#[test]
fn foreign_pointers_are_ignored() {
    let mut on_stack = [0u8; 64];
    let boxed = Box::new(5u64); // from the test's System allocator
    for p in [
        on_stack.as_mut_ptr(),
        &*boxed as *const u64 as *mut u8,
        8 as *mut u8,
        usize::MAX as *mut u8,
    ] {
        assert!(!poolside::owns(p));
        assert_eq!(poolside::usable_size(p), 0);
        // SAFETY: free ignores pointers the pool does not own.
        unsafe { poolside::free(p) };
    }
    assert_eq!(*boxed, 5);
}

#[test]
fn realloc_grows_large_blocks_in_place() {
    let p = poolside::alloc(2 << 20, 8);
    // SAFETY: p is live; the following units of a fresh segment are free unless another
    // test took them, in which case realloc moves (and the test still checks contents).
    unsafe {
        p.write_bytes(3, 2 << 20);
        let q = poolside::realloc(p, 3 << 20, 8);
        assert!(!q.is_null());
        assert!((0..(2 << 20)).step_by(4093).all(|i| *q.add(i) == 3));
        assert!(poolside::usable_size(q) >= 3 << 20);
        let r = poolside::realloc(q, 3 << 20, 8);
        assert_eq!(r, q, "same size stays in place");
        poolside::free(r);
    }
}

#[test]
fn zero_sized_requests_honour_alignment() {
    for shift in 0..=16 {
        let align = 1usize << shift;
        let p = poolside::alloc(0, align);
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0, "size 0, align {align}");
        // SAFETY: p is live.
        unsafe { poolside::free(p) };
    }
}
