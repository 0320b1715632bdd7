//! Tenant networks, the VTEP, the FIB (static and learned), underlay neighbours and
//! their resolution: the control-plane side of the overlay. Compiles into the
//! `L2Tables` the cores read.
pub mod api;
pub mod cli;
mod cluster;
mod fib;
mod handle;
mod ipv6;
mod resolve;
mod views;

use crate::ports::{
    api::{PortRole, PortSpec},
    PortRef,
};
use api::*;
use ipnetwork::{IpNetwork, Ipv4Network};
use pipelines::{
    gateway::GatewayAddrs,
    learn::LearnEvent,
    tables::{FibShard, FibTarget, L2Tables, Network, Remote, Underlay, Vtep},
    wire::{vxlan::MAX_VNI, Mac},
    PortId,
};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

pub const DEFAULT_MAX_MACS: u32 = 8192;
pub const DEFAULT_AGING: u32 = 300;
/// A resolved neighbour is asked again after this long...
const ARP_REFRESH: Duration = Duration::from_secs(240);
/// ...and forgotten after this long without an answer.
const ARP_TTL: Duration = Duration::from_secs(300);
/// Retry interval while resolving: quick at first, then slower.
const ARP_RETRY_FAST: Duration = Duration::from_secs(1);
const ARP_RETRY_SLOW: Duration = Duration::from_secs(10);
const ARP_FAST_TRIES: u32 = 3;

#[derive(Debug, Clone)]
struct Learned {
    target: FibTarget,
    last_seen: Instant,
}

#[derive(Debug, Clone)]
struct ArpEntry {
    mac: Option<Mac>,
    resolved_at: Option<Instant>,
    tries: u32,
    next_try: Instant,
}

/// A validated VTEP.
#[derive(Debug, Clone)]
struct VtepConf {
    spec: VtepSpec,
    net: Ipv4Network,
    mac: Option<Mac>,
    /// The host's IPv6 address and prefix, if it has one (`ipv6.rs`).
    net6: Option<ipnetwork::Ipv6Network>,
}

#[derive(Default, Debug)]
pub struct Overlay {
    networks: BTreeMap<u32, NetworkSpec>,
    vtep: Option<VtepConf>,
    /// Static FIB: (vni, mac) -> the spec as given.
    fib: BTreeMap<(u32, Mac), FibSpec>,
    neighbours: BTreeMap<Ipv4Addr, Mac>,
    /// Ordered by VNI first, so one network's entries are one range.
    learned: BTreeMap<(u32, Mac), Learned>,
    /// What the cluster store says of other nodes (`cluster.rs`): MACs behind their
    /// VTEPs, and the VTEPs with endpoints in each network. Runtime state, not desired.
    from_cluster: BTreeMap<(u32, Mac), Ipv4Addr>,
    cluster_flood: BTreeMap<u32, BTreeSet<Ipv4Addr>>,
    learned_per_vni: HashMap<u32, usize>,
    refused: HashMap<u32, u64>,
    moves: HashMap<u32, u64>,
    arp: HashMap<Ipv4Addr, ArpEntry>,
    /// Compiled FIB shards, per VNI, with the MACs changed since (`touch`); a change
    /// of port names or ids drops them all.
    shards: HashMap<u32, Arc<FibShard>>,
    stale: HashMap<u32, HashSet<Mac>>,
    shard_ports: Vec<(String, Option<PortId>)>,
    /// How many static and learned entries point at each remote VTEP.
    vtep_refs: BTreeMap<Ipv4Addr, u32>,
    /// Something sends outside by the uplink (a NodePort's replies): the underlay's
    /// router is resolved even if no remote VTEP needs it.
    pub egress_wanted: bool,
    /// The VTEPs that static endpoints (`endpoint add --vtep`) are behind: resolved
    /// like the flood lists' (a routed packet goes there without a flood).
    pub endpoint_vteps: BTreeSet<Ipv4Addr>,
    /// On-link underlay addresses packets beyond the uplink were sent to (masquerade,
    /// NodePort replies): resolved like VTEP next hops while they answer.
    wanted: BTreeSet<Ipv4Addr>,
    /// The same over IPv6 (`ipv6.rs`): next hops wanted, and neighbour discovery's
    /// answers.
    wanted6: BTreeSet<std::net::Ipv6Addr>,
    nd: HashMap<std::net::Ipv6Addr, ArpEntry>,
    /// Announce the VTEP by gratuitous ARP when it comes up (in a cluster, whose peers
    /// may hold an old MAC of a restarted node; otherwise quiet, as Linux is by
    /// default), and what was last announced, how many times, and when next.
    pub announce_vtep: bool,
    announced: Option<((u32, Mac, PortId), u32, Instant)>,
}

