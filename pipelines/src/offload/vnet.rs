//! The virtio-net header (virtio 1.x section 5.1.6; `struct virtio_net_hdr`) that a
//! tap with IFF_VNET_HDR and an AF_PACKET socket with PACKET_VNET_HDR put before each
//! frame: the kernel's checksum and segmentation state of the frame, in host order.
use super::{csum::l2_len, Gso, L4Csum, Offload, MAX_HEADERS};
use crate::{wire::ipv4, DropReason};

/// Bytes of the header without `num_buffers` (what tap and AF_PACKET use by default).
pub const LEN: usize = 10;

pub const F_NEEDS_CSUM: u8 = 1;
pub const F_DATA_VALID: u8 = 2;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
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
}

impl Header {
    pub fn parse(b: &[u8; LEN]) -> Header {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Header { flags: b[0], gso_type: b[1], hdr_len: u(2), gso_size: u(4), csum_start: u(6), csum_offset: u(8) }
    }

    pub fn to_bytes(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in [(2, self.hdr_len), (4, self.gso_size), (6, self.csum_start), (8, self.csum_offset)] {
            b[i..i + 2].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// What the header says of the frame whose first segment is `head`. Every offset
    /// is checked against the bytes: a guest may write anything here.
    pub fn offload(&self, head: &[u8]) -> Result<Offload, DropReason> {
        let bad = Err(DropReason::OffloadBadHeaders);
        let gso_type = self.gso_type & !GSO_ECN;
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
        let mut o = Offload { outer: 0, l2, l3: start - l2, l4: 0, csum, gso: None };
        let ip_version = head[l2 as usize] >> 4;
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

    /// The header for a frame with `o` pending; None if a virtio-net device cannot
    /// take it (segmentation inside a tunnel).
    pub fn of(o: &Offload) -> Option<Header> {
        let mut h = Header::default();
        let Some(field) = o.csum.field() else {
            return o.gso.is_none().then_some(h);
        };
        h.flags = F_NEEDS_CSUM;
        h.csum_start = o.l4_start() as u16;
        h.csum_offset = field as u16;
        if let Some(g) = o.gso {
            if o.outer != 0 {
                return None;
            }
            h.gso_type = if g.ip_version == 4 { GSO_TCPV4 } else { GSO_TCPV6 };
            h.gso_size = g.mss;
            h.hdr_len = o.header_len() as u16;
        }
        Some(h)
    }
}
