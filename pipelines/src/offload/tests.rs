use super::*;
use crate::{
    wire::{checksum, ones_sum},
    Frame, VecFrame,
};

/// A frame in several segments, split where the test says: the shape of an mbuf chain.
#[derive(Clone, Debug)]
struct SegFrame {
    segs: Vec<Vec<u8>>,
    offload: Offload,
}

impl SegFrame {
    fn split(bytes: &[u8], cuts: &[usize]) -> SegFrame {
        let mut segs = Vec::new();
        let mut at = 0;
        for &c in cuts {
            segs.push(bytes[at..c].to_vec());
            at = c;
        }
        segs.push(bytes[at..].to_vec());
        SegFrame { segs, offload: Offload::NONE }
    }

    fn bytes(&self) -> Vec<u8> {
        self.segs.concat()
    }
}

impl Frame for SegFrame {
    fn head(&self) -> &[u8] {
        &self.segs[0]
    }
    fn head_mut(&mut self) -> &mut [u8] {
        &mut self.segs[0]
    }
    fn len(&self) -> usize {
        self.segs.iter().map(Vec::len).sum()
    }
    fn prepend(&mut self, _: usize) -> Option<&mut [u8]> {
        None
    }
    fn strip(&mut self, _: usize) -> bool {
        false
    }
    fn truncate(&mut self, _: usize) -> bool {
        false
    }
    fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.segs.iter().map(Vec::as_slice)
    }
    fn append(&mut self, b: &[u8]) -> bool {
        self.segs.last_mut().unwrap().extend_from_slice(b);
        true
    }
    fn absorb(&mut self, tail: &mut Self, skip: usize) -> bool {
        let Some(first) = tail.segs[0].get(skip..) else { return false };
        self.segs.push(first.to_vec());
        self.segs.extend(tail.segs[1..].iter().cloned());
        true
    }
    fn offload(&self) -> Offload {
        self.offload
    }
    fn set_offload(&mut self, o: Offload) {
        self.offload = o;
    }
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The TCP/UDP checksum computed the plain way, over the whole L4 segment.
fn l4_checksum(frame: &[u8], l3: usize) -> u16 {
    let (pseudo, l4) = if frame[l3] >> 4 == 4 {
        let total = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]) as usize;
        let ihl = (frame[l3] & 15) as usize * 4;
        let len = total - ihl;
        (ones_sum(&frame[l3 + 12..l3 + 20]) + frame[l3 + 9] as u32 + len as u32, l3 + ihl..l3 + total)
    } else {
        let len = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) as usize;
        (ones_sum(&frame[l3 + 8..l3 + 40]) + frame[l3 + 6] as u32 + len as u32, l3 + 40..l3 + 40 + len)
    };
    checksum(pseudo + ones_sum(&frame[l4]))
}

fn tcp_frame(v6: bool, payload: usize, seed: u32, flags: u8) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    let data = pattern(payload, seed);
    let mut tcp = vec![0u8; 32];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&0xfffff000u32.to_be_bytes());
    tcp[12] = 8 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
    tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    if v6 {
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&((32 + payload) as u16).to_be_bytes());
        ip.extend_from_slice(&[6, 64]);
        ip.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&ip);
    } else {
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + 32 + payload) as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let s = checksum(ones_sum(&ip));
        ip[10..12].copy_from_slice(&s.to_be_bytes());
        f.extend_from_slice(&ip);
    }
    f.extend_from_slice(&tcp);
    f.extend_from_slice(&data);
    let l3 = 14;
    let l4 = l3 + if v6 { 40 } else { 20 };
    let s = l4_checksum(&f, l3);
    f[l4 + 16..l4 + 18].copy_from_slice(&s.to_be_bytes());
    f
}

/// A TCP/IPv4 frame with 12 bytes of options, to be cut at `mss`.
fn tso4(mss: u16) -> Offload {
    Offload { l2: 14, l3: 20, l4: 32, csum: L4Csum::Tcp, gso: Some(Gso { ip_version: 4, mss }), ..Offload::NONE }
}

