//! What the plugin's requests do to the switch: an attachment touches ports, the
//! endpoint table and leases at once, so it is handled beside the core's own port
//! requests, all or nothing.
use super::{
    api::*,
    host_iface,
    ipam::{Ask, Leases, Reuse, DEFAULT_HOLD_SECS},
    link::{self, Plumb},
    unix_now, HOST_PREFIX,
};
use crate::{
    acl::api::{AclRequest, AclRuleSpec},
    conntrack::api::{CtRequest, StatefulSpec},
    endpoints::api::{EndpointRequest, EndpointSpec},
    feature::Ctx,
    ports::{api::*, Port},
    qos::api::{MeterSpec, QosRequest, QosSpec},
    services::api::{ServiceRequest, ServiceSpec},
    store::change::Change,
    switch::{to_value, Reply, Switch},
};
use ipnetwork::IpNetwork;
use pipelines::{services::maglev::fnv1a, wire::Mac};
use serde_json::json;
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

/// Per subnet an ADD leases from: the addresses other nodes hold, where the store was
/// asked (only expired addresses were left in this node's blocks).
type HeldElsewhere = BTreeMap<IpNetwork, BTreeSet<IpAddr>>;

/// What an ADD did so far, for `take_back_add`.
#[derive(Default)]
struct Undo {
    /// The leases before it.
    leases: Option<Leases>,
    veth: bool,
    port: bool,
    rule_ids: Vec<u32>,
}

/// The service that maps host port `host_port` to container port `port`'s.
fn mapping_name(port: &str, proto: &str, host_port: u16) -> String {
    format!("{port}-{}-{host_port}", if proto.is_empty() { "tcp" } else { proto })
}

/// Whether service `name` is one of `port`'s host port mappings.
pub(crate) fn is_mapping_of(name: &str, port: &str) -> bool {
    name.strip_prefix(port).is_some_and(|rest| rest.starts_with('-'))
}

/// A container's MTU on a network unless its config says: a VXLAN frame's room.
pub const DEFAULT_MTU: u16 = 1450;

/// The MAC a workload gets unless it asks: locally administered, from its identity, so
/// it keeps it across re-creation too.
fn derived_mac(vni: u32, identity: &str) -> Mac {
    let b = fnv1a(vni.to_be_bytes().into_iter().chain(identity.bytes())).to_be_bytes();
    Mac([0x0a, b[1], b[2], b[3], b[4], b[5]])
}

fn check_name(field: &str, v: &str, max: usize) -> Result<(), String> {
    if v.is_empty() || v.len() > max || v.contains(['/', '\0']) {
        return Err(format!("{field}: {v:?} must be 1 to {max} characters, without '/'"));
    }
    Ok(())
}

impl Switch {
    pub(crate) async fn cni_request(&mut self, req: CniRequest) -> Reply {
        match req {
            CniRequest::CniAdd(a) => self.cni_add(a).await.map(|r| to_value(&r)),
            CniRequest::CniDel(k) => self.cni_del(&k).await.map(|()| serde_json::Value::Null),
            CniRequest::CniCheck(k) => self.cni_check(&k).await.map(|r| to_value(&r)),
            CniRequest::CniGc { network, valid } => self.cni_gc(&network, &valid).await.map(|r| to_value(&r)),
            CniRequest::CniList => Ok(to_value(&self.cni.attachments.values().collect::<Vec<_>>())),
            CniRequest::IpamList { vni } => Ok(to_value(&self.cni.lease_views(vni))),
            CniRequest::IpamRelease { vni, ip } => {
                let l = self.cni.leases.release(vni, ip)?;
                self.changed([Change::del("leases", json!([vni, ip.to_string()]))]);
                Ok(to_value(&l))
            }
        }
    }

