//! Pings through the masquerade: an ICMP echo is keyed by its identifier on both ends,
//! which the masquerade rewrites as it rewrites ports.
use super::{deliver, leave, OUTSIDE, SNAT_TRIES};
use crate::{
    conntrack::{table::hash, CtKey, Tuple},
    meta::{ipv4_key, Action, IpKey, Meta},
    services::{maglev::fmix64, nat::words, At, End},
    tables::L2Tables,
    wire::ipv4,
    DropReason, Frame,
};

pub(super) const ECHO_REPLY: u16 = 0;
pub const ECHO_REQUEST: u16 = 8;

/// An ICMP echo request (`ECHO_REQUEST`) or reply over IPv4, whole: masqueraded by its
/// identifier as TCP and UDP are by their ports.
#[inline]
pub fn ip4_echo(m: &Meta, ty: u16) -> bool {
    m.action == Action::Continue
        && m.ip_version == 4
        && m.l4 != 0
        && !m.fragment
        && m.proto == ipv4::PROTO_ICMP
        && m.sport == ty
}

/// An echo's identifier (0 if the header is cut).
fn echo_id<F: Frame>(f: &F, m: &Meta) -> u16 {
    let at = m.l4 as usize + 4;
    f.head().get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

/// An echo's source or destination address and its identifier rewritten (the ICMP
/// checksum covers the identifier, not the addresses); false if the header is cut.
fn rewrite_echo<F: Frame>(f: &mut F, m: &mut Meta, end: End, ip: IpKey, id: u16) -> bool {
    let (l3, l4) = (m.l3 as usize, m.l4 as usize);
    let old_id = echo_id(f, m);
    let b = f.head_mut();
    if b.len() < l4 + 8 || b.len() < l3 + ipv4::MIN_LEN {
        return false;
    }
    let at = if end == End::Src { l3 + ipv4::SRC } else { l3 + ipv4::DST };
    let old_ip = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let d = crate::wire::word_change(words(old_ip as IpKey, true), words(ip, true));
    crate::wire::adjust_checksum(&mut b[l3 + ipv4::CHECKSUM..l3 + ipv4::CHECKSUM + 2], d, true);
    b[at..at + 4].copy_from_slice(&(ip as u32).to_be_bytes());
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
    Tuple { zone, proto: ipv4::PROTO_ICMP, src: (m.ip_src, id), dst: (m.ip_dst, id) }.key().0
}

/// A VM's ping to an address outside its network: from the host's address, with an
/// identifier free there toward that address (its own if it is).
pub(super) fn masquerade_echo<F: Frame>(t: &L2Tables, at: &At, f: &mut F, m: &mut Meta) -> Result<Action, DropReason> {
    let Some(v) = &t.vtep else { return Err(DropReason::NoVtep) };
    let host = ipv4_key(v.ip);
    let id = echo_id(f, m);
    let inside = echo_key(m, m.vni, id);
    let h = hash(&inside);
    let found = at.table.lookup_nat(&inside, h);
    let held = found.and_then(|s| at.table.key_of(s.index)).map(|k| if k.lo.0 == host { k.lo.1 } else { k.hi.1 });
    let outside_id = match held {
        Some(held) => held,
        None => std::iter::once(id)
            .chain((0..SNAT_TRIES).map(|i| fmix64(h ^ i) as u16))
            .find(|&c| {
                let k = Tuple { zone: OUTSIDE, proto: ipv4::PROTO_ICMP, src: (host, c), dst: (m.ip_dst, c) }.key().0;
                at.table.lookup(&k, hash(&k)).is_none()
            })
            .ok_or(DropReason::SnatNoPort)?,
    };
    leave(t, at, (inside, found), f, m, |f, m| rewrite_echo(f, m, End::Src, host, outside_id))
}

/// An echo reply from outside to a VM's masqueraded ping.
pub(super) fn returning_echo<F: Frame>(t: &L2Tables, at: &At, f: &mut F, m: &mut Meta) -> Option<Action> {
    let key = echo_key(m, OUTSIDE, echo_id(f, m));
    let found = at.table.lookup(&key, hash(&key))?;
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
