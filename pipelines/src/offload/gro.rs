//! Receive-side coalescing (GRO), at the egress: consecutive TCP segments of one
//! connection, bound for a port that takes TSO, leave as one frame that owes their
//! segmentation, as Linux's GRO hands its stack one skb for many segments. It pays
//! where every frame costs the receiver a system call or a descriptor and a trip
//! through its stack (a kernel port, a guest), and the sender could not send large
//! frames (a NIC without LRO, a guest or peer without TSO, segments cut before a NIC).
//!
//! A segment joins the frame before it when it is next in sequence; when all its
//! headers are the same bytes but the IP length, the IPv4 ID and checksum, and the TCP
//! sequence number, PSH and checksum (Linux's rule: the same options, so the same
//! timestamps); when that frame holds only full-size segments so far; and when the
//! segment's own checksums are right: the receiver completes the merged frame's
//! checksum, which would make a corrupted segment look whole. A segment with PSH, or
//! shorter than the first, ends its frame. Any other frame of the connection ends it
//! too, so the connection's order is kept; frames of other connections may pass it.
use super::{
    csum::{l2_len, Sum},
    Gso, L4Csum, Offload,
};
use crate::{
    wire::{be16, be32, checksum, ethernet, ipv4, ones_sum},
    Frame,
};

/// What the egress port takes, for `coalesce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroTarget {
    pub tso4: bool,
    pub tso6: bool,
    /// The most buffers a frame may be chained from.
    pub max_segs: usize,
    /// The longest frame it takes whole.
    pub max_len: usize,
}

/// Connections merged at once within a burst; one more ends the oldest.
const FLOWS: usize = 8;
/// Shorter frames start no merge: a segment of under about 200 bytes of payload is
/// not worth the receiver's trouble to save, and a burst of small packets (not TCP,
/// mostly) costs a length test each.
const MIN_FRAME: usize = 256;
/// A merged frame is at most an IP packet's most.
const MAX_IP: usize = u16::MAX as usize;
const TCP_SEQ: usize = 4;
const TCP_FLAGS: usize = 13;
const TCP_CSUM: usize = 16;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// One TCP frame's layout, read from its headers.
#[derive(Clone, Copy, Debug)]
struct Seg {
    /// The addresses and ports, hashed: which connection.
    key: u64,
    l2: usize,
    l3: usize,
    l4: usize,
    v4: bool,
    seq: u32,
    payload: usize,
    psh: bool,
    /// It may be merged: only ACK (and PSH) set, a payload, no work owed, checksums
    /// right, a version the port takes.
    mergeable: bool,
}

impl Seg {
    fn headers(&self) -> usize {
        self.l2 + self.l3 + self.l4
    }
}

/// A frame that segments are joining.
#[derive(Clone, Copy, Debug)]
struct Open {
    /// Its index in the burst.
    at: usize,
    seg: Seg,
    next_seq: u32,
    /// Payload bytes so far.
    payload: usize,
    bufs: usize,
    joined: usize,
    psh: bool,
    /// A short segment or PSH came: nothing more joins.
    done: bool,
}