    fn result_of(a: &AttachmentSpec, host_mac: Mac) -> AttachResult {
        AttachResult {
            host_iface: a.port.clone(),
            host_mac: host_mac.to_string(),
            ifname: a.ifname.clone(),
            mac: a.mac.clone(),
            netns: a.netns.clone(),
            mtu: a.mtu,
            ips: a.ips.clone(),
            routes: a.routes.clone(),
        }
    }

    /// The host end's MAC as the kernel has it now.
    async fn host_mac(&mut self, name: &str) -> Mac {
        match self.cni.netlink() {
            Ok(h) => link::mac_of_iface(&h, name).await.ok().flatten().unwrap_or_default(),
            Err(_) => Mac::default(),
        }
    }

    async fn cni_add(&mut self, mut req: AttachRequest) -> Result<AttachResult, String> {
        let key = req.key.clone();
        check_name("network", &key.network, 256)?;
        check_name("container", &key.container, 256)?;
        check_name("ifname", &key.ifname, 15)?;
        if req.netns.is_empty() {
            return Err("netns: the container's network namespace is needed for ADD".into());
        }
        if let Some(a) = self.cni.attachments.get(&key) {
            if a.netns == req.netns {
                let a = a.clone();
                return Ok(Self::result_of(&a, self.host_mac(&a.port).await));
            }
            return Err(format!(
                "container {} already has {} on network {:?}, in {}",
                key.container, key.ifname, key.network, a.netns
            ));
        }
        let vni = req.vni;
        if !self.features.overlay.has_network(vni) {
            return Err(format!(
                "vni: network {vni} does not exist on this switch; add it first (vswitchctl network add {vni} --gateway IP/LEN)"
            ));
        }
        let port = host_iface(&key);
        if self.ports.find(&port).is_some() {
            return Err(format!("port {port} exists already (another attachment hashed to the same name)"));
        }
        self.follow_identity(&mut req).await?;
        let asked_mac = match &req.mac {
            Some(m) => {
                let mac: Mac = m.parse().map_err(|e| format!("mac: {e}"))?;
                if mac.is_multicast() || mac.is_zero() {
                    return Err(format!("mac: {mac} is not a unicast MAC address"));
                }
                Some(mac)
            }
            None => None,
        };
        let held_elsewhere = self.ensure_blocks(&req).await?;
        let netlink = self.cni.netlink()?;
        let mut undo = Undo { leases: Some(self.cni.leases.clone()), ..Undo::default() };
        match self.attach(&req, &port, asked_mac, &held_elsewhere, &netlink, &mut undo).await {
            Ok((a, host_mac, changes)) => {
                self.changed(changes);
                self.cni.attachments.insert(key, a.clone());
                tracing::info!("container {} attached as {} ({}) to network {vni}", a.container, a.ifname, a.port);
                Ok(Self::result_of(&a, host_mac))
            }
            Err(e) => {
                self.take_back_add(vni, &port, undo, &netlink).await;
                Err(e)
            }
        }
    }

