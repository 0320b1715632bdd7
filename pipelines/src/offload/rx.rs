//! The offload state of a frame a DPDK driver received: vhost-user marks a guest's
//! partial checksum `RX_L4_CKSUM_NONE` and a guest's TSO frame `RX_LRO` with its
//! segment size, but leaves the header offsets to the application. They are read here
//! from the frame's own headers (the parse stage's walk), then checked as a virtio-net
//! header would be.
use super::{vnet, Offload};
use crate::{parse::parse_any, wire::ipv4, DropReason, Meta};

/// The pending work of a frame whose L4 checksum is partial, segmented by `mss` if it
/// came coalesced (`Some`); `head` is its first segment.
pub fn partial(head: &[u8], mss: Option<u16>) -> Result<Offload, DropReason> {
    let bad = DropReason::OffloadBadHeaders;
    let mut m = Meta::default();
    parse_any(head, &mut m);
    // A fragment has no whole L4 payload to checksum; `l4` is 0 where no L4 header
    // was found.
    if m.fragment || m.l4 == 0 {
        return Err(bad);
    }
    let csum_offset = match m.proto {
        ipv4::PROTO_TCP => 16,
        ipv4::PROTO_UDP => 6,
        _ => return Err(bad),
    };
    let gso_type = match (mss, m.ip_version) {
        (None, _) => vnet::GSO_NONE,
        (Some(_), 4) => vnet::GSO_TCPV4,
        (Some(_), _) => vnet::GSO_TCPV6,
    };
    vnet::Header {
        flags: vnet::F_NEEDS_CSUM,
        gso_type,
        hdr_len: 0,
        gso_size: mss.unwrap_or(0),
        csum_start: m.l4,
        csum_offset,
        outer_th: 0,
        inner_nh: 0,
    }
    .offload(head)
}
