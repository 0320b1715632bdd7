//! Software TCP segmentation: one large frame (plain, or already inside VXLAN) into
//! frames of at most `mss` payload bytes each, every checksum computed. The payload is
//! copied once and summed while it is copied.
use super::{csum::Sum, Offload};
use crate::{
    wire::{be16, be32, checksum, ipv4, ones_sum, vxlan},
    DropReason, Frame,
};

/// The longest header stack a segment repeats (outer VXLAN 50 + Ethernet with two
/// tags 22 + IPv6 with extensions + TCP with options 60).
pub const MAX_HEADERS: usize = 256;

const TCP_SEQ: usize = 4;
const TCP_FLAGS: usize = 13;
const TCP_CSUM: usize = 16;
const FIN_PSH: u8 = 0x01 | 0x08;
const CWR: u8 = 0x80;

/// What `segment` made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segmented {
    /// Frames handed to `emit`.
    pub sent: usize,
    /// Why the rest were not (no buffer for one).
    pub short: Option<DropReason>,
}

/// Checks that `o` describes headers that are really in `head`; returns the inner IP
/// and TCP offsets.
fn check(head: &[u8], len: usize, o: &Offload) -> Result<(usize, usize), DropReason> {
    let bad = Err(DropReason::OffloadBadHeaders);
    let Some(g) = o.gso else { return bad };
    let (ip, tcp, hl) = ((o.outer + o.l2) as usize, o.l4_start(), o.header_len());
    if g.mss == 0 || hl > MAX_HEADERS || hl > head.len() || hl > len || o.l4 < 20 || o.l4 > 60 {
        return bad;
    }
    if o.outer != 0 && o.outer as usize != vxlan::OUTER_LEN {
        return bad;
    }
    match (g.ip_version, head[ip] >> 4) {
        (4, 4) if o.l3 >= 20 && head[ip + ipv4::PROTO] == ipv4::PROTO_TCP => {}
        (6, 6) if o.l3 == 40 && head[ip + 6] == ipv4::PROTO_TCP => {}
        _ => return bad,
    }
    if ((head[tcp + 12] >> 4) as u16) * 4 != o.l4 {
        return bad;
    }
    Ok((ip, tcp))
}

/// Where segments come from and go to.
pub trait SegmentSink {
    type Out: Frame;
    /// An empty frame for the next segment.
    fn alloc(&mut self) -> Option<Self::Out>;
    /// A finished segment.
    fn emit(&mut self, f: Self::Out);
    /// A segment that could not be finished (no room for its bytes).
    fn discard(&mut self, f: Self::Out);
}

/// Cuts `src` into segments, each from `sink.alloc()` and handed to `sink.emit`.
/// Stops at the first segment it has no buffer for, and says so.
pub fn segment<F: Frame, S: SegmentSink>(src: &F, o: &Offload, sink: &mut S) -> Result<Segmented, DropReason> {
    let head = src.head();
    let (ip, tcp) = check(head, src.len(), o)?;
    let hl = o.header_len();
    let mut hdr = [0u8; MAX_HEADERS];
    hdr[..hl].copy_from_slice(&head[..hl]);
    let h = &mut hdr[..hl];
    let mss = o.gso.map_or(0, |g| g.mss) as usize;
    let payload = src.len() - hl;
    let v4 = h[ip] >> 4 == 4;
    let ip_id = be16(h, ip + 4).unwrap_or(0);
    let seq = be32(h, tcp + TCP_SEQ).unwrap_or(0);
    let flags = h[tcp + TCP_FLAGS];
    // The pseudo header without its length, and the IPs, for every segment.
    let addrs = if v4 { ones_sum(&h[ip + ipv4::SRC..ip + ipv4::DST + 4]) } else { ones_sum(&h[ip + 8..ip + 40]) };
    let pseudo = addrs + ipv4::PROTO_TCP as u32;
    h[tcp + TCP_CSUM..tcp + TCP_CSUM + 2].fill(0);

    let mut chunks = src.chunks();
    let mut cur: &[u8] = &[];
    let mut skip = hl;
    let count = payload.div_ceil(mss).max(1);
    for i in 0..count {
        let take = mss.min(payload - i * mss);
        let short = Ok(Segmented { sent: i, short: Some(DropReason::SegmentNoMbuf) });
        let Some(mut out) = sink.alloc() else { return short };
        if !out.append(h) {
            sink.discard(out);
            return short;
        }
        let mut sum = Sum::default();
        let mut left = take;
        while left > 0 {
            while cur.is_empty() {
                let Some(next) = chunks.next() else {
                    // Shorter than its length says: cannot happen for a well-formed frame.
                    sink.discard(out);
                    return Ok(Segmented { sent: i, short: Some(DropReason::OffloadBadHeaders) });
                };
                let s = skip.min(next.len());
                skip -= s;
                cur = &next[s..];
            }
            let n = left.min(cur.len());
            sum.add(&cur[..n]);
            if !out.append(&cur[..n]) {
                sink.discard(out);
                return short;
            }
            cur = &cur[n..];
            left -= n;
        }
        let b = out.head_mut();
        let tcp_len = o.l4 as usize + take;
        if v4 {
            let total = (o.l3 as usize + tcp_len) as u16;
            b[ip + ipv4::TOTAL_LEN..ip + ipv4::TOTAL_LEN + 2].copy_from_slice(&total.to_be_bytes());
            b[ip + 4..ip + 6].copy_from_slice(&ip_id.wrapping_add(i as u16).to_be_bytes());
            b[ip + ipv4::CHECKSUM..ip + ipv4::CHECKSUM + 2].fill(0);
            let s = checksum(ones_sum(&b[ip..ip + o.l3 as usize]));
            b[ip + ipv4::CHECKSUM..ip + ipv4::CHECKSUM + 2].copy_from_slice(&s.to_be_bytes());
        } else {
            b[ip + 4..ip + 6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        }
        b[tcp + TCP_SEQ..tcp + TCP_SEQ + 4].copy_from_slice(&seq.wrapping_add((i * mss) as u32).to_be_bytes());
        let mut fl = flags;
        if i + 1 < count {
            fl &= !FIN_PSH;
        }
        if i > 0 {
            fl &= !CWR;
        }
        b[tcp + TCP_FLAGS] = fl;
        let mut s = Sum::new(pseudo + tcp_len as u32 + sum.fold() as u32);
        s.add(&b[tcp..tcp + o.l4 as usize]);
        b[tcp + TCP_CSUM..tcp + TCP_CSUM + 2].copy_from_slice(&(!s.fold()).to_be_bytes());
        if o.outer != 0 {
            let (oip, oudp) = (vxlan::OUTER_IP, vxlan::OUTER_UDP);
            let ip_len = (hl - oip + take) as u16;
            b[oip + ipv4::TOTAL_LEN..oip + ipv4::TOTAL_LEN + 2].copy_from_slice(&ip_len.to_be_bytes());
            b[oip + ipv4::CHECKSUM..oip + ipv4::CHECKSUM + 2].fill(0);
            let s = checksum(ones_sum(&b[oip..oip + ipv4::MIN_LEN]));
            b[oip + ipv4::CHECKSUM..oip + ipv4::CHECKSUM + 2].copy_from_slice(&s.to_be_bytes());
            b[oudp + 4..oudp + 6].copy_from_slice(&(ip_len - ipv4::MIN_LEN as u16).to_be_bytes());
            // The outer UDP checksum stays zero (RFC 7348, IPv4).
        }
        out.set_offload(Offload::NONE);
        sink.emit(out);
    }
    Ok(Segmented { sent: count, short: None })
}
