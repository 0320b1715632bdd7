//! ICMP errors about a translated connection. A backend that refuses a packet quotes it
//! as it arrived, addressed to the backend; the client knows only the VIP, and its
//! stack matches an error to a socket by the quoted header. The quoted destination goes
//! back to the VIP, and so does the error's source when the backend itself sent it (a
//! host on the way keeps its own address), as netfilter does for a NAT'd connection.
use super::nat::{words, End};
use crate::{
    meta::{ipv4_key, IpKey, Meta},
    wire::{adjust_checksum, be16, checksum, fold, ipv4, ones_sum, word_change},
    Frame,
};

/// The ICMP or ICMPv6 type of an error (destination unreachable, too big, time
/// exceeded, parameter problem, source quench, redirect).
#[inline]
pub fn is_error(head: &[u8], m: &Meta) -> bool {
    let Some(&ty) = head.get(m.l4 as usize) else { return false };
    match m.proto {
        ipv4::PROTO_ICMP => matches!(ty, 3 | 4 | 5 | 11 | 12),
        ipv4::PROTO_ICMPV6 => (1..=4).contains(&ty),
        _ => false,
    }
}

/// An ICMP error still undecided and whole, which may be about a translated connection.
#[inline]
pub fn icmp_error(head: &[u8], m: &Meta) -> bool {
    m.action == crate::meta::Action::Continue && m.l4 != 0 && !m.fragment && is_error(head, m)
}

fn addr(b: &[u8], at: usize, v4: bool) -> IpKey {
    let n = if v4 { 4 } else { 16 };
    let a = b[at..at + n].iter().fold(0, |a, &x| a << 8 | x as IpKey);
    if v4 {
        ipv4_key(a as u32)
    } else {
        a
    }
}

fn put_addr(b: &mut [u8], at: usize, ip: IpKey, v4: bool) {
    let n = if v4 { 4 } else { 16 };
    b[at..at + n].copy_from_slice(&ip.to_be_bytes()[16 - n..]);
}

/// Rewrites error `m`, whose quoted packet has `from` at its `end` (the destination: a
/// backend, which becomes the VIP; the source: the host side of a masqueraded
/// connection, which becomes the VM), as quoting one with `to` there. The error's own
/// address on the other side moves with it (its source when the backend itself sent it;
/// its destination when it came to the host's address). False, and nothing changed,
/// when the message is not all in the first segment or its quote is not of a TCP or UDP
/// packet with `from` at `end`.
pub fn rewrite_error<F: Frame>(f: &mut F, m: &mut Meta, end: End, from: (IpKey, u16), to: (IpKey, u16)) -> bool {
    let v4 = m.ip_version == 4;
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    let b = f.head_mut();
    let ip_end = match (v4, be16(b, l3 + 2), be16(b, l3 + 4)) {
        (true, Some(len), _) => l3 + len as usize,
        (false, _, Some(len)) => l3 + 40 + len as usize,
        _ => return false,
    };
    let inner = l4 + 8;
    if ip_end > b.len() || ip_end < inner + ipv4::MIN_LEN {
        return false;
    }
    let (inner_l4, proto) =
        if v4 { (inner + (b[inner] & 0x0f) as usize * 4, b[inner + ipv4::PROTO]) } else { (inner + 40, b[inner + 6]) };
    // Where the quoted address and port are, and the outer address that goes with them.
    let (src, dst) = if v4 { (ipv4::SRC, ipv4::DST) } else { (8, 24) };
    let (addr_at, port_at, outer_at) = match end {
        End::Dst => (inner + dst, inner_l4 + 2, l3 + src),
        End::Src => (inner + src, inner_l4, l3 + dst),
    };
    if inner_l4 + 4 > ip_end || !matches!(proto, ipv4::PROTO_TCP | ipv4::PROTO_UDP) {
        return false;
    }
    let old = (addr(b, addr_at, v4), u16::from_be_bytes([b[port_at], b[port_at + 1]]));
    if old != from {
        return false;
    }
    let d_addr = word_change(words(old.0, v4), words(to.0, v4));
    let d_port = word_change(std::iter::once(old.1), std::iter::once(to.1));
    // The quoted packet's own checksums, as far as the quote holds them.
    if v4 {
        adjust_checksum(&mut b[inner + ipv4::CHECKSUM..inner + ipv4::CHECKSUM + 2], d_addr, true);
    }
    let sum_at = inner_l4 + if proto == ipv4::PROTO_TCP { 16 } else { 6 };
    let no_udp_sum = proto == ipv4::PROTO_UDP && v4 && b.get(sum_at..sum_at + 2) == Some(&[0, 0]);
    if sum_at + 2 <= ip_end && !no_udp_sum {
        adjust_checksum(&mut b[sum_at..sum_at + 2], fold(d_addr + d_port), true);
    }
    put_addr(b, addr_at, to.0, v4);
    b[port_at..port_at + 2].copy_from_slice(&to.1.to_be_bytes());
    let outer = if end == End::Dst { &mut m.ip_src } else { &mut m.ip_dst };
    if *outer == from.0 {
        if v4 {
            adjust_checksum(&mut b[l3 + ipv4::CHECKSUM..l3 + ipv4::CHECKSUM + 2], d_addr, true);
        }
        put_addr(b, outer_at, to.0, v4);
        *outer = to.0;
    }
    // The message's checksum anew: the quote changed in several places, and an error
    // is short.
    b[l4 + 2] = 0;
    b[l4 + 3] = 0;
    let mut sum = ones_sum(&b[l4..ip_end]);
    if !v4 {
        sum += ones_sum(&b[l3 + 8..l3 + 40]) + (ip_end - l4) as u32 + ipv4::PROTO_ICMPV6 as u32;
    }
    b[l4 + 2..l4 + 4].copy_from_slice(&checksum(sum).to_be_bytes());
    true
}
