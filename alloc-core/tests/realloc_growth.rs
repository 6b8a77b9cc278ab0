//! A block that a realloc grows past 64 KiB gets a large span of its own, and the
//! growth after that extends the span in place while the units after it are free, the
//! way a list or a string builder grows by an eighth at a time. Before, every step up to
//! 1 MiB moved the block to the next size class and copied it.
//!
//! One test in its own process: nothing else allocates from the pool meanwhile, so the
//! units after the block stay free and the count of moves is exact.

/// Fills `len` bytes at `p` with a pattern that depends on the offset.
///
/// # Safety
/// `p` is live for `len` bytes.
unsafe fn fill(p: *mut u8, len: usize) {
    for i in (0..len).step_by(4096) {
        // SAFETY: i < len.
        unsafe { *p.add(i) = (i / 4096) as u8 };
    }
}

/// Whether `len` bytes at `p` still hold [`fill`]'s pattern.
///
/// # Safety
/// As for [`fill`].
unsafe fn holds(p: *const u8, len: usize) -> bool {
    // SAFETY: i < len.
    (0..len)
        .step_by(4096)
        .all(|i| unsafe { *p.add(i) } == (i / 4096) as u8)
}

#[test]
fn growing_blocks_move_once_then_extend_in_place() {
    const UNIT: usize = 64 << 10;
    // Growth by an eighth, as CPython's lists grow (`list_resize`).
    let mut size = 40 << 10;
    let mut p = poolside::alloc(size, 16);
    assert!(!p.is_null());
    // SAFETY: p is live for size bytes.
    unsafe { fill(p, size) };
    let mut moves_past_unit = 0;
    let mut first_large = None;
    while size < 3 << 20 {
        let next = size + size / 8 + 6;
        // SAFETY: p is a live block of the pool, size bytes of it filled.
        let q = unsafe { poolside::realloc(p, next, 16) };
        assert!(!q.is_null());
        // SAFETY: q is live for next >= size bytes.
        unsafe {
            assert!(
                holds(q, size),
                "contents kept when growing {size} -> {next}"
            );
            fill(q, next);
        }
        if next > UNIT {
            let usable = poolside::usable_size(q);
            assert!(
                usable >= next && usable.is_multiple_of(UNIT),
                "{next}: a span of whole units"
            );
            if q != p {
                moves_past_unit += 1;
                first_large.get_or_insert(next);
            }
        }
        p = q;
        size = next;
    }
    assert_eq!(
        moves_past_unit, 1,
        "past 64 KiB the block moves once, into a span of its own, then grows in place"
    );
    assert!(first_large.unwrap() <= UNIT + UNIT / 8 + 6);

    // Shrinking far below the span goes back to a size class, contents kept.
    // SAFETY: p is live for size bytes.
    let small = unsafe { poolside::realloc(p, 1000, 16) };
    assert!(!small.is_null());
    assert!(poolside::usable_size(small) < UNIT);
    // SAFETY: small is live for 1000 bytes, which held the pattern.
    unsafe {
        assert!(holds(small, 1000));
        poolside::free(small);
    }

    // A request above 64 KiB that does not grow an existing block keeps its size class.
    let fresh = poolside::alloc(UNIT + 8, 16);
    assert!(poolside::usable_size(fresh) < 2 * UNIT);
    assert!(!poolside::usable_size(fresh).is_multiple_of(UNIT));
    // SAFETY: live block.
    unsafe { poolside::free(fresh) };
}
