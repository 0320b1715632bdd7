//! ARP for IPv4 over Ethernet (RFC 826): the fixed 28-byte form.
use super::{be16, be32, ethernet::Mac};

pub const LEN: usize = 28;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;
pub const OPER: usize = 6;
pub const SHA: usize = 8;
pub const SPA: usize = 14;
pub const THA: usize = 18;
pub const TPA: usize = 24;

/// A checked view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: Mac,
    pub sender_ip: u32,
    pub target_mac: Mac,
    pub target_ip: u32,
}

impl Arp {
    /// Parses `b` (starting at the ARP header); None unless it is Ethernet/IPv4 ARP.
    pub fn parse(b: &[u8]) -> Option<Arp> {
        if b.len() < LEN || be16(b, 0)? != 1 || be16(b, 2)? != 0x0800 || b[4] != 6 || b[5] != 4 {
            return None;
        }
        Some(Arp {
            op: be16(b, OPER)?,
            sender_mac: Mac::from_slice(&b[SHA..]),
            sender_ip: be32(b, SPA)?,
            target_mac: Mac::from_slice(&b[THA..]),
            target_ip: be32(b, TPA)?,
        })
    }

    /// Writes this ARP packet into `b` (at least `LEN` bytes).
    pub fn emit(&self, b: &mut [u8]) {
        b[0..2].copy_from_slice(&1u16.to_be_bytes());
        b[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[OPER..OPER + 2].copy_from_slice(&self.op.to_be_bytes());
        b[SHA..SHA + 6].copy_from_slice(&self.sender_mac.0);
        b[SPA..SPA + 4].copy_from_slice(&self.sender_ip.to_be_bytes());
        b[THA..THA + 6].copy_from_slice(&self.target_mac.0);
        b[TPA..TPA + 4].copy_from_slice(&self.target_ip.to_be_bytes());
    }
}

/// A broadcast request from `sender_mac` at `sender_ip`: who has `target_ip`?
pub fn request(sender_mac: Mac, sender_ip: u32, target_ip: u32) -> [u8; 60] {
    let req = Arp { op: OP_REQUEST, sender_mac, sender_ip, target_mac: Mac::default(), target_ip };
    frame(Mac::BROADCAST, sender_mac, &req)
}

/// A whole Ethernet frame carrying `arp` (padded to the 60-byte minimum).
pub fn frame(dst: Mac, src: Mac, arp: &Arp) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&super::ethernet::ETHERTYPE_ARP.to_be_bytes());
    arp.emit(&mut f[14..]);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let a = Arp {
            op: OP_REQUEST,
            sender_mac: Mac([2, 0, 0, 0, 0, 1]),
            sender_ip: 0xc0a80001,
            target_mac: Mac::default(),
            target_ip: 0xc0a80002,
        };
        let f = frame(Mac::BROADCAST, a.sender_mac, &a);
        assert_eq!(Arp::parse(&f[14..]), Some(a));
        assert_eq!(Arp::parse(&f[14..14 + 27]), None, "short");
        let mut bad = f;
        bad[14 + 4] = 8; // hardware length
        assert_eq!(Arp::parse(&bad[14..]), None);
        // Golden bytes: who-has 192.168.0.2 tell 192.168.0.1
        assert_eq!(
            &f[14..42],
            &[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 168, 0, 1, 0, 0, 0, 0, 0, 0, 192, 168, 0, 2]
        );
    }
}
