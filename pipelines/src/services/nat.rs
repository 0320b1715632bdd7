//! Address and port translation of one header, checksums updated incrementally
//! (RFC 1624) rather than recomputed: the payload may be in later segments, and a frame
//! that owes its L4 checksum (offload) keeps owing it, with its pseudo-header sum moved.
use crate::{
    meta::{IpKey, Meta},
    offload::L4Csum,
    wire::{adjust_checksum, fold, ipv4, word_change},
    Frame,
};

/// Which end of the packet is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Src,
    Dst,
}

/// The 16-bit words of an address as the headers hold it (IPv4: the last two).
pub(super) fn words(ip: IpKey, v4: bool) -> impl Iterator<Item = u16> {
    let n = if v4 { 2 } else { 8 };
    (0..n).map(move |i| (ip >> (16 * (n - 1 - i))) as u16)
}

/// Rewrites the source or destination address and port of a TCP or UDP packet; false
/// (and nothing changed) if its headers are not all in the first segment.
pub fn rewrite<F: Frame>(f: &mut F, m: &mut Meta, end: End, ip: IpKey, port: u16) -> bool {
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    let v4 = m.ip_version == 4;
    let (addr_at, alen, port_at) = match (v4, end) {
        (true, End::Src) => (l3 + ipv4::SRC, 4, l4),
        (true, End::Dst) => (l3 + ipv4::DST, 4, l4 + 2),
        (false, End::Src) => (l3 + 8, 16, l4),
        (false, End::Dst) => (l3 + 24, 16, l4 + 2),
    };
    let csum_at = match m.proto {
        ipv4::PROTO_TCP => l4 + 16,
        _ => l4 + 6,
    };
    let partial = f.offload().csum != L4Csum::None;
    let b = f.head_mut();
    if b.len() < (csum_at + 2).max(addr_at + alen).max(l3 + ipv4::MIN_LEN) {
        return false;
    }
    let old_ip = if end == End::Src { m.ip_src } else { m.ip_dst };
    let old_port = u16::from_be_bytes([b[port_at], b[port_at + 1]]);
    let d_addr = word_change(words(old_ip, v4), words(ip, v4));
    let d_port = word_change(std::iter::once(old_port), std::iter::once(port));
    if v4 {
        adjust_checksum(&mut b[l3 + ipv4::CHECKSUM..l3 + ipv4::CHECKSUM + 2], d_addr, true);
    }
    // UDP over IPv4 may carry no checksum (0): it stays without one.
    let no_udp_sum = m.proto == ipv4::PROTO_UDP && v4 && b[csum_at] == 0 && b[csum_at + 1] == 0 && !partial;
    if !no_udp_sum {
        // A pseudo-header sum covers the addresses only; a full checksum the port too.
        let d = if partial { d_addr } else { fold(d_addr + d_port) };
        adjust_checksum(&mut b[csum_at..csum_at + 2], d, !partial);
        if !partial && m.proto == ipv4::PROTO_UDP && b[csum_at] == 0 && b[csum_at + 1] == 0 {
            // A UDP checksum that computes to 0 is sent as all ones.
            b[csum_at] = 0xff;
            b[csum_at + 1] = 0xff;
        }
    }
    let bytes = ip.to_be_bytes();
    b[addr_at..addr_at + alen].copy_from_slice(&bytes[16 - alen..]);
    b[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    match end {
        End::Src => {
            m.ip_src = ip;
            m.sport = port;
        }
        End::Dst => {
            m.ip_dst = ip;
            m.dport = port;
        }
    }
    true
}
