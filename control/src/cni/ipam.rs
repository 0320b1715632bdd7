//! The built-in IPAM: addresses leased to workloads by identity, so a workload deleted
//! and created again (a restarted container, a StatefulSet pod) gets its address back.
//! A lease is attached (a container holds it), reserved (its workload is gone, for the
//! lease's hold time) or expired (free, taken back only once no never-used address is
//! left).
use super::api::LeaseSpec;
use ipnetwork::IpNetwork;
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

/// How long a detached workload's address stays reserved unless the config says.
pub const DEFAULT_HOLD_SECS: u64 = 24 * 3600;
/// Addresses looked at for a free one before giving up (a /16 of IPv4).
const MAX_SCAN: u64 = 1 << 16;

#[derive(Debug, Default, Clone)]
pub struct Leases {
    pub by_ip: BTreeMap<(u32, IpAddr), LeaseSpec>,
}

/// What a workload asks of one subnet.
pub struct Ask<'a> {
    pub vni: u32,
    pub net: IpNetwork,
    pub identity: &'a str,
    pub container: &'a str,
    pub want: Option<IpAddr>,
    pub mac: &'a str,
    pub hold: u64,
    pub now: u64,
    /// In a cluster: the address blocks of `net` this node holds, the only ones a new
    /// address comes from (an asked-for or the workload's own address may be anywhere).
    pub within: Option<&'a [IpNetwork]>,
    pub reuse: Reuse<'a>,
}

/// Which expired addresses may go to another workload.
#[derive(Debug, Clone, Copy)]
pub enum Reuse<'a> {
    /// Any: on one switch an expired lease is nobody's.
    Any,
    /// In a cluster, those no other node holds, as the store said (the workload an
    /// address was leased to may live on there, having moved); none while it cannot
    /// say.
    NotHeldElsewhere(Option<&'a BTreeSet<IpAddr>>),
}

impl Reuse<'_> {
    fn allows(&self, ip: IpAddr) -> bool {
        match self {
            Reuse::Any => true,
            Reuse::NotHeldElsewhere(held) => held.is_some_and(|h| !h.contains(&ip)),
        }
    }
}

/// The prefix of the address blocks a node claims of `net` in a cluster: a sixteenth
/// of it, at least /26 for IPv4 (/122 for IPv6) and at most the whole subnet.
pub fn block_prefix(net: IpNetwork) -> u8 {
    let (floor, max) = if net.is_ipv4() { (26, 32) } else { (122, 128) };
    (net.prefix() + 4).max(floor).min(max - 2).max(net.prefix())
}

/// The blocks of `net`, lowest first (at most 4096 of them are offered).
pub fn blocks(net: IpNetwork) -> impl Iterator<Item = IpNetwork> {
    let p = block_prefix(net);
    let bits = if net.is_ipv4() { 32 } else { 128 };
    let count = 1u128.checked_shl((p - net.prefix()) as u32).unwrap_or(u128::MAX).min(4096);
    let step = 1u128.checked_shl((bits - p) as u32).unwrap_or(0);
    let (base, _) = span(net);
    (0..count).filter_map(move |i| IpNetwork::new(addr(net, base + i * step), p).ok())
}

pub fn state(l: &LeaseSpec, now: u64) -> &'static str {
    match (l.container.is_some(), l.until) {
        (true, _) => "attached",
        (false, Some(t)) if t <= now => "expired",
        _ => "reserved",
    }
}

/// Expired: free to be given to another workload.
pub fn is_free(l: &LeaseSpec, now: u64) -> bool {
    state(l, now) == "expired"
}

/// `net`'s first address as a number, and how many addresses it has.
fn span(net: IpNetwork) -> (u128, u128) {
    match net {
        IpNetwork::V4(n) => (u32::from(n.network()) as u128, 1u128 << (32 - n.prefix() as u32)),
        IpNetwork::V6(n) => (u128::from(n.network()), 1u128.checked_shl(128 - n.prefix() as u32).unwrap_or(u128::MAX)),
    }
}

