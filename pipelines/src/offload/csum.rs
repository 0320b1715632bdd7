//! The Internet checksum over a frame's segments, and completing a partial one.
use super::{L4Csum, Offload};
use crate::{
    wire::{be16, ethernet},
    DropReason, Frame,
};

/// A running RFC 1071 sum over bytes that may arrive in pieces of any length.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sum {
    acc: u64,
    /// The bytes so far were of odd length: the next byte is a word's low half.
    odd: bool,
}

impl Sum {
    pub fn new(start: u32) -> Sum {
        Sum { acc: start as u64, odd: false }
    }

    /// Eight bytes at a time: a big-endian u64 is congruent, modulo 0xffff, to the sum
    /// of its four 16-bit words, and its two halves never overflow the accumulator
    /// for any frame size.
    #[inline]
    pub fn add(&mut self, mut b: &[u8]) {
        if self.odd {
            let Some((&first, rest)) = b.split_first() else { return };
            self.acc += first as u64;
            b = rest;
            self.odd = false;
        }
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            let v = u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            self.acc += (v >> 32) + (v & 0xffff_ffff);
        }
        let mut pairs = words.remainder().chunks_exact(2);
        for p in &mut pairs {
            self.acc += u16::from_be_bytes([p[0], p[1]]) as u64;
        }
        if let [last] = pairs.remainder() {
            self.acc += (*last as u64) << 8;
            self.odd = true;
        }
    }

    /// The sum folded to 16 bits, not complemented.
    pub fn fold(&self) -> u16 {
        let mut s = self.acc;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }
}

/// Where the IP packet inside `head` ends (Ethernet padding excluded), from its L3
/// header at `l3`; None if the header is not there.
pub(super) fn ip_end(head: &[u8], l3: usize) -> Option<usize> {
    match head.get(l3)? >> 4 {
        4 => Some(l3 + be16(head, l3 + 2)? as usize),
        6 => Some(l3 + 40 + be16(head, l3 + 4)? as usize),
        _ => None,
    }
}

/// Completes the partial L4 checksum `o` describes, as a NIC would: the field already
/// holds the pseudo-header sum, so the sum from the L4 header to the end of the IP
/// packet, complemented, is the checksum.
pub fn complete_checksum<F: Frame>(f: &mut F, o: &Offload) -> Result<(), DropReason> {
    let Some(field) = o.csum.field() else { return Ok(()) };
    let start = o.l4_start();
    let at = start + field;
    let head = f.head();
    if head.len() < at + 2 || head.len() < (o.outer + o.l2) as usize + crate::wire::ipv4::MIN_LEN {
        return Err(DropReason::OffloadBadHeaders);
    }
    let end = ip_end(head, (o.outer + o.l2) as usize).ok_or(DropReason::OffloadBadHeaders)?;
    if end < at + 2 || end > f.len() {
        return Err(DropReason::OffloadBadHeaders);
    }
    let mut sum = Sum::default();
    let mut pos = 0;
    for c in f.chunks() {
        let lo = start.max(pos);
        let hi = end.min(pos + c.len());
        if lo < hi {
            sum.add(&c[lo - pos..hi - pos]);
        }
        pos += c.len();
        if pos >= end {
            break;
        }
    }
    let mut value = !sum.fold();
    if o.csum == L4Csum::Udp && value == 0 {
        // Zero means "no checksum" in UDP over IPv4 and is invalid over IPv6.
        value = 0xffff;
    }
    f.head_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    f.set_offload(Offload { csum: L4Csum::None, ..*o });
    Ok(())
}

/// The Ethernet header length of `head` with its VLAN tags (up to two), or None.
pub fn l2_len(head: &[u8]) -> Option<u16> {
    let mut off = ethernet::HEADER_LEN;
    let mut ty = be16(head, ethernet::ETHERTYPE)?;
    for _ in 0..2 {
        if ty != ethernet::ETHERTYPE_VLAN && ty != ethernet::ETHERTYPE_QINQ {
            break;
        }
        ty = be16(head, off + 2)?;
        off += ethernet::VLAN_TAG_LEN;
    }
    Some(off as u16)
}
