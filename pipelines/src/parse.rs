//! The parse stage: one pass over each packet's headers into `Meta`.
use crate::{
    meta::{ipv4_key, Action, Meta},
    wire::{be16, be32, ethernet as eth, ipv4, Mac},
    DropReason,
};

/// Untagged Ethernet, IPv4 without options, TCP or UDP ports: the frame most traffic
/// is made of, read at fixed offsets.
const COMMON_LEN: usize = eth::HEADER_LEN + ipv4::MIN_LEN + 4;

/// Parses the Ethernet frame `b` into `m`. Only a frame too short for an Ethernet
/// header is dropped here: an L2 switch forwards what it cannot read further, and the
/// L3 fields stay empty (`ip_version == 0`).
#[inline]
pub fn parse(b: &[u8], m: &mut Meta) {
    if let Some(h) = b.first_chunk::<COMMON_LEN>() {
        // Not a fragment (MF and offset clear), so the ports are there.
        let (ip, l4) = (eth::HEADER_LEN, eth::HEADER_LEN + ipv4::MIN_LEN);
        let proto = h[ip + ipv4::PROTO];
        if [h[eth::ETHERTYPE], h[eth::ETHERTYPE + 1]] == eth::ETHERTYPE_IPV4.to_be_bytes()
            && h[ip] == 0x45
            && h[ip + ipv4::FLAGS_FRAG] & 0x3f == 0
            && h[ip + ipv4::FLAGS_FRAG + 1] == 0
            && (proto == ipv4::PROTO_UDP || proto == ipv4::PROTO_TCP)
        {
            let word = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
            *m = Meta {
                dst: Mac([h[0], h[1], h[2], h[3], h[4], h[5]]),
                src: Mac([h[6], h[7], h[8], h[9], h[10], h[11]]),
                ethertype: eth::ETHERTYPE_IPV4,
                l3: ip as u16,
                l4: l4 as u16,
                ip_version: 4,
                proto,
                ip_src: ipv4_key(word(ip + ipv4::SRC)),
                ip_dst: ipv4_key(word(ip + ipv4::DST)),
                sport: u16::from_be_bytes([h[l4], h[l4 + 1]]),
                dport: u16::from_be_bytes([h[l4 + 2], h[l4 + 3]]),
                tos: h[ip + 1],
                ..Meta::default()
            };
            return;
        }
    }
    parse_any(b, m)
}

/// `parse` for any frame: tags, IPv4 options and fragments, IPv6 and its extension
/// headers, ICMP, truncation.
pub(crate) fn parse_any(b: &[u8], m: &mut Meta) {
    *m = Meta::default();
    if b.len() < eth::HEADER_LEN {
        m.action = Action::Drop(DropReason::RuntFrame);
        return;
    }
    m.dst = Mac::from_slice(&b[eth::DST]);
    m.src = Mac::from_slice(&b[eth::SRC]);
    let mut off = eth::ETHERTYPE;
    let mut et = be16(b, off).unwrap_or(0);
    // Up to two tags (802.1ad outer, 802.1Q inner).
    for _ in 0..2 {
        if et != eth::ETHERTYPE_VLAN && et != eth::ETHERTYPE_QINQ {
            break;
        }
        let Some(tci) = be16(b, off + 2) else { break };
        if m.vlan_tci.is_none() {
            m.vlan_tci = Some(tci);
        }
        off += eth::VLAN_TAG_LEN;
        et = be16(b, off).unwrap_or(0);
    }
    m.ethertype = et;
    let l3 = off + 2;
    m.l3 = l3 as u16;
    match et {
        eth::ETHERTYPE_IPV4 => parse_ipv4(b, l3, m),
        eth::ETHERTYPE_IPV6 => parse_ipv6(b, l3, m),
        _ => {}
    }
}