    /// ADD's steps, each noting in `undo` what to take back if a later one fails:
    /// addresses, veth, port, endpoints, policy. Returns the attachment, the host
    /// end's MAC and the journal records.
    async fn attach(
        &mut self,
        req: &AttachRequest,
        port: &str,
        asked_mac: Option<Mac>,
        held_elsewhere: &HeldElsewhere,
        netlink: &rtnetlink::Handle,
        undo: &mut Undo,
    ) -> Result<(AttachmentSpec, Mac, Vec<Change>), String> {
        let (key, vni) = (&req.key, req.vni);
        let (ips, routes, mac, lease_changes) = self.addresses(req, asked_mac, held_elsewhere)?;
        let mut addrs = Vec::new();
        for ip in &ips {
            let n = ip.address.parse::<IpNetwork>().map_err(|e| format!("address {:?}: {e}", ip.address))?;
            if self.features.endpoints.holds(vni, n.ip()) {
                return Err(format!("address {}: network {vni} has an endpoint with it already", ip.address));
            }
            addrs.push(n.ip());
        }
        let mtu = req.mtu.unwrap_or(DEFAULT_MTU);
        let spec = PortSpec {
            name: port.to_string(),
            devargs: format!("kernel:iface={port},backend=packet"),
            queues: None,
            cores: None,
            mtu: Some(mtu),
            role: Some(PortRole::Vm),
            vni: Some(vni),
            admin: Default::default(),
        };
        self.check_spec(&spec)?;

        let plumb = Plumb { netns: &req.netns, host: port, ifname: &key.ifname, mac, mtu, ips: &ips, routes: &routes };
        let started = std::time::Instant::now();
        let host_mac = link::plumb(netlink, &plumb).await?;
        undo.veth = true;
        let plumbed = started.elapsed();
        let run = self.ports.bring_up(&spec).map_err(|e| format!("attaching the switch to {port}: {e}"))?;
        self.ports.list.push(Port { spec: spec.clone(), run: Ok(run) });
        undo.port = true;
        // A slow ADD is logged whole by the switch, and its plumbing step by step by `plumb`.
        tracing::debug!(
            "ADD {}: veth and namespace {plumbed:?}, port {:?}",
            key.container,
            started.elapsed() - plumbed
        );

        // The container's addresses go into the endpoint table: ARP for them is
        // answered here, and the gateway routes to them, from the first packet.
        let mut changes = vec![Change::put("ports", &spec)];
        let refs = self.ports.refs();
        let ctx =
            Ctx { ports: &refs, has_network: &|v| v == vni, vtep_ip: self.features.overlay.vtep_ip(), shared: None };
        for ip in &addrs {
            let e = EndpointSpec {
                vni,
                ip: *ip,
                mac: mac.to_string(),
                port: Some(port.to_string()),
                vtep: None,
                container: Some(key.container.clone()),
                netns: Some(req.netns.clone()),
            };
            let h = self
                .features
                .endpoints
                .handle(EndpointRequest::EndpointAdd(e), &ctx)
                .map_err(|e| format!("address {ip}: {e}"))?;
            changes.extend(h.changes);
        }
        self.cni_policy(req, port, &addrs, &mut changes, &mut undo.rule_ids)?;
        let a = AttachmentSpec {
            network: key.network.clone(),
            container: key.container.clone(),
            ifname: key.ifname.clone(),
            netns: req.netns.clone(),
            identity: req.identity.clone(),
            vni,
            port: port.to_string(),
            mac: mac.to_string(),
            mtu,
            ips,
            routes,
            leased: matches!(req.ipam, Ipam::Vswitch { .. }),
        };
        changes.push(Change::put("attachments", &a));
        changes.extend(lease_changes);
        Ok((a, host_mac, changes))
    }

    /// The subnets the built-in IPAM leases from in network `vni`: the CNI config's,
    /// else the network's gateway subnets.
    fn lease_subnets(&self, vni: u32, subnets: &[String]) -> Result<Vec<IpNetwork>, String> {
        let nets: Vec<IpNetwork> = if subnets.is_empty() {
            let gateways = self.features.overlay.gateway_subnets(vni);
            gateways.iter().map(|g| IpNetwork::new(g.network(), g.prefix()).expect("a valid prefix")).collect()
        } else {
            subnets
                .iter()
                .map(|s| s.parse::<IpNetwork>().map_err(|e| format!("ipam subnet {s:?}: {e}")))
                .collect::<Result<_, _>>()?
        };
        if nets.is_empty() {
            return Err(format!(
                "network {vni} has no gateway subnet to lease addresses from: give it one \
                 (vswitchctl network add {vni} --gateway IP/LEN) or set ipam.subnet in the CNI config"
            ));
        }
        Ok(nets)
    }

