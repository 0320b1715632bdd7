//! VXLAN (RFC 7348): the 8-byte header and the 50-byte outer stack the switch builds.

pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI field is valid.
pub const FLAG_I: u8 = 0x08;
pub const DEFAULT_UDP_PORT: u16 = 4789;
/// Outer Ethernet + IPv4 (no options) + UDP + VXLAN.
pub const OUTER_LEN: usize = 14 + 20 + 8 + HEADER_LEN;
/// What encapsulation adds to the IP MTU's view of a frame (the outer Ethernet header
/// is not part of the MTU): IPv4 + UDP + VXLAN.
pub const MTU_OVERHEAD: usize = 20 + 8 + HEADER_LEN;
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// Offsets within the outer stack.
pub const OUTER_IP: usize = 14;
pub const OUTER_UDP: usize = 34;
pub const OUTER_VXLAN: usize = 42;

/// The VNI of a VXLAN header if its I flag is set.
pub fn vni(h: &[u8]) -> Option<u32> {
    let h = h.get(..HEADER_LEN)?;
    (h[0] & FLAG_I != 0).then(|| u32::from_be_bytes([0, h[4], h[5], h[6]]))
}

/// Writes a VXLAN header for `vni` (reserved bits zero).
pub fn emit(h: &mut [u8], vni: u32) {
    h[..HEADER_LEN].copy_from_slice(&[FLAG_I, 0, 0, 0, (vni >> 16) as u8, (vni >> 8) as u8, vni as u8, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header() {
        let mut h = [0u8; 8];
        emit(&mut h, 0x123456);
        assert_eq!(h, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        assert_eq!(vni(&h), Some(0x123456));
        h[0] = 0;
        assert_eq!(vni(&h), None, "I flag clear");
        assert_eq!(vni(&h[..7]), None, "short");
    }
}