fn parse_ipv4(b: &[u8], l3: usize, m: &mut Meta) {
    let Some(h) = b.get(l3..) else { return };
    let Some(ihl) = ipv4::header_len(h) else { return };
    m.ip_version = 4;
    m.tos = h[1];
    m.proto = h[ipv4::PROTO];
    m.ip_src = ipv4_key(be32(h, ipv4::SRC).unwrap_or(0));
    m.ip_dst = ipv4_key(be32(h, ipv4::DST).unwrap_or(0));
    let frag = ipv4::fragment_bits(h);
    m.fragment = frag != 0;
    // Only the first fragment carries the L4 header.
    if frag & 0x1fff == 0 {
        l4(b, l3 + ihl, m);
    }
}

fn parse_ipv6(b: &[u8], l3: usize, m: &mut Meta) {
    let Some(h) = b.get(l3..l3 + 40) else { return };
    if h[0] >> 4 != 6 {
        return;
    }
    m.ip_version = 6;
    m.tos = (h[0] << 4) | (h[1] >> 4);
    m.ip_src = u128::from_be_bytes(h[8..24].try_into().unwrap_or([0; 16]));
    m.ip_dst = u128::from_be_bytes(h[24..40].try_into().unwrap_or([0; 16]));
    let mut next = h[6];
    let mut off = l3 + 40;
    // Walk a few extension headers: hop-by-hop, routing, fragment, destination options.
    for _ in 0..4 {
        match next {
            0 | 43 | 60 => {
                let (Some(&nh), Some(&len)) = (b.get(off), b.get(off + 1)) else { return };
                next = nh;
                off += (len as usize + 1) * 8;
            }
            44 => {
                let (Some(&nh), Some(fo)) = (b.get(off), be16(b, off + 2)) else { return };
                m.fragment = true;
                next = nh;
                off += 8;
                if fo & 0xfff8 != 0 {
                    m.proto = next;
                    return; // not the first fragment: no L4 header here
                }
            }
            _ => break,
        }
    }
    m.proto = next;
    l4(b, off, m);
}

/// An IPv6 packet's fragment header, if it has one among the extension headers `parse`
/// walks: (identification, offset in 8-byte units). `l3` is where the IPv6 header is.
pub fn ipv6_fragment(b: &[u8], l3: usize) -> Option<(u32, u16)> {
    let (mut next, mut off) = (*b.get(l3 + 6)?, l3 + 40);
    for _ in 0..4 {
        if next == 44 {
            let id = b.get(off + 4..off + 8)?;
            return Some((u32::from_be_bytes([id[0], id[1], id[2], id[3]]), be16(b, off + 2)? >> 3));
        }
        if !matches!(next, 0 | 43 | 60) {
            return None;
        }
        next = *b.get(off)?;
        off += (*b.get(off + 1)? as usize + 1) * 8;
    }
    None
}