/// On-link underlay addresses resolved for egress at most.
pub const MAX_WANTED: usize = 1024;

const MAC_FIRST: Mac = Mac([0; 6]);
const MAC_LAST: Mac = Mac([0xff; 6]);

fn parse_mac(field: &str, s: &str) -> Result<Mac, String> {
    let m: Mac = s.parse().map_err(|e| format!("{field}: {e}"))?;
    if m.is_multicast() || m.is_zero() {
        return Err(format!("{field}: {m} is not a unicast MAC address"));
    }
    Ok(m)
}

fn check_vni(field: &str, vni: u32) -> Result<(), String> {
    if vni == 0 || vni > MAX_VNI {
        return Err(format!("{field}: {vni} is out of range; a VNI is 1 to {MAX_VNI}"));
    }
    Ok(())
}

pub(crate) fn check_unicast(field: &str, ip: Ipv4Addr) -> Result<(), String> {
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(format!("{field}: {ip} is not a unicast address"));
    }
    Ok(())
}

/// A network's gateway addresses, checked: each a host address inside its prefix, at
/// most one per family.
pub fn parse_gateway(list: &[String]) -> Result<GatewayAddrs, String> {
    let mut g = GatewayAddrs::default();
    for s in list {
        let bad = |e: &dyn std::fmt::Display| {
            format!("gateway: {s:?} is not IP/LEN ({e}); write it as 10.1.0.254/24 or fd00:1::fe/64")
        };
        if !s.contains('/') {
            return Err(bad(&"no prefix length"));
        }
        let net: IpNetwork = s.parse().map_err(|e| bad(&e))?;
        let (ip, len) = (net.ip(), net.prefix());
        // A /31 or /127 (point-to-point) has no network or broadcast address to avoid.
        let unusable = ip.is_loopback() || ip.is_multicast() || ip.is_unspecified();
        let unusable = unusable
            || match net {
                IpNetwork::V4(n) => len < 31 && (n.ip() == n.network() || n.ip() == n.broadcast()),
                IpNetwork::V6(n) => len < 127 && n.ip() == n.network(),
            };
        if unusable || len == 0 {
            return Err(format!("gateway: {s} is not a host address inside a subnet"));
        }
        let dup = match ip {
            std::net::IpAddr::V4(a) => g.v4.replace(u32::from(a)).is_some(),
            std::net::IpAddr::V6(a) => g.v6.replace(u128::from(a)).is_some(),
        };
        if dup {
            return Err(format!("gateway: {s}: a network has at most one IPv4 and one IPv6 gateway"));
        }
    }
    Ok(g)
}

/// The gateway of a network whose spec was checked when it was added.
fn gateway_addrs(n: &NetworkSpec) -> GatewayAddrs {
    parse_gateway(&n.gateway).unwrap_or_default()
}

/// A masquerading network's IPv4 subnet mask.
fn snat_mask(n: &NetworkSpec) -> Option<u32> {
    let v4 = n.gateway.iter().filter_map(|g| g.parse::<IpNetwork>().ok()).find(|g| g.is_ipv4())?;
    n.snat.then(|| u32::MAX.checked_shl(32 - v4.prefix() as u32).unwrap_or(0))
}

/// A masquerading network's IPv6 prefix mask (its IPv6 gateway's).
fn snat_mask6(n: &NetworkSpec) -> Option<u128> {
    let v6 = n.gateway.iter().filter_map(|g| g.parse::<IpNetwork>().ok()).find(|g| g.is_ipv6())?;
    n.snat.then(|| u128::MAX.checked_shl(128 - v6.prefix() as u32).unwrap_or(0))
}