    /// In a cluster, makes sure this node holds an address block with room in each
    /// subnet a new address is to come from: claimed in the store now if it has none
    /// with room (one store round trip, no other node's), and the next one claimed in
    /// the background once room runs low, so that ADDs during a store outage still find
    /// addresses. Where only expired addresses are left, the store is asked which of
    /// them other nodes hold (workloads that moved on keep theirs); those are not room.
    async fn ensure_blocks(&mut self, req: &AttachRequest) -> Result<HeldElsewhere, String> {
        let mut held_elsewhere = HeldElsewhere::new();
        let (Some(_), Ipam::Vswitch { want, subnets, .. }) = (&self.cni.blocks, &req.ipam) else {
            return Ok(held_elsewhere);
        };
        let vni = req.vni;
        for net in self.lease_subnets(vni, subnets)? {
            if want.iter().any(|w| net.contains(*w)) || self.cni.leases.of_identity(vni, net, &req.identity).is_some() {
                continue; // its own address: no new one
            }
            let mut room = self.block_room(vni, net, Reuse::NotHeldElsewhere(None));
            if room == 0 && self.block_room(vni, net, Reuse::Any) > 0 {
                match self.cluster.addresses_held_elsewhere(vni).await {
                    Ok(held) => {
                        room = self.block_room(vni, net, Reuse::NotHeldElsewhere(Some(&held)));
                        held_elsewhere.insert(net, held);
                    }
                    Err(e) => tracing::info!(
                        "network {vni}: only expired addresses are left in this node's blocks of {net}, and which \
                         of them other nodes hold is not known ({e}): none is given again until the store answers"
                    ),
                }
            }
            let size = 1usize << ((if net.is_ipv4() { 32 } else { 128 }) - super::ipam::block_prefix(net)).min(16);
            if room == 0 {
                let block = self.cluster.claim_block(vni, net).await.map_err(|e| {
                    format!("no address of subnet {net} (network {vni}) is left in this node's blocks, and {e}")
                })?;
                self.cni_add_block(vni, net, block);
            } else if room <= size / 4 {
                self.cluster.claim_block_later(vni, net);
            }
        }
        Ok(held_elsewhere)
    }

    /// In a cluster, a workload with no address here that another node holds
    /// addresses for (it ran there) asks for those: it keeps its addresses and MAC as
    /// it moves. Refused while a live node has them attached to a container.
    async fn follow_identity(&mut self, req: &mut AttachRequest) -> Result<(), String> {
        let (Some(_), Ipam::Vswitch { want, subnets, .. }) = (&self.cni.blocks, &mut req.ipam) else { return Ok(()) };
        let vni = req.vni;
        let nets = self.lease_subnets(vni, subnets)?;
        let own: Vec<_> = nets.iter().filter_map(|n| self.cni.leases.of_identity(vni, *n, &req.identity)).collect();
        if !want.is_empty() || own.iter().any(|l| l.container.is_some()) {
            return Ok(());
        }
        let Some(held) = self.cluster.lookup_identity(vni, &req.identity).await else { return Ok(()) };
        // Reserved here, but it may have moved on since.
        let ips: Vec<IpAddr> =
            held.record.ips.iter().copied().filter(|ip| nets.iter().any(|n| n.contains(*ip))).collect();
        let list = || ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        if held.record.attached && held.node_up {
            return Err(format!(
                "workload {:?} holds {} in network {vni} on node {}, attached to a container there: \
                 delete it there first (CNI DEL), or give this one another identity",
                req.identity,
                list(),
                held.node
            ));
        }
        if !ips.is_empty() && own.is_empty() {
            tracing::info!("workload {:?} moved here from node {}: it keeps {}", req.identity, held.node, list());
            *want = ips;
            if req.mac.is_none() {
                req.mac = Some(held.record.mac.clone());
            }
        }
        Ok(())
    }

