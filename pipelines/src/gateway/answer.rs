//! What the gateway answers itself, in place, back to the asking VM: ARP requests and
//! neighbour solicitations for its own and for known endpoints' addresses, and echo
//! requests (ping) to its own addresses.
use super::{set_macs, Endpoints, GATEWAY_MAC};
use crate::{
    learn::LearnEvent,
    meta::{ipv4_key, Action, Meta},
    tables::{FibTarget, Network},
    wire::{arp, ethernet, ipv4, ones_sum, update_checksum, Mac},
    Frame, PortId,
};

const ICMP_ECHO_REQUEST: u16 = 8;
const ICMPV6_ECHO_REQUEST: u16 = 128;
pub(crate) const ND_SOLICIT: u16 = 135;
pub(crate) const ND_ADVERT: u8 = 136;
/// A neighbour advertisement with a target link-layer address option.
const NA_LEN: usize = 32;
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;
/// All nodes on the link (ff02::1), where a solicitation from the unspecified address
/// (duplicate address detection) is answered (RFC 4861 7.2.4), and its MAC.
const ALL_NODES: u128 = 0xff02 << 112 | 1;
const ALL_NODES_MAC: Mac = Mac([0x33, 0x33, 0, 0, 0, 1]);
/// The hop limit of packets the gateway originates.
const HOP_LIMIT: u8 = 64;

/// Who answers for `ip` in `net`: the gateway, or the endpoint holding it (unless that
/// is the asker itself, probing its own address). The flag says a router answers.
fn owner(eps: &Endpoints, net: &Network, ip: crate::meta::IpKey, asker: Mac) -> Option<(Mac, bool)> {
    if net.gateway.owns(ip) {
        return Some((GATEWAY_MAC, true));
    }
    let ep = eps.get(net.vni, ip)?;
    (ep.mac != asker).then_some((ep.mac, false))
}

/// An ARP request from a VM in `net` for the gateway or a known endpoint, turned into
/// the reply and sent back to `port`. None: not one of those (switch it as before).
pub fn answer_arp<F: Frame>(eps: &Endpoints, net: &Network, f: &mut F, m: &mut Meta, port: PortId) -> Option<Action> {
    let l3 = m.l3 as usize;
    let a = f.head().get(l3..).and_then(arp::Arp::parse)?;
    // A gratuitous ARP announces the sender's own address: nothing to answer.
    if a.op != arp::OP_REQUEST || a.sender_ip == a.target_ip {
        return None;
    }
    let (mac, _) = owner(eps, net, ipv4_key(a.target_ip), a.sender_mac)?;
    let reply = arp::Arp {
        op: arp::OP_REPLY,
        sender_mac: mac,
        sender_ip: a.target_ip,
        target_mac: a.sender_mac,
        target_ip: a.sender_ip,
    };
    set_macs(f, m, a.sender_mac, mac);
    reply.emit(&mut f.head_mut()[l3..]);
    Some(Action::Tx(port))
}

/// An ICMPv6 neighbour solicitation or advertisement (RFC 4861), by its metadata.
#[inline]
pub fn is_neighbour_discovery(m: &Meta) -> bool {
    m.ip_version == 6 && m.proto == ipv4::PROTO_ICMPV6 && matches!(m.sport, ND_SOLICIT | ND_ADVERT_U16) && m.l4 != 0
}

const ND_ADVERT_U16: u16 = ND_ADVERT as u16;

/// What an ARP packet or a neighbour discovery message from a VM at `port` in `net`
/// says of who holds an address: the sender's (for an advertisement, the target's) at
/// the frame's source MAC. None when it says nothing routable, claims the gateway's
/// address, or speaks for another MAC than the one sending it.
pub fn learned<F: Frame>(net: &Network, f: &F, m: &Meta, port: PortId) -> Option<LearnEvent> {
    let ip = if m.ethertype == ethernet::ETHERTYPE_ARP {
        let a = f.head().get(m.l3 as usize..).and_then(arp::Arp::parse)?;
        if a.sender_ip == 0 || a.sender_mac != m.src {
            return None;
        }
        ipv4_key(a.sender_ip)
    } else {
        let l4 = m.l4 as usize;
        if f.head().get(m.l3 as usize + 7) != Some(&255) {
            return None;
        }
        let ip = match m.sport {
            ND_SOLICIT => m.ip_src,
            _ => u128::from_be_bytes(f.head().get(l4 + 8..l4 + 24)?.try_into().ok()?),
        };
        // Unspecified (duplicate address detection) and link-local addresses are not
        // routed.
        if ip == 0 || ip >> 118 == 0xfe80 >> 6 {
            return None;
        }
        ip
    };
    if net.gateway.owns(ip) {
        return None;
    }
    Some(LearnEvent { ip, ..LearnEvent::mac(net.vni, m.src, FibTarget::Port(port)) })
}

/// A neighbour solicitation from a VM in `net` for the gateway or a known endpoint,
/// turned into the advertisement and sent back to `port`. None: not one of those, or
/// duplicate address detection of an endpoint's address (the owner answers that one,
/// wherever it is; the gateway's is defended here, as the owner would).
pub fn answer_nd<F: Frame>(eps: &Endpoints, net: &Network, f: &mut F, m: &mut Meta, port: PortId) -> Option<Action> {
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    // No extension headers, and the hop limit a neighbour's packet has (RFC 4861 7.1.1).
    if m.sport != ND_SOLICIT || l4 != l3 + 40 || f.head().get(l3 + 7) != Some(&255) || m.fragment {
        return None;
    }
    let target = u128::from_be_bytes(f.head().get(l4 + 8..l4 + 24)?.try_into().ok()?);
    if m.ip_src == 0 && !net.gateway.owns(target) {
        return None;
    }
    let (mac, router) = owner(eps, net, target, m.src)?;
    advertise(f, m, target, mac, router).then_some(Action::Tx(port))
}