#[test]
fn sum_over_pieces_equals_sum_over_the_whole() {
    for seed in 0..200u32 {
        let b = pattern(1 + (seed as usize * 37) % 3000, seed);
        let want = ones_sum(&b) as u16;
        let mut s = Sum::default();
        let mut at = 0;
        let mut k = seed as usize;
        while at < b.len() {
            k = k.wrapping_mul(1103515245).wrapping_add(12345);
            let n = (1 + (k >> 8) % 17).min(b.len() - at);
            s.add(&b[at..at + n]);
            at += n;
        }
        assert_eq!(s.fold() % 0xffff, want % 0xffff, "seed {seed}");
    }
}

#[test]
fn a_partial_checksum_is_completed_across_segments() {
    for (v6, payload) in [(false, 1), (false, 1461), (true, 999), (true, 4000)] {
        let good = tcp_frame(v6, payload, payload as u32, 0x18);
        let l3 = 14;
        let l4 = l3 + if v6 { 40 } else { 20 };
        let mut partial = good.clone();
        // What the kernel leaves: the pseudo-header sum, not complemented.
        let pseudo = !l4_checksum(
            &{
                let mut z = good.clone();
                z[l4..].fill(0);
                z
            },
            l3,
        );
        partial[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        for cuts in [vec![], vec![l4 + 20, l4 + 21], vec![l4 + 33, good.len() - 1]] {
            let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < good.len()).collect();
            let mut f = SegFrame::split(&partial, &cuts);
            let o = Offload { l2: 14, l3: (l4 - l3) as u16, csum: L4Csum::Tcp, ..Offload::NONE };
            complete_checksum(&mut f, &o).unwrap();
            assert_eq!(f.bytes(), good, "v6 {v6} payload {payload} cuts {cuts:?}");
            assert!(f.offload().is_none());
        }
    }
}

struct Collect(Vec<VecFrame>, usize);

impl SegmentSink for Collect {
    type Out = VecFrame;
    fn alloc(&mut self) -> Option<VecFrame> {
        if self.1 == 0 {
            return None;
        }
        self.1 -= 1;
        Some(VecFrame::new(&[]))
    }
    fn emit(&mut self, f: VecFrame) {
        self.0.push(f);
    }
    fn discard(&mut self, _: VecFrame) {}
}

fn check_segments(big: &[u8], segs: &[VecFrame], l3: usize, mss: usize, hl: usize) {
    let payload = &big[hl..];
    assert_eq!(segs.len(), payload.len().div_ceil(mss));
    let tcp = hl - 32;
    let seq0 = u32::from_be_bytes(big[tcp + 4..tcp + 8].try_into().unwrap());
    for (i, s) in segs.iter().enumerate() {
        let b = s.bytes();
        let chunk = &payload[i * mss..payload.len().min((i + 1) * mss)];
        assert_eq!(b.len(), hl + chunk.len());
        assert_eq!(&b[hl..], chunk, "segment {i} payload");
        assert_eq!(l4_checksum(b, l3), 0, "segment {i}: TCP checksum must verify");
        if b[l3] >> 4 == 4 {
            assert_eq!(checksum(ones_sum(&b[l3..l3 + 20])), 0, "segment {i}: IP checksum");
            assert_eq!(u16::from_be_bytes([b[l3 + 4], b[l3 + 5]]), 0x1234 + i as u16);
        }
        let seq = u32::from_be_bytes(b[tcp + 4..tcp + 8].try_into().unwrap());
        assert_eq!(seq, seq0.wrapping_add((i * mss) as u32), "segment {i} seq (wraps)");
        let last = i + 1 == segs.len();
        let fin_psh = big[tcp + 13] & 0x09;
        assert_eq!(b[tcp + 13] & 0x09, if last { fin_psh } else { 0 }, "FIN/PSH only on the last segment");
        let cwr = big[tcp + 13] & 0x80 != 0;
        assert_eq!(b[tcp + 13] & 0x80 != 0, cwr && i == 0, "CWR only on the first");
    }
}

