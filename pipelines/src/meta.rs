//! Per-packet metadata: filled once by the parser, read and written by every stage.
use crate::{wire::Mac, DropReason, PortId};

/// What happens to a packet once the batch has been through the stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Action {
    /// Not decided yet.
    #[default]
    Continue,
    Drop(DropReason),
    /// Transmit on this port (headers already rewritten).
    Tx(PortId),
    /// Copy to the other local ports of the VNI and, from a VM port, to each remote
    /// VTEP of its flood list (head-end replication).
    Flood {
        vni: u32,
    },
    /// Hand a copy to the control plane (an ARP reply for one of our requests).
    Punt,
}

/// IP addresses are kept as 16 bytes; IPv4 is IPv4-mapped (`::ffff:a.b.c.d`), so one
/// comparison serves both families in the ACL stage.
pub type IpKey = u128;

pub fn ipv4_key(a: u32) -> IpKey {
    0xffff_0000_0000 | a as u128
}

/// An address as `Meta` keeps it.
pub fn ip_key(ip: std::net::IpAddr) -> IpKey {
    match ip {
        std::net::IpAddr::V4(a) => ipv4_key(u32::from(a)),
        std::net::IpAddr::V6(a) => u128::from(a),
    }
}

/// An address `Meta` keeps, back as an address.
pub fn ip_addr(k: IpKey) -> std::net::IpAddr {
    if k >> 32 == 0xffff {
        std::net::IpAddr::V4(std::net::Ipv4Addr::from(k as u32))
    } else {
        std::net::IpAddr::V6(std::net::Ipv6Addr::from(k))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub dst: Mac,
    pub src: Mac,
    /// 802.1Q TCI of the outermost tag, if any.
    pub vlan_tci: Option<u16>,
    /// EtherType after any VLAN tags.
    pub ethertype: u16,
    /// Offset of the L3 header (after any tags).
    pub l3: u16,
    /// Offset of the L4 header; 0 if there is none or it could not be found.
    pub l4: u16,
    /// 4 or 6 for IP packets whose header parsed; 0 otherwise.
    pub ip_version: u8,
    pub proto: u8,
    pub ip_src: IpKey,
    pub ip_dst: IpKey,
    /// TCP/UDP ports; for ICMP, type and code.
    pub sport: u16,
    pub dport: u16,
    /// DSCP and ECN byte (IPv4 TOS / IPv6 traffic class).
    pub tos: u8,
    /// A non-first fragment, or a first one: ports are only valid in the first.
    pub fragment: bool,
    /// Counter slot + 1 of the ACL rule that decided on the way in / out (0: none did).
    pub acl_in: u32,
    pub acl_out: u32,
    /// The tenant network the packet is switched in (0 until a stage knows).
    pub vni: u32,
    pub action: Action,
    /// Connection tracking's result, once a stateful port tracked the packet.
    pub ct: crate::conntrack::CtMark,
    /// Not parsed: the frame's first `REPEAT_BYTES` repeat the previous frame's (see
    /// `stages::parse_vm_batch`); every other field is unset until a stage parses it.
    pub repeat: bool,
}