/// The solicitation in `f` (of `target`, checked by the caller) turned in place into the
/// advertisement that `mac` holds `target` (a router's if `router`), to the asker, or to
/// all nodes, unsolicited, if the asker has no address yet (it is checking that nobody
/// holds `target` before it takes it: this says somebody does); false if it cannot be
/// (nothing changed then).
pub(crate) fn advertise<F: Frame>(f: &mut F, m: &mut Meta, target: u128, mac: Mac, router: bool) -> bool {
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    let need = l4 + NA_LEN;
    // A solicitation is 24 bytes and an 8-byte option or none; the answer is 32.
    if f.len() < need {
        let short = need - f.len();
        if short > 8 || !f.append(&[0; 8][..short]) {
            return false;
        }
    } else if f.len() > need && !f.truncate(need) {
        return false;
    }
    if f.head().len() < need {
        return false;
    }
    let (asker, asker_mac, solicited) =
        if m.ip_src == 0 { (ALL_NODES, ALL_NODES_MAC, 0) } else { (m.ip_src, m.src, NA_SOLICITED) };
    let b = f.head_mut();
    b[l3 + 4..l3 + 6].copy_from_slice(&(NA_LEN as u16).to_be_bytes());
    b[l3 + 6] = ipv4::PROTO_ICMPV6;
    b[l3 + 7] = 255;
    b[l3 + 8..l3 + 24].copy_from_slice(&target.to_be_bytes());
    b[l3 + 24..l3 + 40].copy_from_slice(&asker.to_be_bytes());
    let na = &mut b[l4..need];
    na.fill(0);
    na[0] = ND_ADVERT;
    na[4] = solicited | NA_OVERRIDE | if router { NA_ROUTER } else { 0 };
    na[8..24].copy_from_slice(&target.to_be_bytes());
    na[24] = 2; // target link-layer address, one 8-byte unit
    na[25] = 1;
    na[26..32].copy_from_slice(&mac.0);
    let pseudo = ones_sum(&b[l3 + 8..l3 + 40]) + NA_LEN as u32 + ipv4::PROTO_ICMPV6 as u32;
    let sum = pseudo + ones_sum(&b[l4..need]);
    b[l4 + 2..l4 + 4].copy_from_slice(&crate::wire::checksum(sum).to_be_bytes());
    set_macs(f, m, asker_mac, mac);
    m.ip_src = target;
    m.ip_dst = asker;
    m.sport = ND_ADVERT as u16;
    true
}

/// An echo request to the gateway's own address, turned into the reply and sent back to
/// `port`. None: anything else (nothing listens on the gateway).
pub fn echo<F: Frame>(f: &mut F, m: &mut Meta, port: PortId) -> Option<Action> {
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    let request = match m.ip_version {
        4 => m.proto == ipv4::PROTO_ICMP && m.sport == ICMP_ECHO_REQUEST,
        _ => m.proto == ipv4::PROTO_ICMPV6 && m.sport == ICMPV6_ECHO_REQUEST,
    };
    if !request || l4 == 0 || m.fragment {
        return None;
    }
    let b = f.head_mut();
    let icmp = b.get_mut(l4..l4 + 4)?;
    // Swapping the addresses keeps every checksum (the pseudo-header's sum too); the
    // type and the TTL change theirs.
    let old = u16::from_be_bytes([icmp[0], icmp[1]]);
    icmp[0] = if m.ip_version == 4 { 0 } else { ICMPV6_ECHO_REQUEST as u8 + 1 };
    let new = u16::from_be_bytes([icmp[0], icmp[1]]);
    update_checksum(&mut icmp[2..4], old, new);
    match m.ip_version {
        4 => {
            let h = b.get_mut(l3..l3 + ipv4::MIN_LEN)?;
            let (src, dst) = (ipv4::SRC, ipv4::DST);
            let s: [u8; 4] = h[src..src + 4].try_into().ok()?;
            h.copy_within(dst..dst + 4, src);
            h[dst..dst + 4].copy_from_slice(&s);
            let old = u16::from_be_bytes([h[ipv4::TTL], h[ipv4::PROTO]]);
            h[ipv4::TTL] = HOP_LIMIT;
            let new = u16::from_be_bytes([h[ipv4::TTL], h[ipv4::PROTO]]);
            update_checksum(&mut h[ipv4::CHECKSUM..ipv4::CHECKSUM + 2], old, new);
        }
        _ => {
            let h = b.get_mut(l3..l3 + 40)?;
            let s: [u8; 16] = h[8..24].try_into().ok()?;
            h.copy_within(24..40, 8);
            h[24..40].copy_from_slice(&s);
            h[7] = HOP_LIMIT;
        }
    }
    set_macs(f, m, m.src, GATEWAY_MAC);
    std::mem::swap(&mut m.ip_src, &mut m.ip_dst);
    m.sport = new >> 8;
    Some(Action::Tx(port))
}