    /// Free addresses of this node's blocks of `net`.
    fn block_room(&self, vni: u32, net: IpNetwork, reuse: Reuse) -> usize {
        let Some(blocks) = self.cni.blocks.as_ref().and_then(|b| b.get(&(vni, net))) else { return 0 };
        let gw = self.features.overlay.gateway_subnets(vni);
        let taken = |ip: IpAddr| gw.iter().any(|g| g.ip() == ip) || self.features.endpoints.holds(vni, ip);
        self.cni.leases.room(vni, net, blocks, &taken, reuse)
    }

    /// The cluster gave this node `block` of `net`.
    pub(crate) fn cni_add_block(&mut self, vni: u32, net: IpNetwork, block: IpNetwork) {
        if let Some(b) = self.cni.blocks.as_mut() {
            let v = b.entry((vni, net)).or_default();
            if !v.contains(&block) {
                v.push(block);
                v.sort();
            }
        }
    }

    /// The container's addresses and routes, and its MAC: leased here, or given by a
    /// delegated IPAM plugin. Returns the leases' journal records too.
    #[allow(clippy::type_complexity)]
    fn addresses(
        &mut self,
        req: &AttachRequest,
        asked_mac: Option<Mac>,
        held_elsewhere: &HeldElsewhere,
    ) -> Result<(Vec<IpConfig>, Vec<Route>, Mac, Vec<Change>), String> {
        let vni = req.vni;
        let gateways = self.features.overlay.gateway_subnets(vni);
        let (want, subnets, hold) = match &req.ipam {
            Ipam::Given { ips, routes } => {
                // A route without a gateway goes by its family's address's gateway, as
                // CNI's reference plugins read it.
                let routes = routes
                    .iter()
                    .map(|r| {
                        let v4 = r.dst.parse::<IpNetwork>().is_ok_and(|d| d.is_ipv4());
                        let gw = r.gw.or_else(|| ips.iter().filter_map(|i| i.gateway).find(|g| g.is_ipv4() == v4));
                        Route { dst: r.dst.clone(), gw }
                    })
                    .collect();
                let mac = asked_mac.unwrap_or_else(|| derived_mac(vni, &req.identity));
                return Ok((ips.clone(), routes, mac, Vec::new()));
            }
            Ipam::Vswitch { want, subnets, hold } => (want, subnets, hold),
        };
        let nets = self.lease_subnets(vni, subnets)?;
        let mac = asked_mac
            .or_else(|| nets.iter().find_map(|n| self.cni.leases.of_identity(vni, *n, &req.identity)?.mac.parse().ok()))
            .unwrap_or_else(|| derived_mac(vni, &req.identity));
        let (mut ips, mut routes, mut changes) = (Vec::new(), Vec::new(), Vec::new());
        for net in &nets {
            let gw = gateways.iter().find(|g| g.network() == net.network() && g.prefix() == net.prefix());
            let endpoints = &self.features.endpoints;
            let taken = |ip: IpAddr| gw.is_some_and(|g| g.ip() == ip) || endpoints.holds(vni, ip);
            let ask = Ask {
                vni,
                net: *net,
                identity: &req.identity,
                container: &req.key.container,
                want: want.iter().copied().find(|w| w.is_ipv4() == net.is_ipv4()),
                mac: &mac.to_string(),
                hold: hold.unwrap_or(DEFAULT_HOLD_SECS),
                now: unix_now(),
                within: self.cni.blocks.as_ref().map(|b| b.get(&(vni, *net)).map_or(&[][..], |v| v.as_slice())),
                reuse: match self.cni.blocks {
                    None => Reuse::Any,
                    Some(_) => Reuse::NotHeldElsewhere(held_elsewhere.get(net)),
                },
            };
            let (lease, gone) = self.cni.leases.lease(&ask, &taken)?;
            if let Some(g) = gone {
                changes.push(Change::del("leases", json!([g.vni, g.ip.to_string()])));
            }
            ips.push(IpConfig { address: format!("{}/{}", lease.ip, lease.len), gateway: gw.map(|g| g.ip()) });
            if let Some(g) = gw {
                let dst = if g.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
                routes.push(Route { dst: dst.into(), gw: Some(g.ip()) });
            }
            changes.push(Change::put("leases", &lease));
        }
        Ok((ips, routes, mac, changes))
    }

