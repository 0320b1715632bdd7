//! Pings through the masquerade: an ICMP or ICMPv6 echo is keyed by its identifier on
//! both ends, which the masquerade rewrites as it rewrites ports.
use super::{deliver, leave, OUTSIDE, SNAT_TRIES};
use crate::{
    conntrack::{CtKey, Tuple},
    meta::{Action, IpKey, Meta},
    services::{maglev::fmix64, nat::words, At, End},
    tables::L2Tables,
    wire::ipv4,
    DropReason, Frame,
};

/// Which echo message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Request,
    Reply,
}

/// An ICMP (or ICMPv6) echo request or reply, whole: masqueraded by its identifier as
/// TCP and UDP are by their ports.
#[inline]
pub fn is_echo(m: &Meta, which: Echo) -> bool {
    let ty = match (m.ip_version, which) {
        (4, Echo::Request) => (ipv4::PROTO_ICMP, 8),
        (4, Echo::Reply) => (ipv4::PROTO_ICMP, 0),
        (_, Echo::Request) => (ipv4::PROTO_ICMPV6, 128),
        (_, Echo::Reply) => (ipv4::PROTO_ICMPV6, 129),
    };
    m.action == Action::Continue && m.l4 != 0 && !m.fragment && (m.proto, m.sport) == ty
}

/// An echo's identifier (0 if the header is cut).
fn echo_id<F: Frame>(f: &F, m: &Meta) -> u16 {
    let at = m.l4 as usize + 4;
    f.head().get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

/// An echo's source or destination address and its identifier rewritten (the ICMP
/// checksum covers the identifier, ICMPv6's the addresses too); false if the header is
/// cut.
fn rewrite_echo<F: Frame>(f: &mut F, m: &mut Meta, end: End, ip: IpKey, id: u16) -> bool {
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    let v4 = m.ip_version == 4;
    let old_id = echo_id(f, m);
    let b = f.head_mut();
    let (len, at) = match (v4, end) {
        (true, End::Src) => (4, l3 + ipv4::SRC),
        (true, End::Dst) => (4, l3 + ipv4::DST),
        (false, End::Src) => (16, l3 + 8),
        (false, End::Dst) => (16, l3 + 24),
    };
    if b.len() < l4 + 8 || b.len() < at + len {
        return false;
    }
    let old_ip = b[at..at + len].iter().fold(0, |a, &x| a << 8 | x as IpKey);
    let d = crate::wire::word_change(words(old_ip, v4), words(ip, v4));
    if v4 {
        crate::wire::adjust_checksum(&mut b[l3 + ipv4::CHECKSUM..l3 + ipv4::CHECKSUM + 2], d, true);
    } else {
        // ICMPv6's checksum covers the pseudo-header's addresses.
        crate::wire::adjust_checksum(&mut b[l4 + 2..l4 + 4], d, true);
    }
    b[at..at + len].copy_from_slice(&ip.to_be_bytes()[16 - len..]);
    crate::wire::update_checksum(&mut b[l4 + 2..l4 + 4], old_id, id);
    b[l4 + 4..l4 + 6].copy_from_slice(&id.to_be_bytes());
    match end {
        End::Src => m.ip_src = ip,
        End::Dst => m.ip_dst = ip,
    }
    true
}

/// The key of an echo as connection tracking keys it (the identifier on both ends).
fn echo_key(m: &Meta, zone: u32, id: u16) -> CtKey {
    Tuple { zone, proto: m.proto, src: (m.ip_src, id), dst: (m.ip_dst, id) }.key().0
}

/// A VM's ping to an address outside its network: from the host's address, with an
/// identifier free there toward that address (its own if it is).
pub(super) fn masquerade_echo<F: Frame>(t: &L2Tables, at: &At, f: &mut F, m: &mut Meta) -> Result<Action, DropReason> {
    let Some(host) = super::host_address(t, m) else { return Err(DropReason::NoVtep) };
    let id = echo_id(f, m);
    let inside = echo_key(m, m.vni, id);
    let h = at.table.hash(&inside);
    let found = at.table.lookup_nat(&inside, h);
    let held = found.and_then(|s| at.table.key_of(s.index)).map(|k| if k.lo.0 == host { k.lo.1 } else { k.hi.1 });
    let outside_id = match held {
        Some(held) => held,
        None => std::iter::once(id)
            .chain((0..SNAT_TRIES).map(|i| fmix64(h ^ i) as u16))
            .find(|&c| {
                let k = Tuple { zone: OUTSIDE, proto: m.proto, src: (host, c), dst: (m.ip_dst, c) }.key().0;
                at.table.lookup(&k, at.table.hash(&k)).is_none()
            })
            .ok_or(DropReason::SnatNoPort)?,
    };
    leave(t, at, (inside, found), f, m, |f, m| rewrite_echo(f, m, End::Src, host, outside_id))
}

/// An echo reply from outside to a VM's masqueraded ping.
pub(super) fn returning_echo<F: Frame>(t: &L2Tables, at: &At, f: &mut F, m: &mut Meta) -> Option<Action> {
    let key = echo_key(m, OUTSIDE, echo_id(f, m));
    let found = at.table.lookup_live(&key, at.table.hash(&key), at.now)?;
    let nat = at.table.nat_of(found.index)?;
    // The VM's end of its own key: not the outside address.
    let inside = if nat.key.lo.0 == m.ip_src { nat.key.hi } else { nat.key.lo };
    if let Err(r) = at.track(None, Some(found), f, m) {
        return Some(Action::Drop(r));
    }
    if !rewrite_echo(f, m, End::Dst, inside.0, inside.1) {
        return Some(Action::Drop(DropReason::CtInvalid));
    }
    m.vni = nat.key.zone;
    Some(deliver(t, f, m))
}