/// Merges what it can of `frames` (bound for one port), in place; returns how many
/// frames are left, at the front, in order. The slots after them hold segments now
/// chained into those frames: the caller must neither send nor free them.
pub fn coalesce<F: Frame>(frames: &mut [F], t: &GroTarget) -> usize {
    let mut open: [Option<Open>; FLOWS] = [None; FLOWS];
    // Flows in `open`: while none is, a frame that cannot start one is not read.
    let mut nopen = 0;
    let mut out = 0;
    for i in 0..frames.len() {
        let f = &frames[i];
        let seg = if nopen > 0 || (f.len() >= MIN_FRAME && f.offload().is_none()) { read(f, t) } else { None };
        if let Some(s) = seg {
            if let Some(k) = open.iter().position(|o| o.is_some_and(|o| o.seg.key == s.key)) {
                let mut o = open[k].take().unwrap_or_else(|| unreachable!());
                nopen -= 1;
                let (before, from) = frames.split_at_mut(i);
                if joins(&o, &s, &before[o.at], &from[0], t) && before[o.at].absorb(&mut from[0], s.headers()) {
                    o.payload += s.payload;
                    o.next_seq = o.next_seq.wrapping_add(s.payload as u32);
                    o.bufs = before[o.at].segs();
                    o.joined += 1;
                    o.psh |= s.psh;
                    o.done = s.psh || s.payload < o.seg.payload;
                    open[k] = Some(o);
                    nopen += 1;
                    continue;
                }
                finish(&mut before[o.at], &o);
            }
        }
        frames.swap(out, i);
        if let Some(s) = seg.filter(|s| s.mergeable && !s.psh) {
            let slot = match open.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    let (oldest, _) = open
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, o)| o.map_or(usize::MAX, |o| o.at))
                        .unwrap_or((0, &None));
                    if let Some(o) = open[oldest].take() {
                        finish(&mut frames[o.at], &o);
                        nopen -= 1;
                    }
                    oldest
                }
            };
            let bufs = frames[out].segs();
            nopen += 1;
            open[slot] = Some(Open {
                at: out,
                seg: s,
                next_seq: s.seq.wrapping_add(s.payload as u32),
                payload: s.payload,
                bufs,
                joined: 0,
                psh: false,
                done: false,
            });
        }
        out += 1;
    }
    for o in open.iter().flatten() {
        finish(&mut frames[o.at], o);
    }
    out
}

/// The TCP layout of `f`, or None if it is not TCP in IPv4 or IPv6 (without extension
/// headers or fragments).
fn read<F: Frame>(f: &F, t: &GroTarget) -> Option<Seg> {
    let head = f.head();
    let l2 = l2_len(head)? as usize;
    let (v4, l3, plen) = match be16(head, l2 - 2)? {
        ethernet::ETHERTYPE_IPV4 => {
            let b = head.get(l2..l2 + ipv4::MIN_LEN)?;
            if b[0] >> 4 != 4 || b[ipv4::PROTO] != ipv4::PROTO_TCP || ipv4::fragment_bits(b) & ipv4::FRAG_MASK != 0 {
                return None;
            }
            let l3 = (b[0] & 15) as usize * 4;
            (true, l3, be16(b, ipv4::TOTAL_LEN)? as usize)
        }
        ethernet::ETHERTYPE_IPV6 => {
            let b = head.get(l2..l2 + 40)?;
            if b[0] >> 4 != 6 || b[6] != ipv4::PROTO_TCP {
                return None;
            }
            (false, 40, 40 + be16(b, 4)? as usize)
        }
        _ => return None,
    };
    let tcp = l2 + l3;
    let l4 = (*head.get(tcp + 12)? >> 4) as usize * 4;
    let th = head.get(tcp..tcp + l4.max(20))?;
    let addrs = if v4 { &head[l2 + ipv4::SRC..l2 + ipv4::DST + 4] } else { &head[l2 + 8..l2 + 40] };
    let key = addrs
        .iter()
        .chain(&th[..4])
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let flags = th[TCP_FLAGS];
    let payload = f.len().saturating_sub(tcp + l4);
    let mergeable = (if v4 { t.tso4 && l3 == ipv4::MIN_LEN } else { t.tso6 })
        && l4 >= 20
        && flags & !PSH == ACK
        && payload > 0
        && l2 + plen == f.len()
        && f.offload().is_none()
        && (!v4 || ipv4::checksum_ok(&head[l2..tcp]))
        && tcp_checksum_ok(f, tcp, addrs, plen - l3);
    Some(Seg { key, l2, l3, l4, v4, seq: be32(th, TCP_SEQ)?, payload, psh: flags & PSH != 0, mergeable })
}

/// Whether the TCP checksum of `f` (its TCP header at `tcp`, `len` bytes to the end of
/// the IP packet) is right.
fn tcp_checksum_ok<F: Frame>(f: &F, tcp: usize, addrs: &[u8], len: usize) -> bool {
    let mut sum = Sum::new(ones_sum(addrs) + ipv4::PROTO_TCP as u32 + len as u32);
    let mut pos = 0;
    for c in f.chunks() {
        let lo = tcp.max(pos);
        let hi = (tcp + len).min(pos + c.len());
        if lo < hi {
            sum.add(&c[lo - pos..hi - pos]);
        }
        pos += c.len();
    }
    sum.fold() == 0xffff
}