impl Overlay {
    /// A copy of the configuration and runtime state without the compiled shards: what
    /// compiling from scratch starts from (the property tests' oracle).
    #[cfg(test)]
    pub(crate) fn clone_config(&self) -> Overlay {
        Overlay {
            networks: self.networks.clone(),
            vtep: self.vtep.clone(),
            fib: self.fib.clone(),
            neighbours: self.neighbours.clone(),
            learned: self.learned.clone(),
            from_cluster: self.from_cluster.clone(),
            cluster_flood: self.cluster_flood.clone(),
            learned_per_vni: self.learned_per_vni.clone(),
            refused: self.refused.clone(),
            moves: self.moves.clone(),
            arp: self.arp.clone(),
            shards: HashMap::new(),
            stale: HashMap::new(),
            shard_ports: Vec::new(),
            vtep_refs: self.vtep_refs.clone(),
            egress_wanted: self.egress_wanted,
            endpoint_vteps: self.endpoint_vteps.clone(),
            wanted: self.wanted.clone(),
            wanted6: self.wanted6.clone(),
            nd: self.nd.clone(),
            announce_vtep: self.announce_vtep,
            announced: None,
        }
    }

    /// Takes `new`'s configuration, keeping what was learned and resolved where it still
    /// applies (learned MACs of networks that remain).
    pub fn adopt_config(&mut self, new: Overlay) {
        self.networks = new.networks;
        self.vtep = new.vtep;
        self.fib = new.fib;
        self.drop_shards();
        self.neighbours = new.neighbours;
        let gone: Vec<_> = self.learned.keys().filter(|(v, _)| !self.networks.contains_key(v)).copied().collect();
        for k in gone {
            self.forget(k);
        }
        self.vtep_refs = self.recount_vteps();
        let nets = &self.networks;
        self.learned_per_vni.retain(|v, _| nets.contains_key(v));
        self.refused.retain(|v, _| nets.contains_key(v));
        self.moves.retain(|v, _| nets.contains_key(v));
    }

    /// Loads the persisted part, trusting it was validated when it was accepted.
    pub fn restore(
        &mut self,
        networks: Vec<NetworkSpec>,
        vtep: Option<VtepSpec>,
        fib: Vec<FibSpec>,
        neigh: Vec<NeighSpec>,
    ) {
        for n in networks {
            self.networks.insert(n.vni, n);
        }
        if let Some(spec) = vtep {
            match Self::parse_vtep(&spec).and_then(|(net, mac)| Ok((net, mac, ipv6::parse_host6(&spec)?))) {
                Ok((net, mac, net6)) => self.vtep = Some(VtepConf { spec, net, mac, net6 }),
                Err(e) => tracing::error!("the saved VTEP is not valid and was not restored: {e}"),
            }
        }
        for f in fib {
            if let Ok(mac) = f.mac.parse() {
                self.put_static(mac, f);
            }
        }
        for n in neigh {
            if let Ok(mac) = n.mac.parse() {
                self.neighbours.insert(n.ip, mac);
            }
        }
    }

    /// The persisted part, in the desired-state file's order.
    pub fn desired(&self) -> (Vec<NetworkSpec>, Option<VtepSpec>, Vec<FibSpec>, Vec<NeighSpec>) {
        (
            self.networks.values().cloned().collect(),
            self.vtep.as_ref().map(|v| v.spec.clone()),
            self.fib.values().cloned().collect(),
            self.neighbours.iter().map(|(ip, mac)| NeighSpec { ip: *ip, mac: mac.to_string() }).collect(),
        )
    }

    pub fn has_network(&self, vni: u32) -> bool {
        self.networks.contains_key(&vni)
    }

    /// Network `vni`'s gateway addresses (none if it has no gateway, or no network).
    pub fn gateway_of(&self, vni: u32) -> GatewayAddrs {
        self.networks.get(&vni).map(gateway_addrs).unwrap_or_default()
    }

    /// Network `vni`'s gateway addresses with their subnets.
    pub fn gateway_subnets(&self, vni: u32) -> Vec<IpNetwork> {
        let Some(n) = self.networks.get(&vni) else { return Vec::new() };
        n.gateway.iter().filter_map(|g| g.parse().ok()).collect()
    }

