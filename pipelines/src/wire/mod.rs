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

/// The one's-complement difference `new - old` over the 16-bit words a checksum covers
/// that changed (RFC 1624), for `adjust_checksum`.
#[inline]
pub fn word_change(old: impl Iterator<Item = u16>, new: impl Iterator<Item = u16>) -> u32 {
    old.zip(new).fold(0u32, |acc, (o, n)| fold(acc + (!o) as u32 + n as u32))
}

/// Adds change `d` (`word_change`) to the checksum field `field`: complemented (a full
/// checksum: RFC 1624's HC' = ~(~HC + ~m + m')) or not (a pseudo-header sum left for the
/// NIC or kernel to complete).
#[inline]
pub fn adjust_checksum(field: &mut [u8], d: u32, complemented: bool) {
    let v = u16::from_be_bytes([field[0], field[1]]);
    let new = if complemented { checksum((!v) as u32 + d) } else { fold(v as u32 + d) as u16 };
    field.copy_from_slice(&new.to_be_bytes());
}

/// A full checksum at `field` after one 16-bit word it covers went from `old` to `new`.
#[inline]
pub fn update_checksum(field: &mut [u8], old: u16, new: u16) {
    adjust_checksum(field, word_change(std::iter::once(old), std::iter::once(new)), true);
}
