//! The process's place in a distributed job: `RANK`, `LOCAL_RANK` and `WORLD_SIZE`, as
//! torchrun (and most launchers: torch.distributed, DeepSpeed, Horovod via its own
//! variables mapped by the user) sets them for each worker.
//!
//! Read once, when the stats file is created (inside the first malloc), with libc's
//! `getenv`, which does not allocate. A process that changes them later (`os.environ`)
//! keeps the values it started with. They are written into the host section's rank
//! words ([`HostSection::ranks_set`] and the three after it) so that `poolside stat`,
//! `top` and `export` can tell the workers of one job apart, and the launcher (which has
//! none of the variables) from them.

use super::layout::{HostSection, LOCAL_RANK_SET, RANK_SET, WORLD_SIZE_SET};
use super::seqlock;
use crate::config::parse_u64;
use crate::sys;
use core::ptr::addr_of_mut;

/// The three values and which of them the environment set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ranks {
    /// Bits `RANK_SET`, `LOCAL_RANK_SET`, `WORLD_SIZE_SET`.
    pub set: u64,
    pub rank: u64,
    pub local_rank: u64,
    pub world_size: u64,
}

impl Ranks {
    /// Builds the ranks from the variables' values: a value that is not a plain decimal
    /// number (empty, signed, with spaces, over 19 digits) counts as unset rather than
    /// as a wrong rank.
    pub fn parse(
        rank: Option<&[u8]>,
        local_rank: Option<&[u8]>,
        world_size: Option<&[u8]>,
    ) -> Ranks {
        let mut r = Ranks::default();
        for (v, bit, slot) in [
            (rank, RANK_SET, &mut r.rank),
            (local_rank, LOCAL_RANK_SET, &mut r.local_rank),
            (world_size, WORLD_SIZE_SET, &mut r.world_size),
        ] {
            if let Some(n) = v.and_then(parse_u64) {
                *slot = n;
                r.set |= bit;
            }
        }
        r
    }

    /// The calling process's ranks, from its environment.
    pub fn from_env() -> Ranks {
        Ranks::parse(
            sys::getenv(b"RANK\0"),
            sys::getenv(b"LOCAL_RANK\0"),
            sys::getenv(b"WORLD_SIZE\0"),
        )
    }
}

/// Writes the calling process's ranks into host section `h`, under its seqlock.
///
/// # Safety
/// `h` is a host section of a mapped or local stats file, and no other thread writes it
/// now (the file is being created, or the host engine is joining it under its own lock).
pub unsafe fn stamp(h: *mut HostSection) {
    let r = Ranks::from_env();
    // SAFETY: by contract h is valid and ours to write; the fields are u64 words inside it.
    unsafe {
        seqlock::begin_write(addr_of_mut!((*h).seq));
        seqlock::set(addr_of_mut!((*h).ranks_set), r.set);
        seqlock::set(addr_of_mut!((*h).rank), r.rank);
        seqlock::set(addr_of_mut!((*h).local_rank), r.local_rank);
        seqlock::set(addr_of_mut!((*h).world_size), r.world_size);
        seqlock::end_write(addr_of_mut!((*h).seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchrun_values_are_read_and_bad_ones_are_unset() {
        let r = Ranks::parse(Some(b"1"), Some(b"1"), Some(b"2"));
        assert_eq!(
            r,
            Ranks {
                set: RANK_SET | LOCAL_RANK_SET | WORLD_SIZE_SET,
                rank: 1,
                local_rank: 1,
                world_size: 2
            }
        );
        let r = Ranks::parse(None, Some(b"-1"), Some(b" 4"));
        assert_eq!(r, Ranks::default());
        let r = Ranks::parse(Some(b"0"), None, Some(b""));
        assert_eq!(r.set, RANK_SET);
        assert_eq!(r.rank, 0);
    }
}
