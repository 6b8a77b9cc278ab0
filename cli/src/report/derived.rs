//! Figures derived from counters.
//!
//! - hit rate = hits / (hits + misses), none before the first allocation;
//! - fragmentation = fragmented / reserved, none while nothing is reserved: the share of
//!   reserved memory that is free but cannot be returned, because it shares a span, page
//!   or segment with live blocks. Free memory the pool could return now (cached) is not
//!   fragmentation: a pool full of cached free memory has fragmentation 0;
//! - peak overhead = peak reserved / peak allocated (devices);
//! - internal waste = bytes lost to rounding inside live blocks (allocated - requested).

/// hits / (hits + misses).
pub fn hit_rate(hits: u64, misses: u64) -> Option<f64> {
    let total = hits.checked_add(misses)?;
    (total > 0).then(|| hits as f64 / total as f64)
}

/// fragmented / reserved, clamped to [0, 1] (the file is untrusted).
pub fn fragmentation(fragmented: u64, reserved: u64) -> Option<f64> {
    (reserved > 0).then(|| (fragmented as f64 / reserved as f64).clamp(0.0, 1.0))
}

/// The host's split of its free memory, reserved - live: `(cached, fragmented)`.
/// `cached` is what the section says the pool could return, at most the free memory
/// (host counters are folded lazily, so live may briefly exceed reserved).
pub fn host_free_split(reserved: u64, live: u64, cached: u64) -> (u64, u64) {
    let free = reserved.saturating_sub(live);
    let cached = cached.min(free);
    (cached, free - cached)
}

/// `part / whole`, none when `whole` is 0.
pub fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Rounding waste inside `live` bytes of one class, estimated from the class's cumulative
/// requested and allocated byte counts (the host does not track requested bytes per live
/// block).
pub fn estimated_internal_waste(live: u64, requested_total: u64, allocated_total: u64) -> u64 {
    if allocated_total == 0 || requested_total >= allocated_total {
        return 0;
    }
    let waste = allocated_total - requested_total;
    (live as u128 * waste as u128 / allocated_total as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios() {
        assert_eq!(hit_rate(3, 1), Some(0.75));
        assert_eq!(hit_rate(0, 0), None);
        assert_eq!(fragmentation(75, 100), Some(0.75));
        assert_eq!(fragmentation(200, 100), Some(1.0));
        assert_eq!(fragmentation(0, 0), None);
        // 100 reserved, 30 live, 50 returnable: 20 fragmented.
        assert_eq!(host_free_split(100, 30, 50), (50, 20));
        // All the free memory is returnable: none fragmented.
        assert_eq!(host_free_split(100, 0, 100), (100, 0));
        // Live folded ahead of reserved, absurd cached: clamped, no underflow.
        assert_eq!(host_free_split(100, 150, 7), (0, 0));
        assert_eq!(host_free_split(100, 10, u64::MAX), (90, 0));
        assert_eq!(share(1, 4), Some(0.25));
        // 1000 bytes asked for in blocks totalling 1250: 20% of live bytes are waste.
        assert_eq!(estimated_internal_waste(500, 1000, 1250), 100);
        assert_eq!(estimated_internal_waste(500, 0, 0), 0);
    }
}