#[test]
fn segmentation_cuts_at_mss_with_every_checksum_right() {
    for v6 in [false, true] {
        for payload in [1, 1448, 1449, 65000 - 72] {
            let big = tcp_frame(v6, payload, 7, 0x80 | 0x18 | 0x01);
            let l3 = 14;
            let l3len = if v6 { 40 } else { 20 };
            let hl = 14 + l3len + 32;
            let o = Offload {
                l2: 14,
                l3: l3len as u16,
                l4: 32,
                csum: L4Csum::Tcp,
                gso: Some(Gso { ip_version: if v6 { 6 } else { 4 }, mss: 1448 }),
                ..Offload::NONE
            };
            let cuts: Vec<usize> = [hl + 3, hl + 1000, hl + 1001].into_iter().filter(|&c| c < big.len()).collect();
            let f = SegFrame::split(&big, &cuts);
            let mut c = Collect(Vec::new(), usize::MAX);
            let r = segment(&f, &o, &mut c).unwrap();
            assert_eq!(r.short, None);
            assert_eq!(r.sent, c.0.len());
            assert_eq!(o.segments(big.len()), c.0.len());
            assert_eq!(o.wire_len(big.len()), c.0.iter().map(|s| s.len()).sum::<usize>());
            check_segments(&big, &c.0, l3, 1448, hl);
        }
    }
}

#[test]
fn segmentation_inside_vxlan_fixes_the_outer_headers() {
    let inner = tcp_frame(false, 20000, 3, 0x18);
    let mut f = VecFrame::new(&inner);
    let o = tso4(1398);
    f.set_offload(o);
    let vtep = crate::tables::Vtep {
        ip: 0x0a00_0001,
        mac: crate::wire::Mac([2, 0, 0, 0, 0, 0xf0]),
        uplink: 0,
        udp_port: 4789,
        ttl: 64,
        mtu: 1500,
    };
    let remote = crate::tables::Remote::new(&vtep, 0x0a00_0002, crate::wire::Mac([2, 0, 0, 0, 0, 0xf1]));
    let m = crate::Meta::default();
    crate::vxlan::encap(&mut f, &m, 100, &remote, &vtep, None).unwrap();
    assert_eq!(f.offload().outer as usize, crate::wire::vxlan::OUTER_LEN);
    let mut c = Collect(Vec::new(), usize::MAX);
    segment(&f, &f.offload(), &mut c).unwrap();
    let outer = crate::wire::vxlan::OUTER_LEN;
    for s in &c.0 {
        let b = s.bytes();
        assert!(b.len() - 14 <= 1500, "each segment fits the uplink MTU");
        assert_eq!(checksum(ones_sum(&b[14..34])), 0, "outer IP checksum");
        let ip_len = u16::from_be_bytes([b[16], b[17]]) as usize;
        assert_eq!(ip_len, b.len() - 14);
        assert_eq!(u16::from_be_bytes([b[38], b[39]]) as usize, ip_len - 20, "outer UDP length");
    }
    let inners: Vec<VecFrame> = c.0.iter().map(|s| VecFrame::new(&s.bytes()[outer..])).collect();
    check_segments(&inner, &inners, 14, 1398, 14 + 20 + 32);
}

#[test]
fn segmentation_stops_cleanly_without_buffers() {
    let big = tcp_frame(false, 10000, 1, 0x18);
    let o = tso4(1448);
    let mut c = Collect(Vec::new(), 3);
    let r = segment(&VecFrame::new(&big), &o, &mut c).unwrap();
    assert_eq!(r, Segmented { sent: 3, short: Some(crate::DropReason::SegmentNoMbuf) });
}

#[test]
fn metadata_that_does_not_match_the_headers_is_refused() {
    let big = tcp_frame(false, 3000, 1, 0x18);
    let good = tso4(1448);
    for bad in [
        Offload { l4: 20, ..good },
        Offload { l3: 40, ..good },
        Offload { gso: Some(Gso { ip_version: 6, mss: 1448 }), ..good },
        Offload { gso: Some(Gso { ip_version: 4, mss: 0 }), ..good },
        Offload { outer: 7, ..good },
        Offload { l2: 200, ..good },
    ] {
        let mut c = Collect(Vec::new(), usize::MAX);
        assert!(segment(&VecFrame::new(&big), &bad, &mut c).is_err(), "{bad:?}");
        assert!(c.0.is_empty());
    }
    assert!(segment(&VecFrame::new(&big[..60]), &good, &mut Collect(Vec::new(), 9)).is_err());
}

