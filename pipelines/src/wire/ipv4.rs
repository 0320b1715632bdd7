//! IPv4 header (RFC 791) fields and the few operations the switch does on it.
use super::{be16, ones_sum};

pub const MIN_LEN: usize = 20;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const TOTAL_LEN: usize = 2;
pub const FLAGS_FRAG: usize = 6;
pub const TTL: usize = 8;
pub const PROTO: usize = 9;
pub const CHECKSUM: usize = 10;
pub const SRC: usize = 12;
pub const DST: usize = 16;
/// Don't Fragment, in the flags/fragment-offset word.
pub const DF: u16 = 0x4000;
/// More Fragments and the fragment offset: any set bit means a fragment.
pub const FRAG_MASK: u16 = 0x3fff;

/// Header length in bytes if `b` starts with a plausible IPv4 header, else None.
pub fn header_len(b: &[u8]) -> Option<usize> {
    let v = *b.first()?;
    let ihl = ((v & 0x0f) as usize) * 4;
    (v >> 4 == 4 && ihl >= MIN_LEN && b.len() >= ihl).then_some(ihl)
}

/// True if the header checksum over `hdr` (exactly the header bytes) is right.
pub fn checksum_ok(hdr: &[u8]) -> bool {
    ones_sum(hdr) == 0xffff
}

/// The fragment bits of a header (0 for an unfragmented datagram).
pub fn fragment_bits(b: &[u8]) -> u16 {
    be16(b, FLAGS_FRAG).unwrap_or(0) & FRAG_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_length_and_checksum() {
        // A real header (from a capture): 10.0.0.1 -> 10.0.0.2, UDP, checksum 0x66ce.
        let h = [0x45, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x66, 0xce, 10, 0, 0, 1, 10, 0, 0, 2];
        assert_eq!(header_len(&h), Some(20));
        assert!(checksum_ok(&h));
        let mut bad = h;
        bad[11] ^= 1;
        assert!(!checksum_ok(&bad));
        assert_eq!(header_len(&h[..19]), None);
        let mut v6 = h;
        v6[0] = 0x65;
        assert_eq!(header_len(&v6), None);
        let mut short_ihl = h;
        short_ihl[0] = 0x44;
        assert_eq!(header_len(&short_ihl), None);
        assert_eq!(fragment_bits(&h), 0);
    }
}
