//! What a session is keyed by, and what the tracker reads of a packet: its tuple and,
//! by protocol, the TCP segment, the ICMP query id, or the header an ICMP error quotes.
use super::tcp::Segment;
use crate::{
    meta::{ipv4_key, IpKey, Meta},
    wire::ipv4,
};

/// A session's key: its zone and both endpoints, the lower one first, so the two
/// directions of a connection find one entry with one lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CtKey {
    pub zone: u32,
    pub proto: u8,
    pub lo: (IpKey, u16),
    pub hi: (IpKey, u16),
}

impl CtKey {
    /// The end of the key that is not `end`, if `end` is one of its ends.
    #[inline]
    pub fn other_end(&self, end: (IpKey, u16)) -> Option<(IpKey, u16)> {
        match end {
            e if e == self.lo => Some(self.hi),
            e if e == self.hi => Some(self.lo),
            _ => None,
        }
    }

    /// The end of the key at address `ip`, and the other end, if exactly one end is there.
    #[inline]
    pub fn end_at(&self, ip: IpKey) -> Option<((IpKey, u16), (IpKey, u16))> {
        match (self.lo.0 == ip, self.hi.0 == ip) {
            (true, false) => Some((self.lo, self.hi)),
            (false, true) => Some((self.hi, self.lo)),
            _ => None,
        }
    }
}

/// A key as a session stores it: both addresses in two words each, then the zone (a
/// VNI: 24 bits), protocol and ports in one.
pub(super) type KeyWords = [u64; 5];

/// The bits of a zone a session keeps (a key read back has only these).
pub const ZONE_BITS: u32 = 0xff_ffff;

#[inline]
pub(super) fn key_words(k: &CtKey) -> KeyWords {
    [
        k.lo.0 as u64,
        (k.lo.0 >> 64) as u64,
        k.hi.0 as u64,
        (k.hi.0 >> 64) as u64,
        ((k.zone & ZONE_BITS) as u64) << 40 | (k.proto as u64) << 32 | (k.lo.1 as u64) << 16 | k.hi.1 as u64,
    ]
}

pub(super) fn words_key(w: &KeyWords) -> CtKey {
    let a = |i: usize| w[i] as u128 | (w[i + 1] as u128) << 64;
    CtKey {
        zone: (w[4] >> 40) as u32,
        proto: (w[4] >> 32) as u8,
        lo: (a(0), (w[4] >> 16) as u16),
        hi: (a(2), w[4] as u16),
    }
}

/// One direction of a connection: who sent, to whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tuple {
    pub zone: u32,
    pub proto: u8,
    pub src: (IpKey, u16),
    pub dst: (IpKey, u16),
}

impl Tuple {
    /// The key, and whether the sender is its `hi` endpoint.
    #[inline]
    pub fn key(&self) -> (CtKey, bool) {
        let swap = self.src > self.dst;
        let (lo, hi) = if swap { (self.dst, self.src) } else { (self.src, self.dst) };
        (CtKey { zone: self.zone, proto: self.proto, lo, hi }, swap)
    }

    /// A TCP or UDP packet's tuple, from its metadata alone.
    #[inline]
    pub fn of_ports(m: &Meta) -> Tuple {
        Tuple { zone: m.vni, proto: m.proto, src: (m.ip_src, m.sport), dst: (m.ip_dst, m.dport) }
    }

    pub fn reversed(&self) -> Tuple {
        Tuple { src: self.dst, dst: self.src, ..*self }
    }

    /// Metadata as the ACL reads it, for re-checking a session against new rules.
    pub fn meta(&self) -> Meta {
        let v4 = self.src.0 >> 32 == 0xffff && self.dst.0 >> 32 == 0xffff;
        let icmp = matches!(self.proto, ipv4::PROTO_ICMP | ipv4::PROTO_ICMPV6);
        Meta {
            ip_version: if v4 { 4 } else { 6 },
            proto: self.proto,
            ip_src: self.src.0,
            ip_dst: self.dst.0,
            // A query's type: what rules on ICMP types look at.
            sport: if icmp { echo_request(self.proto) as u16 } else { self.src.1 },
            dport: if icmp { 0 } else { self.dst.1 },
            l4: 1,
            ..Meta::default()
        }
    }
}

pub const PROTO_ICMP: u8 = ipv4::PROTO_ICMP;
pub const PROTO_ICMPV6: u8 = ipv4::PROTO_ICMPV6;

/// The echo request's type in ICMP or ICMPv6.
pub fn echo_request(proto: u8) -> u8 {
    if proto == PROTO_ICMP {
        8
    } else {
        128
    }
}

/// What kind of packet the tracker sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tcp(Segment),
    Udp,
    /// An ICMP query (echo, timestamp...) or its answer.
    Query {
        request: bool,
    },
    /// An ICMP error quoting a packet of `Tuple` (as that packet was sent).
    Error(Tuple),
    /// Neighbour discovery and MLD: not tracked, the rules decide.
    Untracked,
    /// Another protocol, tracked by its address pair.
    Other,
    /// Too short or malformed for its protocol.
    Malformed,
}