    /// Checks what a port spec says about roles against the overlay.
    pub fn check_port(&self, spec: &PortSpec, ports: &[PortRef]) -> Result<(), String> {
        match (spec.role, spec.vni) {
            (Some(PortRole::Vm), Some(vni)) => {
                check_vni("vni", vni)?;
                if !self.has_network(vni) {
                    return Err(format!(
                        "vni: network {vni} does not exist; add it first: vswitchctl network add {vni}"
                    ));
                }
            }
            (Some(PortRole::Vm), None) => return Err("vni: a VM port needs --vni".into()),
            (Some(PortRole::Uplink), Some(_)) => {
                return Err("vni: an uplink carries every VNI; give --vni only to VM ports".into())
            }
            (Some(PortRole::Uplink), None) => {
                if let Some(u) = ports.iter().find(|p| p.role == Some(PortRole::Uplink)) {
                    return Err(format!("role: port {:?} is already the uplink; there is one uplink", u.name));
                }
            }
            (None, Some(_)) => return Err("vni: only a VM port (--role vm) belongs to a VNI".into()),
            (None, None) => {}
        }
        Ok(())
    }

    /// Why `name` cannot be deleted now, if anything holds on to it.
    pub fn port_in_use(&self, name: &str) -> Option<String> {
        if self.vtep.as_ref().is_some_and(|v| v.spec.uplink == name) {
            return Some(format!("port {name:?} is the VTEP's uplink; change the VTEP first (vswitchctl vtep set)"));
        }
        if let Some(f) = self.fib.values().find(|f| f.port.as_deref() == Some(name)) {
            return Some(format!(
                "port {name:?} has static FIB entries (e.g. {} in VNI {}); delete them first: vswitchctl fib del {} {}",
                f.mac, f.vni, f.vni, f.mac
            ));
        }
        None
    }

    /// Forgets what was learned on a port id that is going away.
    pub fn port_removed(&mut self, id: PortId) {
        let gone: Vec<_> =
            self.learned.iter().filter(|(_, l)| l.target == FibTarget::Port(id)).map(|(k, _)| *k).collect();
        for k in gone {
            self.forget(k);
        }
    }

    /// Adds or replaces a static entry.
    fn put_static(&mut self, mac: Mac, spec: FibSpec) {
        self.touch(spec.vni, mac);
        self.count_vtep(spec.vtep, true);
        if let Some(old) = self.fib.insert((spec.vni, mac), spec) {
            self.count_vtep(old.vtep, false);
        }
    }

    fn forget(&mut self, key: (u32, Mac)) {
        if let Some(l) = self.learned.remove(&key) {
            self.touch(key.0, key.1);
            self.count_vtep(fib::vtep_of(l.target), false);
            if let Some(c) = self.learned_per_vni.get_mut(&key.0) {
                *c = c.saturating_sub(1);
            }
        }
    }

    pub fn network_add(&mut self, spec: NetworkSpec) -> Result<(), String> {
        check_vni("vni", spec.vni)?;
        if self.networks.contains_key(&spec.vni) {
            return Err(format!("vni: network {} already exists", spec.vni));
        }
        if let Some(n) = &spec.name {
            if n.is_empty() || n.len() > 64 || n.chars().any(char::is_control) {
                return Err(format!("name: {n:?} must be 1 to 64 printable characters"));
            }
        }
        if let Some(m) = spec.max_macs {
            if m == 0 || m > 1_000_000 {
                return Err(format!("max_macs: {m} is out of range; give 1 to 1000000"));
            }
        }
        if let Some(a) = spec.aging {
            if !(10..=86_400).contains(&a) {
                return Err(format!("aging: {a} s is out of range; give 10 to 86400 seconds"));
            }
        }
        for ip in &spec.flood_vteps {
            check_unicast("flood_vteps", *ip)?;
        }
        let gateway = parse_gateway(&spec.gateway)?;
        if spec.snat && !gateway.is_some() {
            return Err(format!(
                "snat: network {} has no gateway for its VMs to route through; add one: --gateway IP/LEN",
                spec.vni
            ));
        }
        self.networks.insert(spec.vni, spec);
        Ok(())
    }

    /// A packet beyond the uplink for `ip` found no next hop: if `ip` is on the VTEP's
    /// subnet, it is resolved from now on (the router, off it, already is).
    pub fn want(&mut self, ip: Ipv4Addr) {
        let on_link = self.vtep.as_ref().is_some_and(|v| v.net.contains(ip) && ip != v.net.ip());
        if on_link && self.wanted.len() < MAX_WANTED {
            self.wanted.insert(ip);
        }
    }

