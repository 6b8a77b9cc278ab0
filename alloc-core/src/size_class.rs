//! Size classes.
//!
//! Invariants (checked by the tests below):
//! - classes 0..16 are exact multiples of 8 up to 128 B;
//! - above 128 B every doubling is cut into 8 classes, so rounding a request up to its class
//!   wastes less than 12.5% of the request;
//! - every power of two is a class, and a class of size `s >= 8 * 2^k` is a multiple of
//!   `2^k`, which is what lets aligned requests stay on the size-class path.
//!
//! Classes stop at [`MAX_SMALL`]; larger requests are served by whole spans or dedicated
//! mappings without rounding to a class.

/// Largest request served from a size class.
pub const MAX_SMALL: usize = 1 << 20;
/// Number of size classes (8 B .. 1 MiB).
pub const NUM_CLASSES: usize = 16 + 13 * 8;

const fn compute_size(c: usize) -> usize {
    if c < 16 {
        (c + 1) * 8
    } else {
        let d = (c - 16) / 8;
        let j = (c - 16) % 8;
        let k = 7 + d;
        (1 << k) + ((j + 1) << (k - 3))
    }
}

const fn build_table() -> [u32; NUM_CLASSES] {
    let mut t = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        t[c] = compute_size(c) as u32;
        c += 1;
    }
    t
}

static SIZES: [u32; NUM_CLASSES] = build_table();

/// The block size of class `c`.
#[inline(always)]
pub fn class_size(c: usize) -> usize {
    SIZES[c] as usize
}

/// Largest request whose class is read from [`SMALL_CLASSES`].
pub const TABLE_MAX: usize = 1024;

/// The class of every request up to [`TABLE_MAX`] bytes, indexed by `(size + 7) / 8`
/// (size 0 shares the 8 B class, so malloc(0) still gets a unique block).
static SMALL_CLASSES: [u8; TABLE_MAX / 8 + 1] = build_small_table();