    /// Takes back what a failed ADD did (`undo`): nothing of it was journalled or
    /// published, so memory, the port and the veth are all there is.
    async fn take_back_add(&mut self, vni: u32, port: &str, undo: Undo, netlink: &rtnetlink::Handle) {
        if undo.port {
            self.drop_mappings(port);
            let refs = self.ports.refs();
            let ctx = Ctx { ports: &refs, has_network: &|v| v == vni, vtep_ip: None, shared: None };
            for id in undo.rule_ids {
                let _ = self.features.acl.handle(AclRequest::AclDel { id }, &ctx);
            }
            if let Some(gone) = refs.iter().find(|p| p.name == port) {
                for f in self.every_feature() {
                    f.port_removed(gone);
                }
            }
            self.ports.list.retain(|p| p.spec.name != port);
        }
        if undo.veth {
            let _ = link::unplumb(netlink, port).await;
        }
        if let Some(l) = undo.leases {
            self.cni.leases = l;
        }
    }

    /// Applies the ADD's security group, bandwidth and host port mappings to `port`,
    /// adding their journal records to `changes` and the ACL rule ids it made to
    /// `rule_ids` (mappings are found by name when taken back).
    fn cni_policy(
        &mut self,
        req: &AttachRequest,
        port: &str,
        addrs: &[IpAddr],
        changes: &mut Vec<Change>,
        rule_ids: &mut Vec<u32>,
    ) -> Result<(), String> {
        let refs = self.ports.refs();
        let vni = req.vni;
        let ctx = Ctx { ports: &refs, has_network: &|v| v == vni, vtep_ip: None, shared: None };
        if let Some(sg) = &req.security_group {
            for r in &sg.rules {
                let rule = AclRuleSpec { id: None, port: Some(port.to_string()), ..r.clone() };
                let h = self
                    .features
                    .acl
                    .handle(AclRequest::AclAdd(rule), &ctx)
                    .map_err(|e| format!("security group: {e}"))?;
                rule_ids.extend(h.reply["id"].as_u64().map(|id| id as u32));
                changes.extend(h.changes);
            }
            if let Some(action) = sg.default {
                let h = self.features.acl.handle(AclRequest::AclDefault { port: port.to_string(), action }, &ctx)?;
                changes.extend(h.changes);
            }
            if sg.stateful {
                let on = StatefulSpec {
                    port: port.to_string(),
                    on: true,
                    liberal: false,
                    sticky: false,
                    pickup: false,
                    max_sessions: None,
                };
                let h = self.features.conntrack.handle(CtRequest::AclStateful(on), &ctx)?;
                changes.extend(h.changes);
            }
        }
        if let Some(bw) = req.bandwidth.as_ref().filter(|b| b.ingress_rate.is_some() || b.egress_rate.is_some()) {
            // CNI's ingress is what the container receives: our egress toward the port.
            let meter = |rate: Option<u64>, burst: Option<u64>| {
                rate.filter(|r| *r > 0).map(|r| MeterSpec {
                    rate: format!("{}kbit", r.div_ceil(1000)),
                    burst: burst.map(|b| format!("{}b", b.div_ceil(8).max(1500))),
                    excess_burst: None,
                    peak_rate: None,
                    peak_burst: None,
                })
            };
            let q = QosSpec {
                port: port.to_string(),
                mode: None,
                ingress: meter(bw.egress_rate, bw.egress_burst),
                egress: meter(bw.ingress_rate, bw.ingress_burst),
                yellow: None,
                red: None,
                dscp: None,
            };
            let h = self.features.qos.handle(QosRequest::QosSet(q), &ctx).map_err(|e| format!("bandwidth: {e}"))?;
            changes.extend(h.changes);
        }
        let vtep_ip = self.features.overlay.vtep_ip();
        let ctx = Ctx { ports: &refs, has_network: &|v| v == vni, vtep_ip, shared: None };
        for m in &req.port_mappings {
            let proto = if m.protocol.is_empty() { "tcp".to_string() } else { m.protocol.to_lowercase() };
            if !m.host_ip.is_empty()
                && m.host_ip != "0.0.0.0"
                && vtep_ip.is_none_or(|v| m.host_ip.parse::<IpAddr>().ok() != Some(v))
            {
                return Err(format!(
                    "portMappings: hostIP {} is not this host's VTEP address; host ports are served there only",
                    m.host_ip
                ));
            }
            let ip = addrs.iter().find(|a| a.is_ipv4()).ok_or("portMappings: the container has no IPv4 address")?;
            let spec = ServiceSpec {
                name: mapping_name(port, &proto, m.host_port),
                vni,
                vip: String::new(),
                proto,
                backends: vec![format!("{ip}:{}", m.container_port)],
                algorithm: None,
                affinity: None,
                table_size: None,
                node_port: Some(m.host_port),
                external_traffic: None,
            };
            let h = self
                .features
                .services
                .handle(ServiceRequest::ServiceAdd(spec), &ctx)
                .map_err(|e| format!("portMappings (host port {}): {e}", m.host_port))?;
            changes.extend(h.changes);
        }
        Ok(())
    }