    /// Whether some network masquerades.
    pub fn masquerades(&self) -> bool {
        self.networks.values().any(|n| n.snat)
    }

    pub fn network_del(&mut self, vni: u32, ports: &[PortRef]) -> Result<(), String> {
        if !self.networks.contains_key(&vni) {
            return Err(format!("vni: no network {vni}"));
        }
        let members: Vec<&str> = ports.iter().filter(|p| p.vni == Some(vni)).map(|p| p.name.as_str()).collect();
        if !members.is_empty() {
            return Err(format!("network {vni} still has ports ({}); delete them first", members.join(", ")));
        }
        if self.has_static_fib(vni) {
            return Err(format!("network {vni} has static FIB entries; delete them first (vswitchctl fib list {vni})"));
        }
        self.networks.remove(&vni);
        let gone: Vec<_> = self.learned.range((vni, MAC_FIRST)..=(vni, MAC_LAST)).map(|(k, _)| *k).collect();
        for k in gone {
            self.forget(k);
        }
        self.learned_per_vni.remove(&vni);
        Ok(())
    }

    pub fn add_vtep(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), String> {
        check_unicast("ip", ip)?;
        if self.vtep.as_ref().is_some_and(|v| v.net.ip() == ip) {
            return Err(format!("ip: {ip} is our own VTEP"));
        }
        let net = self.networks.get_mut(&vni).ok_or_else(|| format!("vni: no network {vni}"))?;
        if net.flood_vteps.contains(&ip) {
            return Err(format!("ip: {ip} is already in the flood list of network {vni}"));
        }
        if net.flood_vteps.len() >= 1024 {
            return Err(format!("network {vni} already floods to 1024 VTEPs"));
        }
        net.flood_vteps.push(ip);
        Ok(())
    }

    pub fn del_vtep(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), String> {
        let net = self.networks.get_mut(&vni).ok_or_else(|| format!("vni: no network {vni}"))?;
        let before = net.flood_vteps.len();
        net.flood_vteps.retain(|x| *x != ip);
        if net.flood_vteps.len() == before {
            return Err(format!("ip: {ip} is not in the flood list of network {vni}"));
        }
        Ok(())
    }

    fn parse_vtep(spec: &VtepSpec) -> Result<(Ipv4Network, Option<Mac>), String> {
        let net: Ipv4Network = spec.ip.parse().map_err(|e| {
            format!("ip: {:?} is not an IPv4 address with prefix length (e.g. 192.168.50.1/24): {e}", spec.ip)
        })?;
        if !spec.ip.contains('/') {
            return Err(format!("ip: {:?} needs a prefix length, e.g. {}/24", spec.ip, spec.ip));
        }
        check_unicast("ip", net.ip())?;
        if net.prefix() < 32 && (net.ip() == net.network() || net.ip() == net.broadcast()) {
            return Err(format!("ip: {} is the network or broadcast address of {net}", net.ip()));
        }
        let mac = spec.mac.as_deref().map(|m| parse_mac("mac", m)).transpose()?;
        if let Some(gw) = spec.gateway {
            check_unicast("gateway", gw)?;
            if !net.contains(gw) || gw == net.ip() {
                return Err(format!("gateway: {gw} must be another address inside {net}"));
            }
        }
        if spec.udp_port == Some(0) {
            return Err("udp_port: 0 is not a port; the VXLAN default is 4789".into());
        }
        if spec.ttl == Some(0) {
            return Err("ttl: give 1 to 255".into());
        }
        Ok((net, mac))
    }

    pub fn vtep_set(&mut self, spec: VtepSpec, ports: &[PortRef]) -> Result<(), String> {
        let (net, mac) = Self::parse_vtep(&spec)?;
        let net6 = ipv6::parse_host6(&spec)?;
        let uplink = ports.iter().find(|p| p.name == spec.uplink).ok_or_else(|| {
            format!(
                "uplink: no port named {:?}; add it with: vswitchctl port add NAME DEVARGS --role uplink",
                spec.uplink
            )
        })?;
        if uplink.role != Some(PortRole::Uplink) {
            return Err(format!(
                "uplink: port {:?} is not an uplink (it was added without --role uplink)",
                spec.uplink
            ));
        }
        self.vtep = Some(VtepConf { spec, net, mac, net6 });
        Ok(())
    }