/// The address `a` (a number) of `net`'s family.
fn addr(net: IpNetwork, a: u128) -> IpAddr {
    if net.is_ipv4() {
        IpAddr::V4((a as u32).into())
    } else {
        IpAddr::V6(a.into())
    }
}

/// The addresses of `net` a host may hold: not the network's own or its broadcast
/// (IPv4 below /31), not the subnet-router anycast address (IPv6).
fn hosts(net: IpNetwork) -> impl Iterator<Item = IpAddr> {
    let skip_ends = match net {
        IpNetwork::V4(n) => n.prefix() < 31,
        IpNetwork::V6(n) => n.prefix() < 127,
    };
    let (base, size) = span(net);
    let (first, last) = if skip_ends { (1, size - 1) } else { (0, size) };
    (first..last).take(MAX_SCAN as usize).map(move |i| addr(net, base + i))
}

impl Leases {
    /// The lease `identity` has in `net`, if any.
    pub fn of_identity(&self, vni: u32, net: IpNetwork, identity: &str) -> Option<&LeaseSpec> {
        self.by_ip.values().find(|l| l.vni == vni && l.identity == identity && net.contains(l.ip))
    }

    /// Gives `ask.identity` an address of `ask.net` for `ask.container`: the one it
    /// asked for, else the one it had, else the lowest never used, else the lowest
    /// expired. `taken` says which addresses others hold (the gateway, static
    /// endpoints). Returns the lease and any lease it replaced (to delete).
    pub fn lease(
        &mut self,
        ask: &Ask,
        taken: &dyn Fn(IpAddr) -> bool,
    ) -> Result<(LeaseSpec, Option<LeaseSpec>), String> {
        let Ask { vni, net, identity, container, now, .. } = *ask;
        let had = self.of_identity(vni, net, identity).cloned();
        if let Some(h) = &had {
            if let Some(c) = h.container.as_deref().filter(|c| *c != container) {
                return Err(format!(
                    "workload {identity:?} already holds {} in network {vni}, attached to container {c}; \
                     delete that attachment first (CNI DEL), or give this workload another identity",
                    h.ip
                ));
            }
        }
        let ip = match ask.want {
            Some(ip) => {
                if !net.contains(ip) || !hosts_contain(net, ip) {
                    return Err(format!("{ip} is not a host address of subnet {net} (network {vni})"));
                }
                if let Some(l) = self.by_ip.get(&(vni, ip)).filter(|l| l.identity != identity && !is_free(l, now)) {
                    return Err(match &l.container {
                        Some(c) => format!("{ip} is attached to container {c} (workload {:?})", l.identity),
                        None => format!(
                            "{ip} is reserved for workload {:?} for {} s more; free it with: vswitchctl ipam release {vni} {ip}",
                            l.identity,
                            l.until.unwrap_or(now).saturating_sub(now)
                        ),
                    });
                }
                if taken(ip) && had.as_ref().is_none_or(|h| h.ip != ip) {
                    return Err(format!("{ip} is in use in network {vni} (the gateway, or a static endpoint)"));
                }
                ip
            }
            None => match &had {
                Some(h) => h.ip,
                None => self.free(ask, taken)?,
            },
        };
        let lease = LeaseSpec {
            vni,
            ip,
            len: net.prefix(),
            identity: identity.to_string(),
            mac: ask.mac.to_string(),
            container: Some(container.to_string()),
            hold: ask.hold,
            until: None,
        };
        let replaced = match self.by_ip.insert((vni, ip), lease.clone()) {
            Some(old) if old.identity != identity => Some(old),
            _ => None,
        };
        // The workload moved to another address: its old one is no longer its.
        let moved = had.filter(|h| h.ip != ip).and_then(|h| self.by_ip.remove(&(vni, h.ip)));
        Ok((lease, replaced.or(moved)))
    }

