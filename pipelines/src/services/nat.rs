//! Address and port translation of one header, checksums updated incrementally
//! (RFC 1624) rather than recomputed: the payload may be in later segments, and a frame
//! that owes its L4 checksum (offload) keeps owing it, with its pseudo-header sum moved.
use crate::{
    meta::{IpKey, Meta},
    offload::L4Csum,
    wire::{adjust_checksum, ethernet, fold, ipv4, word_change, Mac},
    DropReason, Frame,
};

/// Which end of the packet is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Src,
    Dst,
}

/// The 16-bit words of an address as the headers hold it (IPv4: the last two).
pub(super) fn words(ip: IpKey, v4: bool) -> impl Iterator<Item = u16> {
    let n = if v4 { 2 } else { 8 };
    (0..n).map(move |i| (ip >> (16 * (n - 1 - i))) as u16)
}

/// Rewrites the source or destination address and port of a TCP or UDP packet; false
/// (and nothing changed) if its headers are not all in the first segment.
pub fn rewrite<F: Frame>(f: &mut F, m: &mut Meta, end: End, ip: IpKey, port: u16) -> bool {
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    let v4 = m.ip_version == 4;
    let (addr_at, alen, port_at) = match (v4, end) {
        (true, End::Src) => (l3 + ipv4::SRC, 4, l4),
        (true, End::Dst) => (l3 + ipv4::DST, 4, l4 + 2),
        (false, End::Src) => (l3 + 8, 16, l4),
        (false, End::Dst) => (l3 + 24, 16, l4 + 2),
    };
    let csum_at = match m.proto {
        ipv4::PROTO_TCP => l4 + 16,
        _ => l4 + 6,
    };
    let partial = f.offload().csum != L4Csum::None;
    let b = f.head_mut();
    if b.len() < (csum_at + 2).max(addr_at + alen).max(l3 + ipv4::MIN_LEN) {
        return false;
    }
    let old_ip = if end == End::Src { m.ip_src } else { m.ip_dst };
    let old_port = u16::from_be_bytes([b[port_at], b[port_at + 1]]);
    let d_addr = word_change(words(old_ip, v4), words(ip, v4));
    let d_port = word_change(std::iter::once(old_port), std::iter::once(port));
    if v4 {
        adjust_checksum(&mut b[l3 + ipv4::CHECKSUM..l3 + ipv4::CHECKSUM + 2], d_addr, true);
    }
    // A pseudo-header sum covers the addresses only; a full checksum the port too.
    let udp = m.proto == ipv4::PROTO_UDP;
    adjust_l4(&mut b[csum_at..csum_at + 2], (udp, v4), partial, (fold(d_addr + d_port), d_addr));
    let bytes = ip.to_be_bytes();
    b[addr_at..addr_at + alen].copy_from_slice(&bytes[16 - alen..]);
    b[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    match end {
        End::Src => {
            m.ip_src = ip;
            m.sport = port;
        }
        End::Dst => {
            m.ip_dst = ip;
            m.dport = port;
        }
    }
    true
}

/// Adds a translation's change to the L4 checksum `field`: `full` to a checksum, or
/// `pseudo` (the addresses' part) to a pseudo-header sum owed to the NIC or the kernel
/// (`partial`). UDP sends a checksum that computes to 0 as all ones; over IPv4 (`v4`) it
/// may carry none (0), and then stays without one.
#[inline]
fn adjust_l4(field: &mut [u8], (udp, v4): (bool, bool), partial: bool, (full, pseudo): (u32, u32)) {
    if partial {
        adjust_checksum(field, pseudo, false);
        return;
    }
    if udp && v4 && field == [0, 0] {
        return;
    }
    adjust_checksum(field, full, true);
    if udp && field == [0, 0] {
        field.copy_from_slice(&[0xff, 0xff]);
    }
}

/// A translation whose old address and port are known when the tables are built (every
/// packet a VIP's entry finds carries that VIP): its checksum changes are worked out
/// once, not per packet. IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed {
    ip: IpKey,
    port: u16,
    /// The IPv4 header checksum's change: the address, and the TTL a routed packet spends.
    ip_sum: u32,
    /// The L4 checksum's change: addresses and port (a full checksum), or the addresses
    /// alone (a pseudo-header sum owed to the NIC or the kernel).
    l4_full: u32,
    l4_partial: u32,
}

/// A TTL lowered by one (its word TTL << 8 | protocol less 0x100), as `word_change`
/// would give it for any TTL above 1.
const TTL_SPENT: u32 = 0xfeff;

impl Fixed {
    /// From `from` to `to`; None unless both are IPv4.
    pub fn new(from: (IpKey, u16), to: (IpKey, u16)) -> Option<Fixed> {
        let v4 = |ip: IpKey| ip >> 32 == 0xffff;
        if !v4(from.0) || !v4(to.0) {
            return None;
        }
        let d_addr = word_change(words(from.0, true), words(to.0, true));
        let d_port = word_change(std::iter::once(from.1), std::iter::once(to.1));
        Some(Fixed {
            ip: to.0,
            port: to.1,
            ip_sum: fold(d_addr + TTL_SPENT),
            l4_full: fold(d_addr + d_port),
            l4_partial: d_addr,
        })
    }

    /// Translates the destination of an IPv4 TCP or UDP packet that carries `from`
    /// (`new`'s) and routes it to `mac` from `src`: what `rewrite` (destination), the
    /// gateway's TTL and its MACs do, in one pass over the header. Nothing is changed on
    /// an error.
    #[inline]
    pub fn route<F: Frame>(&self, f: &mut F, m: &mut Meta, mac: Mac, src: Mac) -> Result<(), DropReason> {
        let (l3, l4) = (m.l3 as usize, m.l4 as usize);
        let csum_at = if m.proto == ipv4::PROTO_TCP { l4 + 16 } else { l4 + 6 };
        let partial = f.offload().csum != L4Csum::None;
        let b = f.head_mut();
        // (With the L4 header after a whole IPv4 header, the checksum ends last.)
        if m.ip_version != 4 || l4 < l3 + ipv4::MIN_LEN || b.len() < csum_at + 2 {
            return Err(DropReason::CtInvalid);
        }
        if b[l3 + ipv4::TTL] <= 1 {
            return Err(DropReason::TtlExceeded);
        }
        b[l3 + ipv4::TTL] -= 1;
        adjust_checksum(&mut b[l3 + ipv4::CHECKSUM..l3 + ipv4::CHECKSUM + 2], self.ip_sum, true);
        let udp = m.proto == ipv4::PROTO_UDP;
        adjust_l4(&mut b[csum_at..csum_at + 2], (udp, true), partial, (self.l4_full, self.l4_partial));
        b[l3 + ipv4::DST..l3 + ipv4::DST + 4].copy_from_slice(&(self.ip as u32).to_be_bytes());
        b[l4 + 2..l4 + 4].copy_from_slice(&self.port.to_be_bytes());
        b[ethernet::DST].copy_from_slice(&mac.0);
        b[ethernet::SRC].copy_from_slice(&src.0);
        m.ip_dst = self.ip;
        m.dport = self.port;
        m.dst = mac;
        m.src = src;
        Ok(())
    }
}
