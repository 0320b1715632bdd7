//! What `network list`, `vtep show`, `neigh list` and `fib list` show.
use super::{api::*, FibTarget, Overlay, ARP_FAST_TRIES, DEFAULT_AGING, DEFAULT_MAX_MACS};
use crate::ports::PortRef;
use pipelines::PortId;
use std::{net::Ipv4Addr, time::Instant};

impl Overlay {
    pub fn network_views(&self, ports: &[PortRef]) -> Vec<NetworkView> {
        self.networks
            .values()
            .map(|n| NetworkView {
                vni: n.vni,
                name: n.name.clone(),
                ports: ports.iter().filter(|p| p.vni == Some(n.vni)).map(|p| p.name.clone()).collect(),
                flood_vteps: n.flood_vteps.clone(),
                cluster_vteps: self.cluster_flood(n.vni),
                gateway: n.gateway.clone(),
                max_macs: n.max_macs.unwrap_or(DEFAULT_MAX_MACS),
                aging: n.aging.unwrap_or(DEFAULT_AGING),
                macs_learned: self.learned_per_vni.get(&n.vni).copied().unwrap_or(0),
                learn_refused: self.refused.get(&n.vni).copied().unwrap_or(0),
                mac_moves: self.moves.get(&n.vni).copied().unwrap_or(0),
            })
            .collect()
    }

    pub fn vtep_view(&self, ports: &[PortRef]) -> Option<VtepView> {
        let v = self.vtep.as_ref()?;
        let up = ports.iter().find(|p| p.name == v.spec.uplink);
        let state = match (up, self.vtep_tables(ports)) {
            (_, Some(_)) => "active".to_string(),
            (None, _) => format!("inactive: uplink {:?} does not exist", v.spec.uplink),
            (Some(_), None) => format!("inactive: uplink {:?} is not running", v.spec.uplink),
        };
        let remotes = self
            .remote_vteps()
            .into_iter()
            .map(|ip| {
                let nexthop = self.nexthop(ip);
                RemoteView {
                    ip,
                    nexthop,
                    nexthop_mac: nexthop.and_then(|nh| self.nexthop_mac(nh)).map(|m| m.to_string()),
                }
            })
            .collect();
        Some(VtepView {
            ip: v.net.to_string(),
            uplink: v.spec.uplink.clone(),
            mac: v.mac.or(up.map(|p| p.mac)).map(|m| m.to_string()),
            gateway: v.spec.gateway,
            ip6: v.net6.map(|n| n.to_string()),
            gateway6: v.spec.gateway6,
            udp_port: v.spec.udp_port.unwrap_or(pipelines::wire::vxlan::DEFAULT_UDP_PORT),
            ttl: v.spec.ttl.unwrap_or(64),
            mtu: up.map(|p| p.mtu),
            state,
            remotes,
        })
    }

    pub fn neigh_views(&self, now: Instant) -> Vec<NeighView> {
        let mut v: Vec<NeighView> = self
            .neighbours
            .iter()
            .map(|(ip, mac)| NeighView {
                ip: *ip,
                mac: Some(mac.to_string()),
                kind: "static".into(),
                state: "resolved".into(),
                age_secs: None,
            })
            .collect();
        for (ip, e) in &self.arp {
            v.push(NeighView {
                ip: *ip,
                mac: e.mac.map(|m| m.to_string()),
                kind: "dynamic".into(),
                state: match (e.mac, e.tries) {
                    (Some(_), _) => "resolved",
                    (None, t) if t >= ARP_FAST_TRIES => "failed",
                    _ => "resolving",
                }
                .into(),
                age_secs: e.resolved_at.map(|at| now.duration_since(at).as_secs()),
            });
        }
        v.sort_by_key(|n| n.ip);
        v
    }

    pub fn fib_views(&self, vni: Option<u32>, ports: &[PortRef], now: Instant) -> Vec<FibView> {
        let name_of = |id: PortId| ports.iter().find(|p| p.id == Some(id)).map(|p| p.name.clone());
        let mut v: Vec<FibView> = self
            .fib
            .iter()
            .filter(|((n, _), _)| vni.is_none_or(|x| x == *n))
            .map(|((n, mac), f)| FibView {
                vni: *n,
                mac: mac.to_string(),
                port: f.port.clone(),
                vtep: f.vtep,
                kind: "static".into(),
                age_secs: None,
            })
            .collect();
        for (&(n, mac), &ip) in &self.from_cluster {
            if vni.is_some_and(|x| x != n) || self.fib.contains_key(&(n, mac)) {
                continue;
            }
            v.push(FibView {
                vni: n,
                mac: mac.to_string(),
                port: None,
                vtep: Some(ip),
                kind: "cluster".into(),
                age_secs: None,
            });
        }
        for ((n, mac), l) in &self.learned {
            let hidden = self.fib.contains_key(&(*n, *mac)) || self.from_cluster.contains_key(&(*n, *mac));
            if vni.is_some_and(|x| x != *n) || hidden {
                continue;
            }
            let (port, vtep) = match l.target {
                FibTarget::Port(id) => (name_of(id), None),
                FibTarget::Vtep(ip) => (None, Some(Ipv4Addr::from(ip))),
            };
            v.push(FibView {
                vni: *n,
                mac: mac.to_string(),
                port,
                vtep,
                kind: "learned".into(),
                age_secs: Some(now.duration_since(l.last_seen).as_secs()),
            });
        }
        v.sort_by(|a, b| (a.vni, &a.mac).cmp(&(b.vni, &b.mac)));
        v
    }
}