    fn free(&self, ask: &Ask, taken: &dyn Fn(IpAddr) -> bool) -> Result<IpAddr, String> {
        let Ask { vni, net, now, within, reuse, .. } = *ask;
        let mut expired = None;
        let candidates: Box<dyn Iterator<Item = IpAddr>> = match within {
            None => Box::new(hosts(net)),
            Some(blocks) => Box::new(
                blocks.iter().flat_map(|b| ips_of(*b)).filter(move |ip| net.contains(*ip) && hosts_contain(net, *ip)),
            ),
        };
        for ip in candidates {
            if taken(ip) {
                continue;
            }
            match self.by_ip.get(&(vni, ip)) {
                None => return Ok(ip),
                Some(l) if expired.is_none() && is_free(l, now) && reuse.allows(ip) => expired = Some(ip),
                Some(_) => {}
            }
        }
        expired.ok_or_else(|| match within {
            Some(b) => {
                let b: Vec<String> = b.iter().map(|b| b.to_string()).collect();
                format!(
                    "this node's address blocks of subnet {net} (network {vni}: {}) are full",
                    if b.is_empty() { "none".into() } else { b.join(", ") }
                )
            }
            None => format!(
                "subnet {net} of network {vni} has no address left (every one is attached or reserved; \
                 vswitchctl ipam list shows them, vswitchctl ipam release frees a reserved one)"
            ),
        })
    }

    /// Addresses still free to lease in `blocks` (of `net`, network `vni`): never
    /// leased, or expired and `reuse` allows it.
    pub fn room(
        &self,
        vni: u32,
        net: IpNetwork,
        blocks: &[IpNetwork],
        taken: &dyn Fn(IpAddr) -> bool,
        reuse: Reuse,
    ) -> usize {
        let now = super::unix_now();
        blocks
            .iter()
            .flat_map(|b| ips_of(*b))
            .filter(|ip| net.contains(*ip) && hosts_contain(net, *ip) && !taken(*ip))
            .filter(|ip| self.by_ip.get(&(vni, *ip)).is_none_or(|l| is_free(l, now) && reuse.allows(*ip)))
            .count()
    }

    /// `container` let go of its addresses in `vni`: they stay the workload's for their
    /// hold time. Returns the leases changed.
    pub fn detach(&mut self, vni: u32, container: &str, now: u64) -> Vec<LeaseSpec> {
        let mut out = Vec::new();
        for l in self.by_ip.values_mut().filter(|l| l.vni == vni && l.container.as_deref() == Some(container)) {
            l.container = None;
            l.until = Some(now.saturating_add(l.hold));
            out.push(l.clone());
        }
        out
    }

    /// Frees a reserved or expired address now.
    pub fn release(&mut self, vni: u32, ip: IpAddr) -> Result<LeaseSpec, String> {
        match self.by_ip.get(&(vni, ip)) {
            None => Err(format!("network {vni} has no lease of {ip} (vswitchctl ipam list shows the leases)")),
            Some(l) if l.container.is_some() => Err(format!(
                "{ip} is attached to container {} (workload {:?}); it is freed by that attachment's CNI DEL, then this command",
                l.container.as_deref().unwrap_or_default(),
                l.identity
            )),
            Some(_) => Ok(self.by_ip.remove(&(vni, ip)).expect("found above")),
        }
    }
}

/// Every address of a block (its ends too: only the subnet's ends are not hosts').
fn ips_of(b: IpNetwork) -> impl Iterator<Item = IpAddr> {
    let (base, size) = span(b);
    (0..size.min(MAX_SCAN as u128)).map(move |i| addr(b, base + i))
}

fn hosts_contain(net: IpNetwork, ip: IpAddr) -> bool {
    let (skip_ends, last) = match (net, ip) {
        (IpNetwork::V4(n), IpAddr::V4(a)) => (n.prefix() < 31, a == n.broadcast()),
        (IpNetwork::V6(n), IpAddr::V6(_)) => (n.prefix() < 127, false),
        _ => return false,
    };
    !(skip_ends && (ip == net.network() || last))
}
