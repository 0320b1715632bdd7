//! The questions the gateway asks a network itself: who holds an address a VM sent
//! to and no endpoint holds yet. From the gateway's own address and MAC, so the owner
//! answers the gateway (and the switch learns the answer); sent by the control plane to
//! the network's local VM ports.
use super::GATEWAY_MAC;
use crate::wire::{arp, checksum, ones_sum};

/// An ARP request from the gateway's IPv4 address `from` for `target`.
pub fn arp_request(from: u32, target: u32) -> [u8; 60] {
    arp::request(GATEWAY_MAC, from, target)
}

/// Bytes of a neighbour solicitation with a source link-layer address option.
pub const SOLICITATION_LEN: usize = 14 + 40 + 24 + 8;

/// A neighbour solicitation (RFC 4861 4.3) from the gateway's IPv6 address `from` for
/// `target`, to the target's solicited-node multicast group.
pub fn solicitation(from: u128, target: u128) -> [u8; SOLICITATION_LEN] {
    solicitation_by(from, GATEWAY_MAC, target)
}

/// The neighbour solicitation for `target` from address `from` and MAC `mac`.
pub fn solicitation_by(from: u128, mac: crate::wire::Mac, target: u128) -> [u8; SOLICITATION_LEN] {
    let group = 0xff02_0000_0000_0000_0000_0001_ff00_0000u128 | (target & 0x00ff_ffff);
    let mut f = [0u8; SOLICITATION_LEN];
    f[0..2].copy_from_slice(&[0x33, 0x33]);
    f[2..6].copy_from_slice(&group.to_be_bytes()[12..]);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ip = &mut f[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = crate::wire::ipv4::PROTO_ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&from.to_be_bytes());
    ip[24..40].copy_from_slice(&group.to_be_bytes());
    let ns = &mut f[54..];
    ns[0] = 135;
    ns[8..24].copy_from_slice(&target.to_be_bytes());
    ns[24] = 1;
    ns[25] = 1;
    ns[26..32].copy_from_slice(&mac.0);
    let sum = ones_sum(&f[22..54]) + 32 + crate::wire::ipv4::PROTO_ICMPV6 as u32 + ones_sum(&f[54..]);
    f[56..58].copy_from_slice(&checksum(sum).to_be_bytes());
    f
}