    pub fn neigh_add(&mut self, spec: NeighSpec) -> Result<(), String> {
        check_unicast("ip", spec.ip)?;
        let mac = parse_mac("mac", &spec.mac)?;
        self.neighbours.insert(spec.ip, mac);
        Ok(())
    }

    pub fn neigh_del(&mut self, ip: Ipv4Addr) -> Result<(), String> {
        self.neighbours.remove(&ip).map(|_| ()).ok_or_else(|| format!("ip: no static neighbour {ip}"))
    }

    pub fn fib_add(&mut self, spec: FibSpec, ports: &[PortRef]) -> Result<(), String> {
        check_vni("vni", spec.vni)?;
        if !self.has_network(spec.vni) {
            return Err(format!("vni: no network {}", spec.vni));
        }
        let mac = parse_mac("mac", &spec.mac)?;
        match (&spec.port, spec.vtep) {
            (Some(name), None) => {
                let p =
                    ports.iter().find(|p| &p.name == name).ok_or_else(|| format!("port: no port named {name:?}"))?;
                if p.role != Some(PortRole::Vm) || p.vni != Some(spec.vni) {
                    return Err(format!("port: {name:?} is not a VM port of network {}", spec.vni));
                }
            }
            (None, Some(ip)) => {
                check_unicast("vtep", ip)?;
                if self.vtep.as_ref().is_some_and(|v| v.net.ip() == ip) {
                    return Err(format!("vtep: {ip} is our own VTEP; use --port for local MACs"));
                }
            }
            _ => return Err("give exactly one of --port NAME or --vtep IP".into()),
        }
        let spec = FibSpec { mac: mac.to_string(), ..spec };
        self.put_static(mac, spec);
        Ok(())
    }

    pub fn fib_del(&mut self, vni: u32, mac: &str) -> Result<(), String> {
        let m: Mac = mac.parse().map_err(|e| format!("mac: {e}"))?;
        if let Some(old) = self.fib.remove(&(vni, m)) {
            self.touch(vni, m);
            self.count_vtep(old.vtep, false);
            return Ok(());
        }
        if self.learned.contains_key(&(vni, m)) {
            self.forget((vni, m));
            return Ok(());
        }
        Err(format!("no FIB entry for {m} in VNI {vni}"))
    }

    /// Applies what a core learned. Returns true if the tables changed.
    pub fn learn(&mut self, ev: LearnEvent, ports: &[PortRef], now: Instant) -> bool {
        let Some(net) = self.networks.get(&ev.vni) else { return false };
        let key = (ev.vni, ev.mac);
        if self.fib.contains_key(&key) || self.from_cluster.contains_key(&key) {
            return false; // static entries and the cluster's win
        }
        if let FibTarget::Port(id) = ev.target {
            // Only a running VM port of this VNI is a place a MAC can live.
            if !ports.iter().any(|p| p.id == Some(id) && p.vni == Some(ev.vni)) {
                return false;
            }
        }
        if let Some(l) = self.learned.get_mut(&key) {
            l.last_seen = now;
            if l.target == ev.target {
                return false;
            }
            let old = std::mem::replace(&mut l.target, ev.target);
            *self.moves.entry(ev.vni).or_default() += 1;
            self.touch(ev.vni, ev.mac);
            self.count_vtep(fib::vtep_of(old), false);
            self.count_vtep(fib::vtep_of(ev.target), true);
            return true;
        }
        let count = self.learned_per_vni.entry(ev.vni).or_default();
        if *count >= net.max_macs.unwrap_or(DEFAULT_MAX_MACS) as usize {
            *self.refused.entry(ev.vni).or_default() += 1;
            return false;
        }
        *count += 1;
        self.learned.insert(key, Learned { target: ev.target, last_seen: now });
        self.touch(ev.vni, ev.mac);
        self.count_vtep(fib::vtep_of(ev.target), true);
        true
    }

    /// Forgets learned MACs silent for longer than their network's aging time.
    pub fn age(&mut self, now: Instant) -> bool {
        let aging: HashMap<u32, Duration> = self
            .networks
            .values()
            .map(|n| (n.vni, Duration::from_secs(n.aging.unwrap_or(DEFAULT_AGING) as u64)))
            .collect();
        let old: Vec<_> = self
            .learned
            .iter()
            .filter(|((vni, _), l)| aging.get(vni).is_none_or(|a| now.duration_since(l.last_seen) > *a))
            .map(|(k, _)| *k)
            .collect();
        let changed = !old.is_empty();
        for k in old {
            self.forget(k);
        }
        changed
    }