#[test]
fn virtio_net_headers_decode_only_what_the_frame_holds() {
    let f = tcp_frame(false, 3000, 1, 0x18);
    let h = vnet::Header {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: vnet::GSO_TCPV4,
        hdr_len: 66,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        ..Default::default()
    };
    let o = h.offload(&f).unwrap();
    assert_eq!(
        o,
        Offload { l2: 14, l3: 20, l4: 32, csum: L4Csum::Tcp, gso: Some(Gso { ip_version: 4, mss: 1448 }), outer: 0 }
    );
    assert_eq!(vnet::Header::parse(&h.to_bytes()), h);
    assert_eq!(vnet::Header::of(&o, f.len(), false), Some(h));
    assert_eq!(vnet::Header::default().offload(&f), Ok(Offload::NONE));
    for bad in [
        vnet::Header { gso_type: vnet::GSO_TCPV6, ..h },
        vnet::Header { csum_offset: 6, ..h },
        vnet::Header { csum_start: 9000, ..h },
        vnet::Header { csum_start: 20, ..h },
        vnet::Header { gso_type: vnet::GSO_UDP, ..h },
        vnet::Header { flags: 0, ..h },
        vnet::Header { gso_size: 0, ..h },
    ] {
        assert!(bad.offload(&f).is_err(), "{bad:?}");
    }
    let inside = Offload { outer: 50, ..o };
    assert_eq!(vnet::Header::of(&inside, f.len() + 50, false), None, "no tunnel segmentation on this port");
    let t = vnet::Header::of(&inside, f.len() + 50, true).expect("a tunnel port takes it");
    assert_eq!((t.gso_type, t.csum_start, t.hdr_len, t.outer_th, t.inner_nh), (0x21, 84, 116, 34, 64));
    assert_eq!(vnet::Header::parse(&t.to_bytes()), t);
    assert_eq!(vnet::Header::parse(&t.to_bytes()[..vnet::LEN]), vnet::Header { outer_th: 0, inner_nh: 0, ..t });
    assert_eq!(
        t.offload(&[&[0u8; 50][..], &f[..]].concat()).map(|o| o.l4_start()),
        Ok(84),
        "read back: offsets from the outer header"
    );
    assert_eq!(vnet::Header::of(&inside, 65600, true), None, "an outer IP length cannot say 65,586");
}

#[test]
fn decapsulation_rebases_the_inner_work_and_drops_the_outer() {
    // As a kernel uplink reports a VXLAN frame: offsets from the outer Ethernet header.
    let inner_tcp =
        Offload { l2: 14, l3: 70, l4: 32, csum: L4Csum::Tcp, gso: Some(Gso { ip_version: 4, mss: 1398 }), outer: 0 };
    assert_eq!(
        inner_tcp.decapsulated(50, 14),
        Some(Offload { l2: 14, l3: 20, ..inner_tcp }),
        "the inner TCP's work, from the inner frame"
    );
    let tagged = Offload { l3: 74, ..inner_tcp };
    assert_eq!(tagged.decapsulated(50, 18), Some(Offload { l2: 18, l3: 20, ..inner_tcp }), "an inner VLAN tag");
    let outer_udp = Offload { l2: 14, l3: 20, csum: L4Csum::Udp, ..Offload::NONE };
    assert_eq!(
        outer_udp.decapsulated(50, 14),
        Some(Offload::NONE),
        "the outer UDP checksum goes with the outer headers"
    );
    assert_eq!(Offload { gso: inner_tcp.gso, ..outer_udp }.decapsulated(50, 14), None);
    assert_eq!(Offload { l3: 25, ..inner_tcp }.decapsulated(50, 14), None, "L4 inside the inner IP header");
}