    /// Deletes the host port mappings of `port` (services named after it).
    fn drop_mappings(&mut self, port: &str) -> Vec<Change> {
        let refs = self.ports.refs();
        let ctx = Ctx { ports: &refs, has_network: &|_| true, vtep_ip: None, shared: None };
        let mut out = Vec::new();
        for name in self.features.services.names().into_iter().filter(|n| is_mapping_of(n, port)) {
            if let Ok(h) = self.features.services.handle(ServiceRequest::ServiceDel { name }, &ctx) {
                out.extend(h.changes);
            }
        }
        out
    }

    async fn cni_del(&mut self, key: &AttachmentKey) -> Result<(), String> {
        let netlink = self.cni.netlink()?;
        let Some(a) = self.cni.attachments.remove(key) else {
            // Nothing recorded; an ADD that died half way may have left the pair.
            return link::unplumb(&netlink, &host_iface(key)).await;
        };
        let mut changes =
            vec![Change::del("attachments", json!([a.network.clone(), a.container.clone(), a.ifname.clone()]))];
        if a.leased {
            for l in self.cni.leases.detach(a.vni, &a.container, unix_now()) {
                changes.push(Change::put("leases", &l));
            }
        }
        self.changed(changes);
        if self.ports.find(&a.port).is_some() {
            // The port's own rules go with it.
            let refs = self.ports.refs();
            let ctx = Ctx { ports: &refs, has_network: &|_| true, vtep_ip: None, shared: None };
            let mut gone = Vec::new();
            for id in self.features.acl.rules_of_port(&a.port) {
                if let Ok(h) = self.features.acl.handle(AclRequest::AclDel { id }, &ctx) {
                    gone.extend(h.changes);
                }
            }
            gone.extend(self.drop_mappings(&a.port));
            self.changed(gone);
            self.port_request(PortRequest::PortDel { name: a.port.clone() })?;
        }
        if let Err(e) = link::unplumb_soon(&netlink, &a.port).await {
            tracing::warn!("container {}: {e}", a.container);
        }
        tracing::info!("container {}'s {} left network {} ({})", a.container, a.ifname, a.vni, a.port);
        Ok(())
    }

