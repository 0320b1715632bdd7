//! The overlay's share of what the cluster store says about other nodes: a MAC behind
//! a remote VTEP (a FIB entry that learning never moves) and the VTEPs that get a
//! network's floods. Operator entries win over both; neither is desired state.
use super::Overlay;
use pipelines::wire::Mac;
use std::{collections::BTreeSet, net::Ipv4Addr};

impl Overlay {
    /// Sets (or with `None` removes) the cluster's entry for `mac` in `vni`. True if
    /// the tables change.
    pub fn set_cluster_mac(&mut self, vni: u32, mac: Mac, vtep: Option<Ipv4Addr>) -> bool {
        let old = match vtep {
            Some(ip) => self.from_cluster.insert((vni, mac), ip),
            None => self.from_cluster.remove(&(vni, mac)),
        };
        if old == vtep {
            return false;
        }
        self.touch(vni, mac);
        self.count_vtep(old, false);
        self.count_vtep(vtep, true);
        true
    }

    /// The VTEPs the cluster says have endpoints in `vni` (empty: none). True if it
    /// changed.
    pub fn set_cluster_flood(&mut self, vni: u32, vteps: BTreeSet<Ipv4Addr>) -> bool {
        let old = if vteps.is_empty() {
            self.cluster_flood.remove(&vni)
        } else {
            self.cluster_flood.insert(vni, vteps.clone())
        };
        old.unwrap_or_default() != vteps
    }

    /// The cluster's flood list of `vni`.
    pub fn cluster_flood(&self, vni: u32) -> Vec<Ipv4Addr> {
        self.cluster_flood.get(&vni).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }
}

impl Overlay {
    /// This node's VTEP as the cluster publishes it: address, UDP port, MAC if set.
    pub fn vtep_record(&self) -> Option<(Ipv4Addr, u16, Option<String>)> {
        let v = self.vtep.as_ref()?;
        let port = v.spec.udp_port.unwrap_or(pipelines::wire::vxlan::DEFAULT_UDP_PORT);
        Some((v.net.ip(), port, v.mac.map(|m| m.to_string())))
    }
}
