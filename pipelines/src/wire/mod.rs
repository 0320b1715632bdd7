//! Packet formats: field offsets, constants and checked accessors.
//!
//! Parsing checks a header's length once; after that, accessors read fixed offsets
//! that are known to be in bounds. Nothing here allocates or panics on packet bytes.
pub mod arp;
pub mod ethernet;
pub mod ipv4;
pub mod vxlan;

pub use ethernet::Mac;

/// Big-endian u16 at `off`, if the bytes are there.
#[inline(always)]
pub fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// Big-endian u32 at `off`, if the bytes are there.
#[inline(always)]
pub fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The Internet checksum (RFC 1071) of `b`, folded, not complemented.
pub fn ones_sum(b: &[u8]) -> u32 {
    let mut sum = 0u32;
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u32) << 8;
    }
    fold(sum)
}

/// Folds carries into 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u32 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// The checksum field value for a header whose other fields sum to `sum`.
#[inline(always)]
pub fn checksum(sum: u32) -> u16 {
    !(fold(sum) as u16)
}