    async fn cni_check(&mut self, key: &AttachmentKey) -> Result<AttachResult, String> {
        let a = self.cni.attachments.get(key).cloned().ok_or_else(|| {
            format!("no attachment of container {} ({}) on network {:?}", key.container, key.ifname, key.network)
        })?;
        match self.ports.find(&a.port).map(|p| &p.run) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("port {} is not running: {e}", a.port)),
            None => return Err(format!("port {} is gone", a.port)),
        }
        let mac: Mac = a.mac.parse().map_err(|e| format!("mac: {e}"))?;
        link::check(&a.netns, &a.ifname, mac, &a.ips).await?;
        Ok(Self::result_of(&a, self.host_mac(&a.port).await))
    }

    /// Ends the attachments of `network` the runtime no longer knows, frees leases no
    /// attachment holds, and deletes container veths nothing owns. Returns what ended.
    async fn cni_gc(&mut self, network: &str, valid: &[ValidAttachment]) -> Result<Vec<AttachmentKey>, String> {
        let gone: Vec<AttachmentKey> = self
            .cni
            .attachments
            .keys()
            .filter(|k| {
                k.network == network && !valid.iter().any(|v| v.container == k.container && v.ifname == k.ifname)
            })
            .cloned()
            .collect();
        for k in &gone {
            self.cni_del(k).await?;
        }
        let now = unix_now();
        let attached: Vec<(u32, String)> =
            self.cni.attachments.values().map(|a| (a.vni, a.container.clone())).collect();
        let mut changes = Vec::new();
        let orphans: Vec<(u32, String)> = self
            .cni
            .leases
            .by_ip
            .values()
            .filter_map(|l| Some((l.vni, l.container.clone()?)))
            .filter(|k| !attached.contains(k))
            .collect();
        for (vni, c) in orphans {
            for l in self.cni.leases.detach(vni, &c, now) {
                changes.push(Change::put("leases", &l));
            }
        }
        let expired: Vec<(u32, IpAddr)> =
            self.cni.leases.by_ip.iter().filter(|(_, l)| super::ipam::is_free(l, now)).map(|(k, _)| *k).collect();
        for (vni, ip) in expired {
            self.cni.leases.by_ip.remove(&(vni, ip));
            changes.push(Change::del("leases", json!([vni, ip.to_string()])));
        }
        self.changed(changes);
        let netlink = self.cni.netlink()?;
        for name in link::named(&netlink, HOST_PREFIX).await? {
            if self.cni.owner_of_port(&name).is_none() && self.ports.find(&name).is_none() {
                tracing::info!("deleting {name}: a container veth no attachment owns");
                link::unplumb(&netlink, &name).await?;
            }
        }
        Ok(gone)
    }

    /// Before the ports come back at start: an attachment whose veth is gone while its
    /// container's namespace is still there gets its interface built again.
    pub(crate) async fn cni_restore_links(&mut self, attachments: &[AttachmentSpec]) {
        if attachments.is_empty() {
            return;
        }
        let netlink = match self.cni.netlink() {
            Ok(h) => h,
            Err(e) => return tracing::error!("container attachments cannot be checked: {e}"),
        };
        for a in attachments {
            match link::index_of(&netlink, &a.port).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("container {}: {e}", a.container);
                    continue;
                }
            }
            if !std::path::Path::new(&a.netns).exists() {
                tracing::warn!(
                    "container {}'s namespace {} is gone: its attachment waits for the runtime's CNI DEL (or GC)",
                    a.container,
                    a.netns
                );
                continue;
            }
            let Ok(mac) = a.mac.parse::<Mac>() else { continue };
            let p = Plumb {
                netns: &a.netns,
                host: &a.port,
                ifname: &a.ifname,
                mac,
                mtu: a.mtu,
                ips: &a.ips,
                routes: &a.routes,
            };
            match link::plumb(&netlink, &p).await {
                Ok(_) => tracing::info!("container {}'s {} built again in {}", a.container, a.ifname, a.netns),
                Err(e) => tracing::error!("container {}'s interface could not be built again: {e}", a.container),
            }
        }
    }
}
