//! Resolving the underlay next hops of remote VTEPs: ARP requests on the uplink, retried
//! quickly at first, refreshed before they expire; answers come back from the cores.
use super::{ArpEntry, Overlay, ARP_FAST_TRIES, ARP_REFRESH, ARP_RETRY_FAST, ARP_RETRY_SLOW, ARP_TTL};
use crate::ports::PortRef;
use pipelines::wire::arp;
use std::{collections::BTreeSet, net::Ipv4Addr, time::Instant};

/// Gratuitous ARPs sent when the VTEP comes up.
const ANNOUNCEMENTS: u32 = 3;

/// Whether next hop entry `e` is asked about at `now` (counting the try): unresolved and
/// due for a retry, or resolved and due for a refresh. An answer past its time is
/// forgotten first (`changed`: the tables lose it).
pub(super) fn ask_now(e: &mut ArpEntry, now: Instant, changed: &mut bool) -> bool {
    if let Some(at) = e.resolved_at {
        let age = now.duration_since(at);
        if age > ARP_TTL {
            (e.mac, e.resolved_at, e.tries) = (None, None, 0);
            *changed = true;
        } else if age < ARP_REFRESH || now < e.next_try {
            return false;
        }
    }
    if now < e.next_try {
        return false;
    }
    e.tries += 1;
    e.next_try = now + if e.tries < ARP_FAST_TRIES { ARP_RETRY_FAST } else { ARP_RETRY_SLOW };
    true
}

impl Overlay {
    /// ARP requests due now (next hops without a static or fresh entry): the frames to
    /// send on the uplink. Also expires stale answers; `changed` is set if that
    /// affects the tables.
    pub fn arp_due(&mut self, ports: &[PortRef], now: Instant, changed: &mut bool) -> Vec<[u8; 60]> {
        let Some(vtep) = self.vtep_tables(ports) else { return Vec::new() };
        let mut out = if self.announce_vtep { self.announce(&vtep, now) } else { Vec::new() };
        // Next hops of remote VTEPs, and the underlay's router when VMs or a NodePort's
        // replies leave by the uplink.
        let router =
            self.vtep.as_ref().and_then(|v| v.spec.gateway).filter(|_| self.egress_wanted || self.masquerades());
        // An on-link address wanted for egress that never answered is given up.
        let arp = &self.arp;
        self.wanted.retain(|ip| arp.get(ip).is_none_or(|e| e.mac.is_some() || e.tries < ARP_FAST_TRIES + 2));
        let needed: BTreeSet<Ipv4Addr> = self
            .remote_vteps()
            .into_iter()
            .filter_map(|r| self.nexthop(r))
            .chain(router)
            .chain(self.wanted.iter().copied())
            .filter(|nh| !self.neighbours.contains_key(nh))
            .collect();
        self.arp.retain(|ip, _| needed.contains(ip));
        for nh in needed {
            let e = self.arp.entry(nh).or_insert(ArpEntry { mac: None, resolved_at: None, tries: 0, next_try: now });
            if ask_now(e, now, changed) {
                out.push(arp::request(vtep.mac, vtep.ip, u32::from(nh)));
            }
        }
        out
    }

    /// Gratuitous ARP for the VTEP when it comes up or changes (a restarted switch's
    /// peers learn its MAC now, not when their entry expires): three, a second apart.
    fn announce(&mut self, vtep: &pipelines::tables::Vtep, now: Instant) -> Vec<[u8; 60]> {
        let me = (vtep.ip, vtep.mac, vtep.uplink);
        if self.announced.as_ref().map(|a| a.0) != Some(me) {
            self.announced = Some((me, 0, now));
        }
        match &mut self.announced {
            Some((_, sent, next)) if *sent < ANNOUNCEMENTS && now >= *next => {
                *sent += 1;
                *next = now + ARP_RETRY_FAST;
                vec![arp::request(vtep.mac, vtep.ip, vtep.ip)]
            }
            _ => Vec::new(),
        }
    }

    /// An ARP reply reached us. Returns true if it resolved (or changed) a next hop.
    pub fn arp_reply(&mut self, a: &arp::Arp, now: Instant) -> bool {
        let ip = Ipv4Addr::from(a.sender_ip);
        let Some(e) = self.arp.get_mut(&ip) else { return false };
        let changed = e.mac != Some(a.sender_mac);
        e.mac = Some(a.sender_mac);
        e.resolved_at = Some(now);
        e.tries = 0;
        e.next_try = now + ARP_REFRESH;
        if changed {
            tracing::info!("resolved underlay neighbour {ip} at {}", a.sender_mac);
        }
        changed
    }
}