#[test]
fn a_drivers_partial_and_coalesced_marks_read_their_offsets_from_the_headers() {
    let v4 = tcp_frame(false, 3000, 1, 0x18);
    assert_eq!(partial(&v4, Some(1448)), Ok(tso4(1448)));
    assert_eq!(partial(&v4, None), Ok(Offload { l4: 0, gso: None, ..tso4(1448) }));
    let v6 = tcp_frame(true, 3000, 1, 0x18);
    let o6 = partial(&v6, Some(1428)).unwrap();
    assert_eq!((o6.l3, o6.l4, o6.gso), (40, 32, Some(Gso { ip_version: 6, mss: 1428 })));
    // A hop-by-hop header (8 bytes) between IPv6 and TCP.
    let mut hbh = v6[..54].to_vec();
    hbh[20] = 0;
    hbh.extend_from_slice(&[6, 0, 5, 2, 0, 0, 1, 0]);
    hbh.extend_from_slice(&v6[54..]);
    assert_eq!(partial(&hbh, None).map(|o| (o.l3, o.csum)), Ok((48, L4Csum::Tcp)));
    // UDP: the checksum field at 6, and no segmentation of UDP.
    let mut udp = v4.clone();
    udp[23] = 17;
    assert_eq!(partial(&udp, None).map(|o| o.csum), Ok(L4Csum::Udp));
    assert!(partial(&udp, Some(1448)).is_err(), "UFO is not taken");
    let mut icmp = v4.clone();
    icmp[23] = 1;
    assert!(partial(&icmp, None).is_err());
    let mut frag = v6.clone();
    frag[20] = 44;
    assert!(partial(&frag, None).is_err(), "a fragment has no whole L4 payload");
    let mut frag4 = v4.clone();
    frag4[20] |= 0x20; // more fragments
    assert!(partial(&frag4, None).is_err(), "nor an IPv4 first fragment");
    for cut in [0, 13, 14, 30, 40] {
        assert!(partial(&v4[..cut], Some(1448)).is_err(), "{cut} bytes");
    }
}

/// `big` (a TSO frame of `o`) cut by `segment`, as frames a sender without TSO sends.
fn cut(big: &[u8], o: &Offload) -> Vec<VecFrame> {
    let mut f = VecFrame::new(big);
    f.offload = *o;
    let mut sink = Collect(Vec::new(), 1000);
    segment(&f, o, &mut sink).unwrap();
    sink.0
}

fn tso6(mss: u16) -> Offload {
    Offload { l3: 40, gso: Some(Gso { ip_version: 6, mss }), ..tso4(mss) }
}

const GRO: GroTarget = GroTarget { tso4: true, tso6: true, max_segs: 64, max_len: 65549 };

/// What the frames are once segmented again: the frames a receiver's stack sees.
fn resegmented(frames: &[VecFrame]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in frames {
        match f.offload.gso {
            Some(_) => {
                assert_eq!(f.offload.csum, L4Csum::Tcp);
                out.extend(cut(f.bytes(), &f.offload).iter().map(|s| s.bytes().to_vec()));
            }
            None => out.push(f.bytes().to_vec()),
        }
    }
    out
}

#[test]
fn gro_merges_a_connections_segments_into_one_frame_that_cuts_back_into_them() {
    for v6 in [false, true] {
        let o = if v6 { tso6(1448) } else { tso4(1448) };
        for (payload, flags) in [(20 * 1448, 0x10), (20 * 1448 - 700, 0x18), (2 * 1448, 0x18)] {
            let segs = cut(&tcp_frame(v6, payload, 7, flags), &o);
            let mut frames = segs.clone();
            let n = coalesce(&mut frames, &GRO);
            assert_eq!(n, 1, "v6 {v6}, {payload} bytes: one frame");
            let m = &frames[0];
            assert_eq!(m.offload.gso.map(|g| g.mss), Some(1448));
            assert_eq!(m.len(), segs.iter().map(|s| s.len() - o.header_len()).sum::<usize>() + o.header_len());
            // The stack on the other side sees exactly what was sent (PSH on the last).
            let want: Vec<Vec<u8>> = segs.iter().map(|s| s.bytes().to_vec()).collect();
            assert_eq!(resegmented(&frames[..n]), want, "v6 {v6}, {payload} bytes");
            // And completing its checksum gives the whole packet a right one.
            let mut whole = m.clone();
            let done = Offload { gso: None, ..m.offload };
            complete_checksum(&mut whole, &done).unwrap();
            assert_eq!(l4_checksum(whole.bytes(), 14), 0);
        }
    }
}

#[test]
fn gro_keeps_connections_apart_and_each_in_order() {
    let a = cut(&tcp_frame(false, 6 * 1448, 1, 0x18), &tso4(1448));
    let b = cut(&tcp_frame(true, 4 * 1448, 2, 0x18), &tso6(1448));
    // Interleaved: a0 b0 a1 b1 ...
    let mut frames: Vec<VecFrame> = Vec::new();
    for (i, f) in a.iter().enumerate() {
        frames.push(f.clone());
        frames.extend(b.get(i).cloned());
    }
    let n = coalesce(&mut frames, &GRO);
    assert_eq!(n, 2);
    assert_eq!(frames[0].bytes()[12..14], [0x08, 0x00], "a's frame first, where a0 was");
    let got = resegmented(&frames[..n]);
    let want: Vec<Vec<u8>> = a.iter().chain(&b).map(|s| s.bytes().to_vec()).collect();
    assert_eq!(got, want);
}

