//! Offload work a frame still owes: TCP segmentation (TSO/GSO) and a partial L4
//! checksum, as a kernel interface or a guest hands them over. Frames cross the
//! pipeline whole; the egress that cannot take the work does it here (`segment`,
//! `complete_checksum`), once, in software.
mod csum;
mod gro;
mod rx;
mod segment;
#[cfg(test)]
mod tests;
pub mod vnet;

pub use csum::{complete_checksum, Sum};
pub use gro::{coalesce, GroTarget};
pub use rx::partial;
pub use segment::{segment, SegmentSink, Segmented, MAX_HEADERS};

/// The L4 checksum a frame leaves for someone else to complete: its field holds the
/// pseudo-header sum, and the sum of the bytes from the L4 header on completes it
/// (the kernel's CHECKSUM_PARTIAL, DPDK's TX_TCP_CKSUM/TX_UDP_CKSUM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L4Csum {
    #[default]
    None,
    Tcp,
    Udp,
}

impl L4Csum {
    /// Offset of the checksum field in the L4 header.
    pub fn field(self) -> Option<usize> {
        match self {
            L4Csum::None => None,
            L4Csum::Tcp => Some(16),
            L4Csum::Udp => Some(6),
        }
    }
}

/// TCP segmentation still to do: the payload leaves as segments of `mss` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    /// The inner IP version, 4 or 6.
    pub ip_version: u8,
    pub mss: u16,
}

/// What a frame carries besides its bytes. All offsets are of the frame the stages
/// switch (the inner one once encapsulated); `outer` bytes of tunnel headers precede it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// VXLAN's outer headers in front, once the frame is encapsulated (0 or
    /// `wire::vxlan::OUTER_LEN`).
    pub outer: u16,
    /// Ethernet header, with its tags.
    pub l2: u16,
    /// IP header, with IPv6 extension headers.
    pub l3: u16,
    /// TCP header (segmentation only).
    pub l4: u16,
    pub csum: L4Csum,
    pub gso: Option<Gso>,
}

impl Offload {
    pub const NONE: Offload = Offload { outer: 0, l2: 0, l3: 0, l4: 0, csum: L4Csum::None, gso: None };

    #[inline(always)]
    pub fn is_none(&self) -> bool {
        self.csum == L4Csum::None && self.gso.is_none()
    }

    /// Where the L4 header starts, from the front of the whole frame.
    pub fn l4_start(&self) -> usize {
        (self.outer + self.l2 + self.l3) as usize
    }

    /// Every header a segment repeats.
    pub fn header_len(&self) -> usize {
        self.l4_start() + self.l4 as usize
    }

    /// The largest frame a segment of this one makes (the frame itself if it is not
    /// to be segmented): what MTU checks compare.
    #[inline]
    pub fn largest_segment(&self, len: usize) -> usize {
        match self.gso {
            Some(g) => len.min(self.header_len() + g.mss as usize),
            None => len,
        }
    }

    /// How many frames a frame of `len` bytes leaves as.
    pub fn segments(&self, len: usize) -> usize {
        match self.gso {
            Some(g) if g.mss > 0 => len.saturating_sub(self.header_len()).div_ceil(g.mss as usize).max(1),
            _ => 1,
        }
    }

    /// The same work on the inner frame once `outer` bytes of tunnel headers are
    /// stripped; `l2` is the inner Ethernet header's length. None if the work does not
    /// lie inside the inner IP packet.
    pub fn decapsulated(&self, outer: usize, l2: u16) -> Option<Offload> {
        if self.l4_start() < outer {
            // The outer UDP checksum left to us goes with the outer headers.
            return self.gso.is_none().then_some(Offload::NONE);
        }
        let start = self.l4_start() - outer;
        let l3 = (start as u16).checked_sub(l2).filter(|&l3| l3 >= crate::wire::ipv4::MIN_LEN as u16)?;
        Some(Offload { outer: 0, l2, l3, ..*self })
    }

    /// Bytes on the wire once segmented: the headers again for every segment after the
    /// first. What a policer and the port counters count.
    pub fn wire_len(&self, len: usize) -> usize {
        len + (self.segments(len) - 1) * self.header_len()
    }
}
