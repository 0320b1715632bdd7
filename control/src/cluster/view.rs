//! The other nodes as the store shows them, and what that makes of each network this
//! switch watches: MACs behind remote VTEPs, addresses for ARP/ND answers, the VTEPs to
//! flood to. The switch gets only the difference from what it has.
use super::keys::{EndpointRecord, Key, Keys, NodeRecord};
use pipelines::wire::Mac;
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

/// One change to the switch's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Mac {
        vni: u32,
        mac: Mac,
        vtep: Option<Ipv4Addr>,
    },
    Ip {
        vni: u32,
        ip: IpAddr,
        at: Option<(Mac, Ipv4Addr)>,
    },
    Flood {
        vni: u32,
        vteps: BTreeSet<Ipv4Addr>,
    },
    /// This node's address blocks of subnet `net` of network `vni`.
    Blocks {
        vni: u32,
        net: ipnetwork::IpNetwork,
        blocks: Vec<ipnetwork::IpNetwork>,
    },
    /// The shared desired state, whole, as of `revision`.
    Shared {
        revision: i64,
        entries: super::shared::Entries,
    },
}

/// What one network holds of the other nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derived {
    pub macs: BTreeMap<Mac, Ipv4Addr>,
    pub ips: BTreeMap<IpAddr, (Mac, Ipv4Addr)>,
    pub flood: BTreeSet<Ipv4Addr>,
}

/// A record as read, with the revision that wrote it (the newest claim to a MAC or an
/// address wins while a workload moves between nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<T> {
    pub rec: T,
    pub rev: i64,
}

#[derive(Debug, Default)]
pub struct View {
    own: String,
    pub nodes: BTreeMap<String, Stored<NodeRecord>>,
    pub alive: BTreeSet<String>,
    /// Per watched network: (node, MAC) -> record.
    pub endpoints: BTreeMap<u32, BTreeMap<(String, String), Stored<EndpointRecord>>>,
    /// The shared desired state: `SECTION/ID` -> entry.
    pub shared: BTreeMap<String, Stored<String>>,
    /// Records that did not decode, by key (a newer writer, or damage): counted, skipped.
    pub undecodable: BTreeSet<String>,
}

/// Which part of the view a change touched.
#[derive(Debug, Default)]
pub struct Touched {
    pub vnis: BTreeSet<u32>,
    /// A node record changed: every network may be affected.
    pub nodes: bool,
    /// The shared state changed.
    pub shared: bool,
}

impl View {
    pub fn new(own: &str) -> View {
        View { own: own.to_string(), ..View::default() }
    }

    /// Applies a put (`Some`) or delete (`None`) of `key`.
    pub fn apply(&mut self, keys: &Keys, key: &str, value: Option<&[u8]>, rev: i64, t: &mut Touched) {
        let Some(k) = keys.parse(key) else { return };
        fn decode<T: serde::de::DeserializeOwned>(v: &[u8]) -> Option<T> {
            serde_json::from_slice(v).ok()
        }
        let bad = value.is_some();
        match k {
            Key::Node(n) => {
                let rec = value.and_then(decode::<NodeRecord>);
                let ok = rec.is_some();
                // Only the VTEP's address reaches the tables: a restart's new boot epoch
                // touches nothing.
                let changed = match rec {
                    Some(rec) => {
                        let same = self.nodes.get(&n).is_some_and(|o| o.rec.vtep == rec.vtep);
                        self.nodes.insert(n, Stored { rec, rev });
                        !same
                    }
                    None => self.nodes.remove(&n).is_some(),
                };
                t.nodes |= changed;
                self.note(key, bad && !ok);
            }
            Key::Alive(n) => {
                if value.is_some() {
                    self.alive.insert(n);
                } else {
                    self.alive.remove(&n);
                }
            }
            Key::Identity { .. } => {}
            Key::Shared(entry) => {
                match value {
                    Some(v) => {
                        let v = String::from_utf8_lossy(v).into_owned();
                        self.shared.insert(entry, Stored { rec: v, rev });
                    }
                    None => {
                        self.shared.remove(&entry);
                    }
                }
                t.shared = true;
            }
            Key::Endpoint { vni, node, mac } => {
                let Some(eps) = self.endpoints.get_mut(&vni) else { return };
                let rec = value.and_then(decode::<EndpointRecord>);
                let ok = rec.is_some();
                match rec {
                    Some(rec) => eps.insert((node, mac), Stored { rec, rev }),
                    None => eps.remove(&(node, mac)),
                };
                t.vnis.insert(vni);
                self.note(key, bad && !ok);
            }
        }
    }

    fn note(&mut self, key: &str, undecodable: bool) {
        if undecodable {
            if self.undecodable.insert(key.to_string()) {
                tracing::warn!("cluster: {key} does not decode as this version's record; it is skipped");
            }
        } else {
            self.undecodable.remove(key);
        }
    }

    /// What network `vni` holds of the other nodes now.
    pub fn derive(&self, vni: u32) -> Derived {
        let mut d = Derived::default();
        let Some(eps) = self.endpoints.get(&vni) else { return d };
        // A node claiming this node's own VTEP (a misconfigured twin) would loop
        // traffic back here: it is ignored.
        let own_vtep = self.nodes.get(&self.own).map(|n| n.rec.vtep);
        // Newest claim first wins: sort by revision, newest last, and let it overwrite.
        let mut recs: Vec<(&String, &Stored<EndpointRecord>)> =
            eps.iter().filter(|((node, _), _)| *node != self.own).map(|((node, _), s)| (node, s)).collect();
        recs.sort_by_key(|(_, s)| s.rev);
        for (node, s) in recs {
            let Some(n) = self.nodes.get(node).filter(|n| Some(n.rec.vtep) != own_vtep) else { continue };
            let Ok(mac) = s.rec.mac.parse::<Mac>() else { continue };
            if mac.is_multicast() || mac.is_zero() {
                continue;
            }
            let vtep = n.rec.vtep;
            d.macs.insert(mac, vtep);
            for ip in &s.rec.ips {
                d.ips.insert(*ip, (mac, vtep));
            }
            d.flood.insert(vtep);
        }
        d
    }
}

/// The changes that take the switch from `old` to `new` in network `vni`.
pub fn diff(vni: u32, old: &Derived, new: &Derived, out: &mut Vec<Op>) {
    for (mac, vtep) in &new.macs {
        if old.macs.get(mac) != Some(vtep) {
            out.push(Op::Mac { vni, mac: *mac, vtep: Some(*vtep) });
        }
    }
    for mac in old.macs.keys().filter(|m| !new.macs.contains_key(m)) {
        out.push(Op::Mac { vni, mac: *mac, vtep: None });
    }
    for (ip, at) in &new.ips {
        if old.ips.get(ip) != Some(at) {
            out.push(Op::Ip { vni, ip: *ip, at: Some(*at) });
        }
    }
    for ip in old.ips.keys().filter(|i| !new.ips.contains_key(i)) {
        out.push(Op::Ip { vni, ip: *ip, at: None });
    }
    if old.flood != new.flood {
        out.push(Op::Flood { vni, vteps: new.flood.clone() });
    }
}