/// Whether `s` (the frame `tail`) may join the frame `o` is building (`head`).
fn joins<F: Frame>(o: &Open, s: &Seg, head: &F, tail: &F, t: &GroTarget) -> bool {
    let h = &o.seg;
    s.mergeable
        && !o.done
        && s.seq == o.next_seq
        && s.payload <= h.payload
        && (s.l2, s.l3, s.l4, s.v4) == (h.l2, h.l3, h.l4, h.v4)
        && h.l3 + h.l4 + o.payload + s.payload <= MAX_IP
        && h.headers() + o.payload + s.payload <= t.max_len
        && o.bufs + tail.segs() <= t.max_segs
        && same_headers(head.head(), tail.head(), h)
}

/// Whether two segments' headers are the same bytes but for what segmentation changes.
fn same_headers(a: &[u8], b: &[u8], s: &Seg) -> bool {
    let (ip, tcp) = (s.l2, s.l2 + s.l3);
    let flags = tcp + TCP_FLAGS;
    // Ranges of bytes that may differ, in order: lengths, IDs, sequence numbers,
    // checksums, and the flags (in PSH alone, checked below).
    let seq = (tcp + TCP_SEQ, tcp + TCP_SEQ + 4);
    let csum = (tcp + TCP_CSUM, tcp + TCP_CSUM + 2);
    let v4 = [(ip + 2, ip + 6), (ip + 10, ip + 12), seq, (flags, flags + 1), csum];
    let v6 = [(ip + 4, ip + 6), seq, (flags, flags + 1), csum];
    let differ: &[(usize, usize)] = if s.v4 { &v4 } else { &v6 };
    let mut at = 0;
    for &(lo, hi) in differ {
        if a[at..lo] != b[at..lo] {
            return false;
        }
        at = hi;
    }
    a[at..s.headers()] == b[at..s.headers()] && (a[flags] ^ b[flags]) & !PSH == 0
}

/// Writes the merged frame's headers and the segmentation it owes; a frame nothing
/// joined is left as it was.
fn finish<F: Frame>(f: &mut F, o: &Open) {
    if o.joined == 0 {
        return;
    }
    let s = &o.seg;
    let (ip, tcp) = (s.l2, s.l2 + s.l3);
    let tcp_len = s.l4 + o.payload;
    let h = f.head_mut();
    let addrs = if s.v4 {
        h[ip + ipv4::TOTAL_LEN..ip + ipv4::TOTAL_LEN + 2].copy_from_slice(&((s.l3 + tcp_len) as u16).to_be_bytes());
        h[ip + ipv4::CHECKSUM..ip + ipv4::CHECKSUM + 2].fill(0);
        let c = checksum(ones_sum(&h[ip..tcp]));
        h[ip + ipv4::CHECKSUM..ip + ipv4::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
        ones_sum(&h[ip + ipv4::SRC..ip + ipv4::DST + 4])
    } else {
        h[ip + 4..ip + 6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        ones_sum(&h[ip + 8..ip + 40])
    };
    if o.psh {
        h[tcp + TCP_FLAGS] |= PSH;
    }
    // Partial: the pseudo-header sum, which whoever segments or completes it adds to.
    let pseudo = !checksum(addrs + ipv4::PROTO_TCP as u32 + tcp_len as u32);
    h[tcp + TCP_CSUM..tcp + TCP_CSUM + 2].copy_from_slice(&pseudo.to_be_bytes());
    let gso = Gso { ip_version: if s.v4 { 4 } else { 6 }, mss: s.payload as u16 };
    f.set_offload(Offload {
        outer: 0,
        l2: s.l2 as u16,
        l3: s.l3 as u16,
        l4: s.l4 as u16,
        csum: L4Csum::Tcp,
        gso: Some(gso),
    });
}