fn l4(b: &[u8], off: usize, m: &mut Meta) {
    match m.proto {
        ipv4::PROTO_TCP | ipv4::PROTO_UDP => {
            if let (Some(s), Some(d)) = (be16(b, off), be16(b, off + 2)) {
                m.l4 = off as u16;
                m.sport = s;
                m.dport = d;
            }
        }
        ipv4::PROTO_ICMP | ipv4::PROTO_ICMPV6 => {
            if let (Some(&t), Some(&c)) = (b.get(off), b.get(off + 1)) {
                m.l4 = off as u16;
                m.sport = t as u16;
                m.dport = c as u16;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(et: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        f.extend_from_slice(&et.to_be_bytes());
        f
    }

    fn udp4() -> Vec<u8> {
        let mut f = eth(0x0800);
        f.extend_from_slice(&[0x45, 0xb8, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x04, 0x00, 0x13, 0x89, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn ipv4_udp() {
        let mut m = Meta::default();
        parse(&udp4(), &mut m);
        assert_eq!(m.action, Action::Continue);
        assert_eq!(m.src.to_string(), "02:00:00:00:00:01");
        assert_eq!((m.ethertype, m.l3, m.l4, m.ip_version, m.proto), (0x0800, 14, 34, 4, 17));
        assert_eq!((m.sport, m.dport, m.tos), (1024, 5001, 0xb8));
        assert_eq!(m.ip_src, ipv4_key(0x0a000001));
    }

    #[test]
    fn vlan_tagged_and_qinq() {
        let inner = udp4();
        let mut f = eth(0x8100);
        f.extend_from_slice(&[0x20, 0x05]);
        f.extend_from_slice(&inner[12..]);
        let mut m = Meta::default();
        parse(&f, &mut m);
        assert_eq!((m.vlan_tci, m.l3, m.l4, m.dport), (Some(0x2005), 18, 38, 5001));
        let mut q = eth(0x88a8);
        q.extend_from_slice(&[0x00, 0x07, 0x81, 0x00, 0x00, 0x05]);
        q.extend_from_slice(&inner[12..]);
        parse(&q, &mut m);
        assert_eq!((m.vlan_tci, m.l3, m.dport), (Some(7), 22, 5001));
    }

    #[test]
    fn ipv6_tcp_through_an_extension_header_and_fragments() {
        let mut f = eth(0x86dd);
        let mut h = vec![0x60, 0, 0, 0, 0, 28, 0 /* hop-by-hop */, 64];
        h.extend_from_slice(&[0xfd; 16]);
        h.extend_from_slice(&[0xfe; 16]);
        f.extend_from_slice(&h);
        f.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop: next TCP, 8 bytes
        f.extend_from_slice(&[0, 80, 0x1f, 0x90]);
        let mut m = Meta::default();
        parse(&f, &mut m);
        assert_eq!((m.ip_version, m.proto, m.sport, m.dport, m.l4), (6, 6, 80, 8080, 62));
        assert_eq!(m.ip_dst, u128::from_be_bytes([0xfe; 16]));
        // A non-first fragment: protocol known, ports not.
        let mut g = f.clone();
        g[14 + 6] = 44;
        g[54..62].copy_from_slice(&[6, 0, 0, 0x10, 0, 0, 0, 1]);
        parse(&g, &mut m);
        assert!(m.fragment);
        assert_eq!((m.proto, m.l4, m.sport), (6, 0, 0));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// The fixed-offset path and the general parser agree on every frame: the
        /// fields the path tests take values on and off it (tags, options, fragment
        /// bits, other protocols), on top of random bytes and cuts.
        #[test]
        fn the_common_frame_path_agrees_with_the_general_parser(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 60),
            ethertype in proptest::sample::select(vec![0x0800u16, 0x0800, 0x0800, 0x8100, 0x86dd, 0x0806, 0x0801]),
            ver_ihl in proptest::sample::select(vec![0x45u8, 0x45, 0x45, 0x46, 0x44, 0x4f, 0x55, 0x65]),
            flags in proptest::sample::select(vec![0u8, 0x40, 0x80, 0x20, 0x01, 0x60, 0xff]),
            offset in proptest::sample::select(vec![0u8, 0, 1, 0x80]),
            proto in proptest::sample::select(vec![17u8, 17, 6, 1, 58, 0]),
            len in 0..80usize,
        ) {
            let mut f = bytes;
            f[12..14].copy_from_slice(&ethertype.to_be_bytes());
            (f[14], f[20], f[21], f[23]) = (ver_ihl, flags, offset, proto);
            f.truncate(len);
            let (mut fast, mut general) = (Meta { vni: 7, ..Meta::default() }, Meta::default());
            parse(&f, &mut fast);
            parse_any(&f, &mut general);
            proptest::prop_assert_eq!(fast, general);
        }
    }

    #[test]
    fn short_and_odd_frames_never_panic() {
        let mut m = Meta::default();
        parse(&[0u8; 13], &mut m);
        assert_eq!(m.action, Action::Drop(DropReason::RuntFrame));
        let full = udp4();
        for n in 14..full.len() {
            parse(&full[..n], &mut m);
            assert_eq!(m.action, Action::Continue, "truncated at {n} is still forwardable");
        }
        parse(&full[..20], &mut m);
        assert_eq!(m.ip_version, 0, "a truncated IPv4 header is not IP");
        // Exhaustive-ish: every single-byte mutation of a good frame parses without panic.
        for i in 0..full.len() {
            for v in [0u8, 0x0f, 0x45, 0x60, 0xff] {
                let mut g = full.clone();
                g[i] = v;
                parse(&g, &mut m);
            }
        }
    }
}
