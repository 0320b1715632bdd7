//! North-south over IPv6 (`vtep set --ip6 ADDR/LEN [--gateway6 ROUTER]`): the host's
//! IPv6 address on the uplink, which masqueraded connections leave from and node ports
//! are reached at, and its next hops resolved by neighbour discovery (the cores answer
//! solicitations for the address and hand advertisements over). The underlay the
//! tunnels use stays IPv4.
use super::{api::VtepSpec, ArpEntry, Overlay, ARP_FAST_TRIES};
use crate::ports::PortRef;
use ipnetwork::Ipv6Network;
use pipelines::{gateway::ask, tables::Underlay, wire::Mac};
use std::{collections::BTreeSet, net::Ipv6Addr, time::Instant};

/// Neighbour-discovery messages' fields the control plane reads.
const ND_ADVERT: u8 = 136;
const OPT_TARGET_LL: u8 = 2;

/// The host's IPv6 address and prefix of `spec`, checked (None: it has none).
pub(super) fn parse_host6(spec: &VtepSpec) -> Result<Option<Ipv6Network>, String> {
    let Some(given) = &spec.ip6 else {
        return match spec.gateway6 {
            Some(_) => Err("gateway6: an IPv6 router needs the host's IPv6 address; give --ip6 ADDR/LEN too".into()),
            None => Ok(None),
        };
    };
    let net: Ipv6Network = given
        .parse()
        .map_err(|e| format!("ip6: {given:?} is not an IPv6 address with prefix length (e.g. fd00:50::1/64): {e}"))?;
    if !given.contains('/') {
        return Err(format!("ip6: {given:?} needs a prefix length, e.g. {given}/64"));
    }
    let ip = net.ip();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() || is_link_local(ip) {
        return Err(format!("ip6: {ip} must be a global or unique-local unicast address"));
    }
    if let Some(gw) = spec.gateway6 {
        let usable = !gw.is_multicast() && !gw.is_unspecified() && gw != ip;
        if !usable || !(net.contains(gw) || is_link_local(gw)) {
            return Err(format!("gateway6: {gw} must be another address inside {net}, or link-local"));
        }
    }
    Ok(Some(net))
}

fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

impl Overlay {
    fn net6(&self) -> Option<Ipv6Network> {
        self.vtep.as_ref().and_then(|v| v.net6)
    }

    /// The IPv6 half of the underlay the cores read: the host's address and prefix,
    /// the router, the neighbours resolved.
    pub(super) fn underlay6(&self, u: &mut Underlay) {
        let Some(net) = self.net6() else { return };
        u.host6 = Some(u128::from(net.ip()));
        u.mask6 = u128::from(net.mask());
        u.router6 = self.vtep.as_ref().and_then(|v| v.spec.gateway6).map(u128::from);
        u.neighbours6 = self.nd.iter().filter_map(|(ip, e)| Some((u128::from(*ip), e.mac?))).collect();
    }

    /// A packet beyond the uplink for IPv6 address `ip` found no next hop: if `ip` is
    /// on the host's prefix, it is resolved from now on (the router already is).
    pub fn want6(&mut self, ip: Ipv6Addr) {
        let on_link = self.net6().is_some_and(|n| n.contains(ip) && ip != n.ip());
        if on_link && self.wanted6.len() < super::MAX_WANTED {
            self.wanted6.insert(ip);
        }
    }

    /// Neighbour solicitations due now (the router when something leaves by the uplink,
    /// on-link addresses wanted), as frames for the uplink. Expires stale answers;
    /// `changed` is set if that affects the tables.
    pub fn nd_due(&mut self, ports: &[PortRef], now: Instant, changed: &mut bool) -> Vec<Vec<u8>> {
        let (Some(net), Some(vtep)) = (self.net6(), self.vtep_tables(ports)) else { return Vec::new() };
        let router =
            self.vtep.as_ref().and_then(|v| v.spec.gateway6).filter(|_| self.egress_wanted || self.masquerades());
        let nd = &self.nd;
        self.wanted6.retain(|ip| nd.get(ip).is_none_or(|e| e.mac.is_some() || e.tries < ARP_FAST_TRIES + 2));
        let needed: BTreeSet<Ipv6Addr> = router.into_iter().chain(self.wanted6.iter().copied()).collect();
        self.nd.retain(|ip, _| needed.contains(ip));
        let mut out = Vec::new();
        for nh in needed {
            let e = self.nd.entry(nh).or_insert(ArpEntry { mac: None, resolved_at: None, tries: 0, next_try: now });
            if super::resolve::ask_now(e, now, changed) {
                out.push(ask::solicitation_by(u128::from(net.ip()), vtep.mac, u128::from(nh)).to_vec());
            }
        }
        out
    }

    /// A neighbour advertisement the cores handed over (`frame`, its ICMPv6 message at
    /// `l4`): the answer for a next hop asked about. True if the tables change.
    pub fn nd_advert(&mut self, frame: &[u8], l4: usize, now: Instant) -> bool {
        let Some((target, mac)) = advertised(frame, l4) else { return false };
        let Some(e) = self.nd.get_mut(&target) else { return false };
        let changed = e.mac != Some(mac);
        (e.mac, e.resolved_at, e.tries) = (Some(mac), Some(now), 0);
        changed
    }
}

/// The target and its link-layer address an advertisement (at `l4` in `frame`) gives;
/// without the option, the frame's source MAC.
fn advertised(frame: &[u8], l4: usize) -> Option<(Ipv6Addr, Mac)> {
    let na = frame.get(l4..)?;
    if *na.first()? != ND_ADVERT {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(na.get(8..24)?).ok()?);
    let mut opts = na.get(24..)?;
    while opts.len() >= 8 {
        let len = opts[1] as usize * 8;
        if len == 0 || len > opts.len() {
            break;
        }
        if opts[0] == OPT_TARGET_LL {
            return Some((target, Mac(opts[2..8].try_into().ok()?)));
        }
        opts = &opts[len..];
    }
    Some((target, Mac(frame.get(6..12)?.try_into().ok()?)))
}
