//! Figures derived from counters.
//!
//! - hit rate = hits / (hits + misses), none before the first allocation;
//! - fragmentation = 1 - live / reserved, none while nothing is reserved; `live` counts
//!   blocks at their rounded size, so this is the share of reserved memory that is free
//!   but held (external fragmentation);
//! - internal waste = bytes lost to rounding inside live blocks (allocated - requested).

/// hits / (hits + misses).
pub fn hit_rate(hits: u64, misses: u64) -> Option<f64> {
    let total = hits.checked_add(misses)?;
    (total > 0).then(|| hits as f64 / total as f64)
}

/// 1 - live / reserved, clamped to [0, 1] (counters are read section by section and
/// folded lazily, so live may briefly exceed reserved).
pub fn fragmentation(live: u64, reserved: u64) -> Option<f64> {
    (reserved > 0).then(|| (1.0 - live as f64 / reserved as f64).clamp(0.0, 1.0))
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
        assert_eq!(fragmentation(25, 100), Some(0.75));
        assert_eq!(fragmentation(200, 100), Some(0.0));
        assert_eq!(fragmentation(0, 0), None);
        assert_eq!(share(1, 4), Some(0.25));
        // 1000 bytes asked for in blocks totalling 1250: 20% of live bytes are waste.
        assert_eq!(estimated_internal_waste(500, 1000, 1250), 100);
        assert_eq!(estimated_internal_waste(500, 0, 0), 0);
    }
}
