//! VXLAN encapsulation and decapsulation (RFC 7348) on a frame, in place: encap
//! prepends the outer headers into the headroom, decap strips them. No payload copy.
use crate::{
    meta::Meta,
    tables::{Remote, Vtep},
    wire::{be16, be32, checksum, ipv4, vxlan, Mac},
    DropReason, Frame,
};

/// The outer UDP source port: a hash of the inner flow in 49152..=65535 (RFC 7348
/// section 5), so the underlay's ECMP spreads flows while keeping each one in order.
/// An IP packet's flow is its addresses, protocol and ports; a frame without an IP
/// header's, its MACs. One multiply: the top bits of a product by an odd constant depend
/// on every bit of the folded flow fields below them.
#[inline]
pub fn source_port(m: &Meta) -> u16 {
    let x = if m.ip_version != 0 {
        let ips = m.ip_src ^ m.ip_dst.rotate_left(64);
        let l4 = ((m.proto as u64) << 32) | ((m.sport as u64) << 16) | m.dport as u64;
        (ips as u64 ^ (ips >> 64) as u64).rotate_left(13) ^ l4.rotate_left(29)
    } else {
        m.src.to_u64() ^ m.dst.to_u64().rotate_left(24)
    };
    let x = (x ^ (x >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    49152 | (x >> 50) as u16
}

/// The DSCP/ECN byte of the outer IPv4 header: the inner packet's (RFC 7348 leaves it to
/// the VTEP; copying keeps the tenant's marking visible to the underlay), with its DSCP
/// replaced by `outer_dscp` when the port sets one.
#[inline(always)]
fn outer_tos(m: &Meta, outer_dscp: Option<u8>) -> u8 {
    let inner_tos = if m.ip_version != 0 { m.tos } else { 0 };
    match outer_dscp {
        Some(d) => (d << 2) | (inner_tos & 3),
        None => inner_tos,
    }
}

/// The outer stack toward `remote` for an inner frame of `inner` bytes: everything but
/// the UDP source port, which follows the inner flow.
#[inline]
fn outer_header(h: &mut [u8; vxlan::OUTER_LEN], remote: &Remote, vni: u32, inner: usize, tos: u8) {
    h.copy_from_slice(&remote.header);
    let ip_len = (inner + vxlan::MTU_OVERHEAD) as u16;
    let ip = vxlan::OUTER_IP;
    h[ip + ipv4::TOTAL_LEN..ip + ipv4::TOTAL_LEN + 2].copy_from_slice(&ip_len.to_be_bytes());
    h[ip + 1] = tos;
    let sum = remote.ip_sum + ip_len as u32 + tos as u32;
    h[ip + ipv4::CHECKSUM..ip + ipv4::CHECKSUM + 2].copy_from_slice(&checksum(sum).to_be_bytes());
    let udp = vxlan::OUTER_UDP;
    h[udp + 4..udp + 6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    // UDP checksum stays zero, as RFC 7348 recommends for IPv4.
    let v = vxlan::OUTER_VXLAN;
    h[v + 4..v + 7].copy_from_slice(&[(vni >> 16) as u8, (vni >> 8) as u8, vni as u8]);
}

/// Wraps the frame in VXLAN for `vni` toward `remote`. `outer_dscp` overrides the DSCP
/// copied from the inner packet.
#[inline]
pub fn encap<F: Frame>(
    f: &mut F,
    m: &Meta,
    vni: u32,
    remote: &Remote,
    vtep: &Vtep,
    outer_dscp: Option<u8>,
) -> Result<(), DropReason> {
    Encapsulator::default().encap(f, m, vni, (0, remote), vtep, outer_dscp)
}

/// Encapsulation over a batch: the outer stack built for one packet serves the next to
/// the same remote VTEP in the same VNI with the same length and DSCP (a VM's burst is
/// mostly that), which then costs a copy and its source port.
pub struct Encapsulator {
    /// (remote VTEP IP, VNI, inner length, outer DSCP/ECN) of `header`.
    built: Option<(u32, u32, u16, u8)>,
    header: [u8; vxlan::OUTER_LEN],
}

impl Default for Encapsulator {
    fn default() -> Self {
        Encapsulator { built: None, header: [0; vxlan::OUTER_LEN] }
    }
}

impl Encapsulator {
    /// `encap`, toward `remote` (its IP and its outer headers). Inlined into the
    /// switching loop: as a call of six arguments it cost 27-34 instructions a packet.
    #[inline(always)]
    pub fn encap<F: Frame>(
        &mut self,
        f: &mut F,
        m: &Meta,
        vni: u32,
        (remote_ip, remote): (u32, &Remote),
        vtep: &Vtep,
        outer_dscp: Option<u8>,
    ) -> Result<(), DropReason> {
        let offload = f.offload();
        // A frame still to be segmented is checked by its largest segment.
        if offload.largest_segment(f.len()) + vxlan::MTU_OVERHEAD > vtep.mtu as usize {
            return Err(DropReason::MtuExceeded);
        }
        // Segmentation rewrites the outer lengths; until then they only stay in range.
        let inner = f.len().min(u16::MAX as usize - vxlan::MTU_OVERHEAD);
        let tos = outer_tos(m, outer_dscp);
        let key = (remote_ip, vni, inner as u16, tos);
        if self.built != Some(key) {
            outer_header(&mut self.header, remote, vni, inner, tos);
            self.built = Some(key);
        }
        let h = f.prepend(vxlan::OUTER_LEN).ok_or(DropReason::NoHeadroom)?;
        h.copy_from_slice(&self.header);
        let udp = vxlan::OUTER_UDP;
        h[udp..udp + 2].copy_from_slice(&source_port(m).to_be_bytes());
        if !offload.is_none() {
            f.set_offload(crate::offload::Offload { outer: vxlan::OUTER_LEN as u16, ..offload });
        }
        Ok(())
    }
}

/// What a valid VXLAN packet to our VTEP carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decap {
    pub vni: u32,
    pub remote_ip: u32,
    /// Bytes of outer headers to strip.
    pub outer_len: usize,
    /// Length of the inner frame (the outer IP length may end before the frame does:
    /// Ethernet padding).
    pub inner_len: usize,
}

/// Checks an uplink frame (already parsed into `m`) as VXLAN to `vtep`, naming the
/// reason when it is not. `head` is the first segment (every header must be in it),
/// `frame_len` the whole frame (a jumbo frame spans several mbufs). `serves` says
/// whether a VNI is one of ours.
pub fn check(
    head: &[u8],
    frame_len: usize,
    m: &Meta,
    vtep: &Vtep,
    serves: impl Fn(u32) -> bool,
) -> Result<Decap, DropReason> {
    if m.dst != vtep.mac {
        return Err(DropReason::NotOurMac);
    }
    if m.ethertype != crate::wire::ethernet::ETHERTYPE_IPV4 {
        return Err(DropReason::NotVxlan);
    }
    let l3 = m.l3 as usize;
    let h = head.get(l3..).ok_or(DropReason::VxlanTruncated)?;
    let ihl = ipv4::header_len(h).ok_or(DropReason::VxlanBadIp)?;
    let total = be16(h, ipv4::TOTAL_LEN).unwrap_or(0) as usize;
    if total < ihl || l3 + total > frame_len || !ipv4::checksum_ok(&h[..ihl]) || ipv4::fragment_bits(h) != 0 {
        return Err(DropReason::VxlanBadIp);
    }
    if be32(h, ipv4::DST) != Some(vtep.ip) {
        return Err(DropReason::NotOurVtepIp);
    }
    if h[ipv4::PROTO] != ipv4::PROTO_UDP {
        return Err(DropReason::NotVxlan);
    }
    // The UDP header, within the IP datagram and the first segment.
    let udp = h.get(ihl..(ihl + 8).min(total)).filter(|u| u.len() == 8).ok_or(DropReason::VxlanTruncated)?;
    if be16(udp, 2) != Some(vtep.udp_port) {
        return Err(DropReason::VxlanWrongPort);
    }
    let udp_len = be16(udp, 4).unwrap_or(0) as usize;
    if udp_len < 8 + vxlan::HEADER_LEN || udp_len > total - ihl {
        return Err(DropReason::VxlanTruncated);
    }
    let hdr = h.get(ihl + 8..ihl + 8 + vxlan::HEADER_LEN).ok_or(DropReason::VxlanTruncated)?;
    let vni = vxlan::vni(hdr).ok_or(DropReason::VxlanBadFlags)?;
    if !serves(vni) {
        return Err(DropReason::VxlanUnknownVni);
    }
    let inner_len = udp_len - 8 - vxlan::HEADER_LEN;
    if inner_len < crate::wire::ethernet::HEADER_LEN {
        return Err(DropReason::VxlanInnerTruncated);
    }
    Ok(Decap {
        vni,
        remote_ip: be32(h, ipv4::SRC).unwrap_or(0),
        outer_len: l3 + ihl + 8 + vxlan::HEADER_LEN,
        inner_len,
    })
}

/// Builds a frame of VXLAN around `inner` as a remote VTEP would (tests, trace).
pub fn build(src_mac: Mac, dst_mac: Mac, src_ip: u32, vtep: &Vtep, vni: u32, inner: &[u8]) -> Vec<u8> {
    let remote = Remote::new(&Vtep { ip: src_ip, mac: src_mac, ..*vtep }, vtep.ip, dst_mac);
    let mut f = crate::VecFrame::new(inner);
    let mut m = Meta::default();
    crate::parse::parse(inner, &mut m);
    let big = Vtep { mtu: u16::MAX, ..*vtep };
    encap(&mut f, &m, vni, &remote, &big, None).expect("headroom");
    f.bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ones_sum;

    fn vtep() -> Vtep {
        Vtep { ip: 0x0a000001, mac: Mac([2, 0, 0, 0, 0, 1]), uplink: 0, udp_port: 4789, ttl: 64, mtu: 1500 }
    }

    fn inner() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 2, 1, 2, 0, 0, 0, 1, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0x10, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 1, 10, 1, 0, 2]);
        f.extend_from_slice(&[4, 0, 0x13, 0x89, 0, 8, 0, 0]);
        f.resize(60, 0);
        f
    }

    #[test]
    fn encap_builds_the_rfc7348_stack() {
        let v = vtep();
        let remote = Remote::new(&v, 0x0a000002, Mac([2, 0, 0, 0, 0, 2]));
        let payload = inner();
        let mut f = crate::VecFrame::new(&payload);
        let mut m = Meta::default();
        crate::parse::parse(&payload, &mut m);
        encap(&mut f, &m, 100, &remote, &v, None).unwrap();
        let b = f.bytes();
        assert_eq!(b.len(), 50 + 60);
        assert_eq!(&b[0..6], &[2, 0, 0, 0, 0, 2], "next hop MAC");
        assert_eq!(&b[6..12], &[2, 0, 0, 0, 0, 1], "our MAC");
        assert_eq!(&b[12..14], &[8, 0]);
        let ip = &b[14..34];
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[1], 0x10, "inner DSCP copied");
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 96, "20 + 8 + 8 + 60");
        assert_eq!(u16::from_be_bytes([ip[6], ip[7]]), 0x4000, "DF");
        assert_eq!((ip[8], ip[9]), (64, 17));
        assert_eq!(ones_sum(ip), 0xffff, "header checksum");
        assert_eq!(&ip[12..20], &[10, 0, 0, 1, 10, 0, 0, 2]);
        let udp = &b[34..42];
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        assert!(sport >= 49152);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]), 76);
        assert_eq!(&udp[6..8], &[0, 0]);
        assert_eq!(&b[42..50], &[0x08, 0, 0, 0, 0, 0, 100, 0]);
        assert_eq!(&b[50..], &payload[..], "inner frame untouched");
    }

    #[test]
    fn source_port_follows_the_flow() {
        let mut a = Meta::default();
        crate::parse::parse(&inner(), &mut a);
        let mut b = a;
        assert_eq!(source_port(&a), source_port(&b));
        let spread: std::collections::HashSet<u16> = (0..1024u16)
            .map(|p| {
                b.sport = p;
                source_port(&b)
            })
            .collect();
        assert!(spread.len() > 900, "1024 flows spread over {} ports", spread.len());
        // A frame without an IP header (ARP, say) is its MACs' flow.
        let arp = Meta { ip_version: 0, ip_src: 0, ip_dst: 0, sport: 0, dport: 0, proto: 0, ..a };
        let spread: std::collections::HashSet<u16> = (0..1024u16)
            .map(|i| source_port(&Meta { src: Mac([2, 0, 0, 0, (i >> 8) as u8, i as u8]), ..arp }))
            .collect();
        assert!(spread.len() > 900, "1024 MAC pairs spread over {} ports", spread.len());
    }

    #[test]
    fn encap_refuses_what_would_exceed_the_mtu() {
        let v = Vtep { mtu: 1500, ..vtep() };
        let remote = Remote::new(&v, 0x0a000002, Mac([2, 0, 0, 0, 0, 2]));
        let m = Meta::default();
        let mut ok = crate::VecFrame::new(&vec![0u8; 1464]);
        assert!(encap(&mut ok, &m, 1, &remote, &v, None).is_ok(), "1464 + 36 = 1500 fits");
        let mut big = crate::VecFrame::new(&vec![0u8; 1465]);
        assert_eq!(encap(&mut big, &m, 1, &remote, &v, None), Err(DropReason::MtuExceeded));
        let jumbo = Vtep { mtu: 9000, ..v };
        assert!(encap(&mut crate::VecFrame::new(&vec![0u8; 8964]), &m, 1, &remote, &jumbo, None).is_ok());
    }

    #[test]
    fn check_accepts_ours_and_names_every_malformation() {
        let v = vtep();
        let good = build(Mac([2, 0, 0, 0, 0, 2]), v.mac, 0x0a000002, &v, 100, &inner());
        let serves = |vni| vni == 100;
        let run = |b: &[u8]| {
            let mut m = Meta::default();
            crate::parse::parse(b, &mut m);
            check(b, b.len(), &m, &v, serves)
        };
        let d = run(&good).unwrap();
        assert_eq!(d, Decap { vni: 100, remote_ip: 0x0a000002, outer_len: 50, inner_len: 60 });
        let with = |i: usize, x: u8| {
            let mut b = good.clone();
            b[i] = x;
            b
        };
        let fix_csum = |mut b: Vec<u8>| {
            b[24] = 0;
            b[25] = 0;
            let c = crate::wire::checksum(ones_sum(&b[14..34]));
            b[24..26].copy_from_slice(&c.to_be_bytes());
            b
        };
        assert_eq!(run(&with(0, 0x04)), Err(DropReason::NotOurMac));
        assert_eq!(run(&with(24, good[24] ^ 0xff)), Err(DropReason::VxlanBadIp), "checksum");
        assert_eq!(run(&fix_csum(with(20, 0x20))), Err(DropReason::VxlanBadIp), "fragment");
        assert_eq!(run(&fix_csum(with(33, 9))), Err(DropReason::NotOurVtepIp));
        assert_eq!(run(&fix_csum(with(23, 6))), Err(DropReason::NotVxlan), "TCP");
        assert_eq!(run(&with(37, 0x13)), Err(DropReason::VxlanWrongPort));
        assert_eq!(run(&with(42, 0x00)), Err(DropReason::VxlanBadFlags));
        assert_eq!(run(&with(48, 101)), Err(DropReason::VxlanUnknownVni));
        assert_eq!(run(&good[..40]), Err(DropReason::VxlanBadIp), "IP length beyond the frame");
        // A VXLAN packet whose inner frame is 10 bytes.
        let short = build(Mac([2, 0, 0, 0, 0, 2]), v.mac, 0x0a000002, &v, 100, &[0xaa; 10]);
        assert_eq!(run(&short), Err(DropReason::VxlanInnerTruncated));
        // A jumbo frame whose first segment holds only the headers is judged by its
        // whole length.
        let jumbo = build(Mac([2, 0, 0, 0, 0, 2]), v.mac, 0x0a000002, &v, 100, &vec![0x11; 9000]);
        let mut m = Meta::default();
        crate::parse::parse(&jumbo, &mut m);
        assert_eq!(check(&jumbo[..2048], jumbo.len(), &m, &v, serves).map(|d| d.inner_len), Ok(9000));
        assert_eq!(check(&jumbo[..2048], jumbo.len() - 1, &m, &v, serves), Err(DropReason::VxlanBadIp));
        // Every truncation and every single-byte change is handled without panic.
        for n in 0..good.len() {
            let _ = run(&good[..n]);
        }
        for i in 0..good.len() {
            for x in [0u8, 0xff, 0x45] {
                let _ = run(&with(i, x));
            }
        }
    }
}
