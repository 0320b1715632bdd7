//! The FIB as the cores read it: one shard per network, shared between snapshots until
//! the network's entries change, then patched where they changed (a copy of the shard
//! with the changed MACs looked up again), not rebuilt; and the remote VTEPs the
//! entries point at, counted as entries come and go rather than found by a scan.
use super::{Overlay, MAC_FIRST, MAC_LAST};
use crate::ports::PortRef;
use pipelines::{
    tables::{FibEntry, FibShard, FibTarget},
    wire::Mac,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    sync::Arc,
};

/// The remote VTEP a FIB target points at.
pub(super) fn vtep_of(target: FibTarget) -> Option<Ipv4Addr> {
    match target {
        FibTarget::Vtep(ip) => Some(Ipv4Addr::from(ip)),
        FibTarget::Port(_) => None,
    }
}

impl Overlay {
    /// Entry (`vni`, `mac`) changed: the shard of `vni` needs it looked up again.
    pub(super) fn touch(&mut self, vni: u32, mac: Mac) {
        if self.shards.contains_key(&vni) {
            self.stale.entry(vni).or_default().insert(mac);
        }
    }

    /// No compiled shard is valid any more (ports changed, a whole new configuration).
    pub(super) fn drop_shards(&mut self) {
        self.shards.clear();
        self.stale.clear();
    }

    /// An entry pointing at remote VTEP `ip` (if it does) appears or goes.
    pub(super) fn count_vtep(&mut self, ip: Option<Ipv4Addr>, add: bool) {
        let Some(ip) = ip else { return };
        if add {
            *self.vtep_refs.entry(ip).or_default() += 1;
        } else if let Some(n) = self.vtep_refs.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.vtep_refs.remove(&ip);
            }
        }
    }

    /// The references to each remote VTEP from static and learned entries, counted
    /// afresh (after a whole new configuration, and as the tests' oracle).
    pub(super) fn recount_vteps(&self) -> BTreeMap<Ipv4Addr, u32> {
        let mut refs = BTreeMap::new();
        let statics = self.fib.values().filter_map(|f| f.vtep);
        let learned = self.learned.values().filter_map(|l| vtep_of(l.target));
        let cluster = self.from_cluster.values().copied();
        for ip in statics.chain(learned).chain(cluster) {
            *refs.entry(ip).or_default() += 1;
        }
        refs
    }

    /// Every remote VTEP the tables may send to: flood lists and FIB entries.
    pub(super) fn remote_vteps(&self) -> BTreeSet<Ipv4Addr> {
        let mut s: BTreeSet<Ipv4Addr> = self.networks.values().flat_map(|n| n.flood_vteps.iter().copied()).collect();
        s.extend(self.cluster_flood.values().flatten().copied());
        s.extend(self.vtep_refs.keys().copied());
        s.extend(self.endpoint_vteps.iter().copied());
        s
    }

    /// The VNIs with static or learned entries: one range lookup each.
    pub(super) fn vnis_with_entries(&self) -> BTreeSet<u32> {
        fn vnis<V>(m: &BTreeMap<(u32, Mac), V>, out: &mut BTreeSet<u32>) {
            let mut from = 0u32;
            while let Some((&(vni, _), _)) = m.range((from, MAC_FIRST)..).next() {
                out.insert(vni);
                let Some(next) = vni.checked_add(1) else { break };
                from = next;
            }
        }
        let mut out = BTreeSet::new();
        vnis(&self.learned, &mut out);
        vnis(&self.fib, &mut out);
        vnis(&self.from_cluster, &mut out);
        out
    }

    /// What the cores see for one MAC: its static entry (which wins; none if it names a
    /// port that is not running), else the cluster store's, else what was learned.
    fn entry(&self, vni: u32, mac: Mac, ports: &[PortRef]) -> Option<FibEntry> {
        let statik = self.fib.get(&(vni, mac)).and_then(|f| match (&f.port, f.vtep) {
            (Some(name), _) => ports.iter().find(|p| &p.name == name).and_then(|p| p.id).map(FibTarget::Port),
            (None, Some(ip)) => Some(FibTarget::Vtep(u32::from(ip))),
            (None, None) => None,
        });
        let statik = statik.or_else(|| self.from_cluster.get(&(vni, mac)).map(|ip| FibTarget::Vtep(u32::from(*ip))));
        match statik {
            Some(target) => Some(FibEntry { target, is_static: true }),
            None => self.learned.get(&(vni, mac)).map(|l| FibEntry { target: l.target, is_static: false }),
        }
    }

    /// The FIB of one network, from scratch.
    fn shard(&self, vni: u32, ports: &[PortRef]) -> FibShard {
        let mut s = FibShard::default();
        s.reserve(self.learned_per_vni.get(&vni).copied().unwrap_or(0));
        let learned = self.learned.range((vni, MAC_FIRST)..=(vni, MAC_LAST)).map(|(k, _)| k.1);
        let statics = self.fib.range((vni, MAC_FIRST)..=(vni, MAC_LAST)).map(|(k, _)| k.1);
        let cluster = self.from_cluster.range((vni, MAC_FIRST)..=(vni, MAC_LAST)).map(|(k, _)| k.1);
        for mac in learned.chain(statics).chain(cluster) {
            if let Some(e) = self.entry(vni, mac, ports) {
                s.insert(mac.to_u64(), e);
            }
        }
        s
    }

    /// Every network's shard for the next snapshot: the last one where nothing changed,
    /// a patched copy where a few entries did, a new one otherwise.
    pub(super) fn fib_shards(&mut self, ports: &[PortRef]) -> Vec<(u32, Arc<FibShard>)> {
        let vnis = self.vnis_with_entries();
        self.shards.retain(|v, _| vnis.contains(v));
        let mut out = Vec::with_capacity(vnis.len());
        for vni in vnis {
            let stale = self.stale.remove(&vni);
            let shard = match (self.shards.get(&vni), stale) {
                (Some(s), None) => s.clone(),
                // Patching copies the shard: worth it while few entries changed.
                (Some(s), Some(macs)) if macs.len() <= s.len() / 4 + 64 => {
                    let mut patched = FibShard::clone(s);
                    for mac in macs {
                        match self.entry(vni, mac, ports) {
                            Some(e) => patched.insert(mac.to_u64(), e),
                            None => patched.remove(&mac.to_u64()),
                        };
                    }
                    Arc::new(patched)
                }
                _ => Arc::new(self.shard(vni, ports)),
            };
            self.shards.insert(vni, shard.clone());
            out.push((vni, shard));
        }
        self.stale.clear();
        out
    }
}