#[test]
fn gro_leaves_alone_what_it_must_not_merge() {
    let o = tso4(1448);
    let segs = cut(&tcp_frame(false, 8 * 1448, 3, 0x10), &o);
    let bytes = |fs: &[VecFrame]| fs.iter().map(|s| s.bytes().to_vec()).collect::<Vec<_>>();

    // A corrupted segment passes as it is, ends the frame before it, and the ones after
    // it merge into a frame of their own: its payload is never vouched for.
    let mut frames = segs.clone();
    frames[3].head_mut()[100] ^= 1;
    let corrupted = frames[3].bytes().to_vec();
    let n = coalesce(&mut frames, &GRO);
    assert_eq!(n, 3);
    assert_eq!(frames[1].bytes(), &corrupted[..]);
    assert!(frames[1].offload.is_none());
    let mut want = bytes(&segs);
    want[3] = corrupted;
    assert_eq!(resegmented(&frames[..n]), want);

    // A lost segment: two frames, in order.
    let mut frames: Vec<VecFrame> = segs.iter().enumerate().filter(|(i, _)| *i != 4).map(|(_, s)| s.clone()).collect();
    let n = coalesce(&mut frames, &GRO);
    assert_eq!(n, 2);
    let mut want = bytes(&segs);
    want.remove(4);
    assert_eq!(resegmented(&frames[..n]), want);

    // Another frame of the connection (a FIN here) keeps its place between them.
    let fin = cut(&tcp_frame(false, 1448, 3, 0x11), &o).remove(0);
    let mut frames = segs.clone();
    frames.insert(5, fin.clone());
    let n = coalesce(&mut frames, &GRO);
    assert_eq!(n, 3);
    assert_eq!(frames[1].bytes(), fin.bytes());

    // Other timestamps: not the same options, not merged.
    let mut frames = segs.clone();
    let ts = 14 + 20 + 20 + 4;
    frames[2].head_mut()[ts] ^= 0x40;
    let c = l4_checksum(frames[2].bytes(), 14);
    let old = u16::from_be_bytes([frames[2].bytes()[50], frames[2].bytes()[51]]);
    // Fix the checksum so only the option differs.
    let fixed = crate::wire::checksum(crate::wire::ones_sum(&(!old).to_be_bytes()) + (!c) as u32);
    frames[2].head_mut()[50..52].copy_from_slice(&fixed.to_be_bytes());
    assert_eq!(l4_checksum(frames[2].bytes(), 14), 0);
    let n = coalesce(&mut frames, &GRO);
    assert_eq!(n, 3, "a0a1 | a2 | a3..a7");

    // A port that does not take TSO over IPv4, or takes short chains.
    let mut frames = segs.clone();
    assert_eq!(coalesce(&mut frames, &GroTarget { tso4: false, ..GRO }), 8);
    assert_eq!(bytes(&frames), bytes(&segs));
    let mut chained: Vec<SegFrame> = segs.iter().map(|s| SegFrame::split(s.bytes(), &[])).collect();
    assert_eq!(coalesce(&mut chained, &GroTarget { max_segs: 3, ..GRO }), 3, "3 + 3 + 2 buffers");
    let frames: Vec<VecFrame> = chained[..3]
        .iter()
        .map(|c| {
            assert!(c.segs.len() <= 3);
            let mut v = VecFrame::new(&c.bytes());
            v.offload = c.offload;
            v
        })
        .collect();
    assert_eq!(resegmented(&frames), bytes(&segs));

    // Frames that owe work already, and frames that are not TCP, pass untouched.
    let mut frames = vec![VecFrame::new(&tcp_frame(false, 30000, 4, 0x10)), segs[0].clone(), segs[1].clone()];
    frames[0].offload = o;
    let n = coalesce(&mut frames, &GRO);
    assert_eq!((n, frames[0].offload), (2, o));
}
