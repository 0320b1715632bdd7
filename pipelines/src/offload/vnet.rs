//! The virtio-net header (virtio 1.x section 5.1.6; `struct virtio_net_hdr`) that a
//! tap with IFF_VNET_HDR and an AF_PACKET socket with PACKET_VNET_HDR put before each
//! frame: the kernel's checksum and segmentation state of the frame, in host order.
//! A tap that takes TCP segments inside UDP tunnels (Linux 6.17's
//! TUN_F_UDP_TUNNEL_GSO) uses the longer `virtio_net_hdr_v1_hash_tunnel`, which adds
//! where the outer UDP and the inner IP headers start.
use super::{csum::l2_len, Gso, L4Csum, Offload, MAX_HEADERS};
use crate::{wire::ipv4, DropReason};

/// Bytes of the header without `num_buffers` (what tap and AF_PACKET use by default).
pub const LEN: usize = 10;
/// Bytes of `virtio_net_hdr_v1_hash_tunnel`: the v1 header (12), hash fields (8), then
/// the outer transport and inner network header offsets.
pub const TUNNEL_LEN: usize = 24;

pub const F_NEEDS_CSUM: u8 = 1;
pub const F_DATA_VALID: u8 = 2;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
pub const GSO_UDP_TUNNEL_IPV6: u8 = 0x40;
pub const GSO_ECN: u8 = 0x80;

/// The header's fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    /// Tunnel headers only: where the outer UDP and the inner IP header start.
    pub outer_th: u16,
    pub inner_nh: u16,
}

impl Header {
    /// From the `LEN` or `TUNNEL_LEN` bytes before a frame.
    pub fn parse(b: &[u8]) -> Header {
        let u = |i: usize| b.get(i..i + 2).map_or(0, |x| u16::from_ne_bytes([x[0], x[1]]));
        Header {
            flags: b.first().copied().unwrap_or(0),
            gso_type: b.get(1).copied().unwrap_or(0),
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
            outer_th: if b.len() >= TUNNEL_LEN { u(20) } else { 0 },
            inner_nh: if b.len() >= TUNNEL_LEN { u(22) } else { 0 },
        }
    }

    /// The header in `TUNNEL_LEN` bytes; a port using `LEN` writes the first `LEN`.
    pub fn to_bytes(&self) -> [u8; TUNNEL_LEN] {
        let mut b = [0u8; TUNNEL_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in [
            (2, self.hdr_len),
            (4, self.gso_size),
            (6, self.csum_start),
            (8, self.csum_offset),
            (20, self.outer_th),
            (22, self.inner_nh),
        ] {
            b[i..i + 2].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// What the header says of the frame whose first segment is `head`. Every offset
    /// is checked against the bytes: a guest may write anything here.
    pub fn offload(&self, head: &[u8]) -> Result<Offload, DropReason> {
        let bad = Err(DropReason::OffloadBadHeaders);
        let tunnel = self.gso_type & (GSO_UDP_TUNNEL_IPV4 | GSO_UDP_TUNNEL_IPV6) != 0;
        let gso_type = self.gso_type & !(GSO_ECN | GSO_UDP_TUNNEL_IPV4 | GSO_UDP_TUNNEL_IPV6);
        if self.flags & F_NEEDS_CSUM == 0 {
            // Segmentation always comes with a partial checksum.
            return if gso_type == GSO_NONE { Ok(Offload::NONE) } else { bad };
        }
        let l2 = l2_len(head).ok_or(DropReason::OffloadBadHeaders)?;
        let start = self.csum_start;
        // Headers past MAX_HEADERS (with room for TCP's) are no frame a kernel makes.
        if start < l2 + ipv4::MIN_LEN as u16
            || start as usize + 60 > MAX_HEADERS
            || start as usize + self.csum_offset as usize + 2 > head.len()
        {
            return bad;
        }
        let csum = match self.csum_offset {
            16 => L4Csum::Tcp,
            6 => L4Csum::Udp,
            _ => return bad,
        };
        // Offsets stay from the outer Ethernet header: decapsulation rebases them.
        let mut o = Offload { outer: 0, l2, l3: start - l2, l4: 0, csum, gso: None };
        let ip = if tunnel { self.inner_nh } else { l2 };
        if ip >= start {
            return bad;
        }
        let ip_version = head[ip as usize] >> 4;
        let wanted = match gso_type {
            GSO_NONE => return Ok(o),
            GSO_TCPV4 => 4,
            GSO_TCPV6 => 6,
            _ => return bad,
        };
        if csum != L4Csum::Tcp || ip_version != wanted || self.gso_size == 0 {
            return bad;
        }
        let tcp = start as usize;
        o.l4 = ((head.get(tcp + 12).ok_or(DropReason::OffloadBadHeaders)? >> 4) as u16) * 4;
        if o.l4 < 20 || o.header_len() > head.len() {
            return bad;
        }
        o.gso = Some(Gso { ip_version, mss: self.gso_size });
        Ok(o)
    }

    /// The header for a frame of `len` bytes with `o` pending; None if the device
    /// cannot take it: segmentation inside a tunnel where it has no tunnel offload
    /// (`tunnel`), or where the outer IP length cannot hold the whole frame.
    pub fn of(o: &Offload, len: usize, tunnel: bool) -> Option<Header> {
        let mut h = Header::default();
        let Some(field) = o.csum.field() else {
            return o.gso.is_none().then_some(h);
        };
        h.flags = F_NEEDS_CSUM;
        h.csum_start = o.l4_start() as u16;
        h.csum_offset = field as u16;
        if let Some(g) = o.gso {
            h.gso_type = if g.ip_version == 4 { GSO_TCPV4 } else { GSO_TCPV6 };
            h.gso_size = g.mss;
            h.hdr_len = o.header_len() as u16;
            if o.outer != 0 {
                // Our encapsulation: VXLAN over IPv4, whose length must be exact.
                if !tunnel || len - crate::wire::ethernet::HEADER_LEN > u16::MAX as usize {
                    return None;
                }
                h.gso_type |= GSO_UDP_TUNNEL_IPV4;
                h.outer_th = crate::wire::vxlan::OUTER_UDP as u16;
                h.inner_nh = o.outer + o.l2;
            }
        }
        Some(h)
    }
}
