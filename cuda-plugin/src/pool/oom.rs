//! The out-of-memory message, worded like PyTorch's own so that people and tools that
//! know it (and poolside.torch.is_oom) recognise it.

/// Bytes as PyTorch's `format_size` writes them.
pub fn format_size(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if n < 1024 {
        format!("{n} bytes")
    } else if f < K * K {
        format!("{:.2} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.2} MiB", f / (K * K))
    } else {
        format!("{:.2} GiB", f / (K * K * K))
    }
}

/// Figures for the message.
pub struct OomFacts {
    pub device: i32,
    pub requested: u64,
    pub total: u64,
    pub free: u64,
    pub allocated: u64,
    pub reserved: u64,
    /// Cap from the memory fraction (0 = none).
    pub limit: u64,
}

/// "CUDA out of memory. Tried to allocate X. GPU d has a total capacity of T of which F
/// is free. ..."
pub fn message(f: &OomFacts) -> String {
    let mut m = format!(
        "CUDA out of memory. Tried to allocate {}. GPU {} has a total capacity of {} of which {} is free.",
        format_size(f.requested),
        f.device,
        format_size(f.total),
        format_size(f.free),
    );
    if f.limit != 0 {
        m += &format!(
            " poolside is limited to {} by the memory fraction.",
            format_size(f.limit)
        );
    }
    m += &format!(
        " Of the allocated memory {} is allocated by poolside, and {} is reserved by poolside but unallocated.",
        format_size(f.allocated),
        format_size(f.reserved.saturating_sub(f.allocated)),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_pytorch() {
        let m = message(&OomFacts {
            device: 1,
            requested: 20 << 20,
            total: 8 << 30,
            free: 1536,
            allocated: 7 << 30,
            reserved: (7 << 30) + (512 << 20),
            limit: 0,
        });
        assert_eq!(
            m,
            "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 1 has a total capacity of 8.00 GiB of which 1.50 KiB is free. Of the allocated memory 7.00 GiB is allocated by poolside, and 512.00 MiB is reserved by poolside but unallocated."
        );
    }
}
