//! What the pool knows about each block it handed out, keyed by address.

use crate::driver::StreamId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A live (or pending) allocation.
#[derive(Clone, Debug)]
pub struct Live {
    /// Bytes asked for.
    pub requested: u64,
    /// Bytes of the block (after rounding).
    pub size: u64,
    /// Index of its stream pool.
    pub stream: u32,
    /// Other streams that used it (record_stream); usually empty, so no allocation.
    pub uses: Vec<StreamId>,
}

/// Device addresses are 512-byte aligned and spread widely; a multiply mixes them well
/// enough and costs one instruction (SipHash would be most of the fast path). The map
/// picks buckets by the hash's low bits, and the low bits of a product depend only on the
/// low bits of the address: blocks at multiples of 2 MiB would share one bucket group.
/// Rotating the product brings its well-mixed high half down (one more instruction).
#[derive(Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v >> 9).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(32);
    }
}

/// Live blocks by address.
pub type LiveMap = HashMap<u64, Live, BuildHasherDefault<AddrHasher>>;