const fn build_small_table() -> [u8; TABLE_MAX / 8 + 1] {
    let mut t = [0u8; TABLE_MAX / 8 + 1];
    let mut i = 1;
    while i <= TABLE_MAX / 8 {
        let mut c = 0;
        while compute_size(c) < i * 8 {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

/// The class of every request up to [`TABLE_MAX`] bytes at C's natural alignment (8 up
/// to 8 bytes, 16 above), indexed by `(size + 7) / 8`: the sizes of one index, from
/// `8 * i - 7` to `8 * i`, all round up to the same multiple of 16.
static NATURAL_CLASSES: [u8; TABLE_MAX / 8 + 1] = build_natural_table();

const fn build_natural_table() -> [u8; TABLE_MAX / 8 + 1] {
    let mut t = [0u8; TABLE_MAX / 8 + 1];
    let mut i = 0;
    while i <= TABLE_MAX / 8 {
        let (want, align) = if i <= 1 {
            (8, 8)
        } else {
            ((i * 8 + 15) & !15, 16)
        };
        let mut c = 0;
        while compute_size(c) < want || !compute_size(c).is_multiple_of(align) {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

/// Entries of [`NATURAL_CLASSES`]: the slot of a request of `size <= TABLE_MAX` bytes is
/// `(size + 7) / 8`.
pub const NATURAL_SLOTS: usize = TABLE_MAX / 8 + 1;

/// The first and one-past-last slot of each class in [`NATURAL_CLASSES`] ((0, 0) for
/// classes no slot has). Read by every change of a heap's current page, so it is a table:
/// two binary searches there took about 70 instructions a call, a quarter of an
/// alloc/free pair of a 256 KiB block, which changed its current page twice.
static NATURAL_SLOT_RANGES: [(u8, u8); NUM_CLASSES] = build_slot_ranges();

const fn build_slot_ranges() -> [(u8, u8); NUM_CLASSES] {
    let mut r = [(0u8, 0u8); NUM_CLASSES];
    let mut i = NATURAL_SLOTS;
    // Walk down: a class's first visit is its last slot, and `lo` ends at its first.
    while i > 0 {
        i -= 1;
        let c = NATURAL_CLASSES[i] as usize;
        if r[c].1 == 0 {
            r[c].1 = (i + 1) as u8;
        }
        r[c].0 = i as u8;
    }
    r
}

/// The slots whose natural class is `c`: a range, since the table never decreases (empty
/// for classes no slot has).
#[inline(always)]
pub fn natural_slots_of(c: usize) -> core::ops::Range<usize> {
    let (lo, hi) = NATURAL_SLOT_RANGES[c];
    lo as usize..hi as usize
}

/// The smallest class holding `size` bytes (`size <= MAX_SMALL`) at C's natural alignment:
/// 8 for requests of up to 8 bytes, 16 above (what malloc and calloc guarantee). One load
/// up to [`TABLE_MAX`], with no branch on which alignment applies.
#[inline(always)]
pub fn natural_class_of(size: usize) -> usize {
    debug_assert!(size <= MAX_SMALL);
    if size <= TABLE_MAX {
        // SAFETY: size <= TABLE_MAX, so the index is at most TABLE_MAX / 8.
        return unsafe { *NATURAL_CLASSES.get_unchecked((size + 7) >> 3) } as usize;
    }
    // Every class above 1 KiB is a multiple of 128 bytes.
    class_of(size)
}

/// The smallest class holding `size` bytes (`size <= MAX_SMALL`); alignment 8.
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    debug_assert!(size <= MAX_SMALL);
    if size <= TABLE_MAX {
        // One load, independent of everything before it. The computation below needs
        // the top bit of the size, which x86-64 without lzcnt finds with `bsr`; `bsr` also
        // reads its destination register (left as it was for a zero input), so the class
        // waited on whatever last wrote that register, in an alloc/free loop the previous
        // free's page lookup: through malloc, 160 B to 1 KiB took 20-40% longer than
        // mimalloc's pair, which reads its small classes from a table too.
        // SAFETY: size <= TABLE_MAX, so the index is at most TABLE_MAX / 8.
        return unsafe { *SMALL_CLASSES.get_unchecked((size + 7) >> 3) } as usize;
    }
    // With k the top bit of s = size - 1, the class is 16 + (k - 7) * 8 plus the three
    // bits below bit k. They are read by shifting s left until bit k is bit 63, not by
    // shifting right by k - 3: the compiler computes k - 3 in an 8-bit register, and
    // on x86 that partial write makes the class wait for whatever last set the full
    // register (in an alloc/free loop, the previous free), serialising the loop. That
    // cost 6 ns per pair above 128 B.
    let s = size - 1;
    let lz = s.leading_zeros() as usize;
    let sub = (s << lz) >> (usize::BITS - 4) & 7;
    16 + (usize::BITS as usize - 8 - lz) * 8 + sub
}

/// The smallest class that holds `size` bytes and whose blocks are `align`-aligned when the
/// span that holds them is (spans are aligned to at least 64 KiB). `align` is a power of two.
/// Returns `None` when no class fits, in which case the request needs a span of its own.
#[inline]
pub fn class_for(size: usize, align: usize) -> Option<usize> {
    if align <= 8 {
        return if size <= MAX_SMALL {
            Some(class_of(size))
        } else {
            None
        };
    }
    let want = size.max(align).checked_add(align - 1)? & !(align - 1);
    if want > MAX_SMALL {
        return None;
    }
    let mut c = class_of(want);
    // At most a few steps: the next power of two is always a multiple of `align`.
    while class_size(c) & (align - 1) != 0 {
        c += 1;
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_classes_hold_the_size_at_its_alignment_and_no_more() {
        let sizes = (0..=8192)
            .chain((8192..=MAX_SMALL).step_by(977))
            .chain([MAX_SMALL]);
        for size in sizes {
            let align = if size <= 8 { 8 } else { 16 };
            let c = natural_class_of(size);
            let bs = class_size(c);
            assert!(
                bs >= size.max(1) && bs.is_multiple_of(align),
                "size {size}: class of {bs} B"
            );
            assert!(
                c == 0 || class_size(c - 1) < size || !class_size(c - 1).is_multiple_of(align),
                "size {size}: class {bs} B is not the smallest"
            );
            assert_eq!(Some(c), class_for(size.max(1), align), "size {size}");
        }
    }

    #[test]
    fn natural_slots_cover_each_slot_once() {
        let mut seen = [0u8; NATURAL_SLOTS];
        for c in 0..NUM_CLASSES {
            for w in natural_slots_of(c) {
                assert_eq!(natural_class_of(w * 8), c);
                seen[w] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
    }

    #[test]
    fn table_is_increasing_and_ends_at_max() {
        for c in 1..NUM_CLASSES {
            assert!(class_size(c) > class_size(c - 1));
        }
        assert_eq!(class_size(NUM_CLASSES - 1), MAX_SMALL);
        assert_eq!(class_size(0), 8);
    }

    #[test]
    fn class_of_is_the_smallest_fit() {
        for size in 0..=70_000usize {
            let c = class_of(size);
            assert!(class_size(c) >= size, "size {size}");
            if c > 0 {
                assert!(class_size(c - 1) < size.max(1), "size {size} not smallest");
            }
        }
        for shift in 17..=20 {
            for delta in [-1isize, 0, 1] {
                let size = ((1usize << shift) as isize + delta) as usize;
                if size <= MAX_SMALL {
                    assert!(class_size(class_of(size)) >= size);
                }
            }
        }
    }

    #[test]
    fn rounding_waste_is_bounded() {
        for size in 129..=MAX_SMALL {
            let waste = class_size(class_of(size)) - size;
            assert!(waste * 8 < size, "size {size} wastes {waste}");
        }
    }

    #[test]
    fn powers_of_two_are_classes() {
        let mut p = 8;
        while p <= MAX_SMALL {
            assert_eq!(class_size(class_of(p)), p);
            p *= 2;
        }
    }

    #[test]
    fn aligned_classes_are_multiples_of_the_alignment() {
        for shift in 0..=16 {
            let align = 1usize << shift;
            for size in [0, 1, 7, 100, 1000, 4097, 65_536, 300_000] {
                if let Some(c) = class_for(size, align) {
                    assert!(class_size(c) >= size);
                    assert_eq!(class_size(c) % align.max(8).min(class_size(c)), 0);
                    assert_eq!(class_size(c) & (align - 1), 0, "size {size} align {align}");
                }
            }
        }
        assert_eq!(class_for(MAX_SMALL + 1, 8), None);
        assert_eq!(class_for(4096, 4096).map(class_size), Some(4096));
    }
}