    /// The underlay next hop toward a remote VTEP.
    fn nexthop(&self, remote: Ipv4Addr) -> Option<Ipv4Addr> {
        let v = self.vtep.as_ref()?;
        if v.net.contains(remote) {
            Some(remote)
        } else {
            v.spec.gateway
        }
    }

    /// The underlay as egress reads it: static neighbours and resolved ARP entries.
    fn underlay(&self) -> Underlay {
        let Some(v) = &self.vtep else { return Underlay::default() };
        let resolved = self.arp.iter().filter_map(|(ip, e)| Some((*ip, e.mac?)));
        let statics = self.neighbours.iter().map(|(ip, mac)| (*ip, *mac));
        let neighbours = resolved.chain(statics).map(|(ip, mac)| (u32::from(ip), mac)).collect();
        let mut u = Underlay {
            net: u32::from(v.net.network()),
            mask: u32::from(v.net.mask()),
            router: v.spec.gateway.map(u32::from),
            neighbours,
            ..Default::default()
        };
        self.underlay6(&mut u);
        u
    }

    fn nexthop_mac(&self, nh: Ipv4Addr) -> Option<Mac> {
        self.neighbours.get(&nh).copied().or_else(|| self.arp.get(&nh).and_then(|e| e.mac))
    }

    /// The VTEP as the cores see it, if its uplink is running.
    fn vtep_tables(&self, ports: &[PortRef]) -> Option<Vtep> {
        let v = self.vtep.as_ref()?;
        let up = ports.iter().find(|p| p.name == v.spec.uplink && p.role == Some(PortRole::Uplink))?;
        Some(Vtep {
            ip: u32::from(v.net.ip()),
            mac: v.mac.unwrap_or(up.mac),
            uplink: up.id?,
            udp_port: v.spec.udp_port.unwrap_or(pipelines::wire::vxlan::DEFAULT_UDP_PORT),
            ttl: v.spec.ttl.unwrap_or(64),
            mtu: up.mtu,
        })
    }

    /// The tables for the next snapshot. Networks whose FIB entries did not change since
    /// the last call share their shard with it.
    pub fn compile(&mut self, ports: &[PortRef], max_ports: usize) -> L2Tables {
        let mut t = L2Tables { port_mtu: vec![1500; max_ports], ..Default::default() };
        for p in ports {
            if let Some(id) = p.id {
                if let Some(m) = t.port_mtu.get_mut(id as usize) {
                    *m = p.mtu;
                }
            }
        }
        for n in self.networks.values() {
            let local = ports.iter().filter(|p| p.vni == Some(n.vni)).filter_map(|p| p.id).collect();
            let mut flood: Vec<u32> = n.flood_vteps.iter().map(|ip| u32::from(*ip)).collect();
            for ip in self.cluster_flood.get(&n.vni).into_iter().flatten() {
                if !n.flood_vteps.contains(ip) {
                    flood.push(u32::from(*ip));
                }
            }
            t.networks.insert(
                n.vni,
                Network {
                    vni: n.vni,
                    ports: local,
                    flood_vteps: flood,
                    gateway: gateway_addrs(n),
                    snat: snat_mask(n),
                    snat6: snat_mask6(n),
                },
            );
        }
        let sig: Vec<(String, Option<PortId>)> = ports.iter().map(|p| (p.name.clone(), p.id)).collect();
        if sig != self.shard_ports {
            // Static entries name ports: resolve them all again.
            self.drop_shards();
            self.shard_ports = sig;
        }
        t.fib.extend(self.fib_shards(ports));
        t.vtep = self.vtep_tables(ports);
        t.underlay = Arc::new(self.underlay());
        if let Some(v) = &t.vtep {
            for ip in self.remote_vteps() {
                if let Some(mac) = self.nexthop(ip).and_then(|nh| self.nexthop_mac(nh)) {
                    t.remotes.insert(u32::from(ip), Remote::new(v, u32::from(ip), mac));
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests;
