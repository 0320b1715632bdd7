//! The offload state of a frame a DPDK driver received: vhost-user marks a guest's
//! partial checksum `RX_L4_CKSUM_NONE` and a guest's TSO frame `RX_LRO` with its
//! segment size, but leaves the header offsets to the application. They are read here
//! from the frame's own headers, then checked as a virtio-net header would be.
use super::{csum::l2_len, vnet, Offload};
use crate::DropReason;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// IPv6 extension headers a sender puts before TCP or UDP; a fragment header (44) is
/// not among them: a fragment has no whole L4 payload to checksum.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_DEST_OPTS: u8 = 60;
/// More extension headers than this is no frame a guest's stack makes.
const MAX_IPV6_EXT: usize = 4;

/// The pending work of a frame whose L4 checksum is partial, segmented by `mss` if it
/// came coalesced (`Some`); `head` is its first segment.
pub fn partial(head: &[u8], mss: Option<u16>) -> Result<Offload, DropReason> {
    let bad = DropReason::OffloadBadHeaders;
    let l2 = l2_len(head).ok_or(bad)? as usize;
    let (l3, proto) = l3_len(head, l2).ok_or(bad)?;
    let ip_version = head[l2] >> 4;
    let gso_type = match (mss, ip_version) {
        (None, _) => vnet::GSO_NONE,
        (Some(_), 4) => vnet::GSO_TCPV4,
        (Some(_), _) => vnet::GSO_TCPV6,
    };
    let csum_offset = match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        _ => return Err(bad),
    };
    let csum_start = u16::try_from(l2 + l3).map_err(|_| bad)?;
    vnet::Header {
        flags: vnet::F_NEEDS_CSUM,
        gso_type,
        hdr_len: 0,
        gso_size: mss.unwrap_or(0),
        csum_start,
        csum_offset,
        outer_th: 0,
        inner_nh: 0,
    }
    .offload(head)
}

/// The IP header's length at `l3` with IPv6 extension headers, and the protocol after it.
fn l3_len(head: &[u8], l3: usize) -> Option<(usize, u8)> {
    match head.get(l3)? >> 4 {
        4 => {
            let ihl = (head[l3] & 0x0f) as usize * 4;
            (ihl >= 20).then_some((ihl, *head.get(l3 + 9)?))
        }
        6 => {
            let mut next = *head.get(l3 + 6)?;
            let mut len = 40;
            for _ in 0..MAX_IPV6_EXT {
                if !matches!(next, IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS) {
                    return Some((len, next));
                }
                let ext = l3 + len;
                next = *head.get(ext)?;
                len += (*head.get(ext + 1)? as usize + 1) * 8;
            }
            None
        }
        _ => None,
    }
}