/// A packet's tuple and kind, read from its first segment (`head`; `len`: the whole
/// frame). None for a non-first fragment (no L4 header).
pub fn classify(head: &[u8], len: usize, m: &Meta, zone: u32) -> (Tuple, Kind) {
    let mut t = Tuple { zone, proto: m.proto, src: (m.ip_src, 0), dst: (m.ip_dst, 0) };
    let l4 = m.l4 as usize;
    let Some(l4_len) = l4_len(head, len, m) else { return (t, Kind::Malformed) };
    let kind = match m.proto {
        ipv4::PROTO_TCP => {
            t.src.1 = m.sport;
            t.dst.1 = m.dport;
            match tcp_segment(head, l4, l4_len) {
                Some(s) => Kind::Tcp(s),
                None => Kind::Malformed,
            }
        }
        ipv4::PROTO_UDP | 132 | 136 => {
            t.src.1 = m.sport;
            t.dst.1 = m.dport;
            Kind::Udp
        }
        PROTO_ICMP | PROTO_ICMPV6 => icmp(head, l4, l4_len, m, &mut t),
        _ => Kind::Other,
    };
    (t, kind)
}

/// A TCP packet's segment (its L4 header parsed), if it is whole.
#[inline]
pub fn segment(head: &[u8], len: usize, m: &Meta) -> Option<Segment> {
    tcp_segment(head, m.l4 as usize, l4_len(head, len, m)?)
}

#[inline(always)]
fn tcp_segment(head: &[u8], l4: usize, l4_len: usize) -> Option<Segment> {
    head.get(l4..).and_then(|h| Segment::parse(h, l4_len))
}

/// Bytes from the L4 header to the end of the IP payload, by the IP header's length
/// (checked against the frame).
fn l4_len(head: &[u8], len: usize, m: &Meta) -> Option<usize> {
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    if l4 == 0 || l4 < l3 {
        return None;
    }
    let ip_end = match m.ip_version {
        4 => l3 + u16::from_be_bytes([*head.get(l3 + 2)?, *head.get(l3 + 3)?]) as usize,
        6 => l3 + 40 + u16::from_be_bytes([*head.get(l3 + 4)?, *head.get(l3 + 5)?]) as usize,
        _ => return None,
    };
    // A TSO frame's IP length may be left for the segmenter: the frame says.
    let ip_end = if ip_end <= l4 { len } else { ip_end.min(len) };
    ip_end.checked_sub(l4)
}

fn icmp(head: &[u8], l4: usize, l4_len: usize, m: &Meta, t: &mut Tuple) -> Kind {
    let Some(h) = head.get(l4..l4 + 8) else { return Kind::Malformed };
    if l4_len < 8 {
        return Kind::Malformed;
    }
    let (ty, id) = (h[0], u16::from_be_bytes([h[4], h[5]]));
    let v4 = m.proto == PROTO_ICMP;
    // Queries and their answers: keyed by the id on both ends.
    let query = if v4 {
        match ty {
            8 | 13 | 15 | 17 => Some(true),
            0 | 14 | 16 | 18 => Some(false),
            _ => None,
        }
    } else {
        match ty {
            128 | 139 => Some(true),
            129 | 140 => Some(false),
            _ => None,
        }
    };
    if let Some(request) = query {
        t.src.1 = id;
        t.dst.1 = id;
        return Kind::Query { request };
    }
    let error = if v4 { matches!(ty, 3 | 4 | 5 | 11 | 12) } else { (1..=4).contains(&ty) };
    if error {
        return match quoted(head.get(l4 + 8..).unwrap_or(&[]), v4, t.zone) {
            Some(q) => Kind::Error(q),
            None => Kind::Malformed,
        };
    }
    if !v4 && ((130..=137).contains(&ty) || ty == 143) {
        return Kind::Untracked;
    }
    Kind::Other
}

/// The tuple of the packet an ICMP error quotes: its IP header and first 8 bytes.
fn quoted(b: &[u8], v4: bool, zone: u32) -> Option<Tuple> {
    let (proto, src, dst, l4) = if v4 {
        let ihl = (*b.first()? & 0x0f) as usize * 4;
        if b[0] >> 4 != 4 || ihl < 20 {
            return None;
        }
        let a = |o: usize| -> Option<u32> { Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?)) };
        (*b.get(9)?, ipv4_key(a(12)?), ipv4_key(a(16)?), ihl)
    } else {
        if b.first()? >> 4 != 6 {
            return None;
        }
        let a = |o: usize| -> Option<u128> { Some(u128::from_be_bytes(b.get(o..o + 16)?.try_into().ok()?)) };
        (*b.get(6)?, a(8)?, a(24)?, 40)
    };
    let p = b.get(l4..l4 + 8)?;
    let mut t = Tuple { zone, proto, src: (src, 0), dst: (dst, 0) };
    match proto {
        ipv4::PROTO_TCP | ipv4::PROTO_UDP | 132 | 136 => {
            t.src.1 = u16::from_be_bytes([p[0], p[1]]);
            t.dst.1 = u16::from_be_bytes([p[2], p[3]]);
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            let id = u16::from_be_bytes([p[4], p[5]]);
            t.src.1 = id;
            t.dst.1 = id;
        }
        _ => {}
    }
    Some(t)
}
