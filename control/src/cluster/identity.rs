//! Workloads that move: each node publishes the addresses its IPAM holds for each
//! workload identity (`P/identities/VNI/IDENTITY/NODE`), and a node where a workload
//! comes up with no address of its own asks the store whether another node holds some
//! for it, and gives it those. Only when the store answers: in an outage the workload
//! gets a new address from this node's blocks.
//!
//! A workload that moved on keeps its address in the block of the node it left, whose
//! reservation for it runs out in time; so before that node gives an expired address
//! to another workload it asks which addresses of the network other nodes' records hold.
use super::{
    agent::Agent,
    call::read,
    keys::{EndpointRecord, IdentityRecord, Key},
};
use etcd_client::GetOptions;
use std::{collections::BTreeSet, net::IpAddr};
use tokio::sync::oneshot;

/// Another node's addresses for a workload, as the store has them.
#[derive(Debug, Clone)]
pub struct Held {
    pub node: String,
    pub record: IdentityRecord,
    /// The node's liveness key is there.
    pub node_up: bool,
}

pub struct Lookup {
    pub vni: u32,
    pub identity: String,
    pub reply: oneshot::Sender<Option<Held>>,
}

/// Which addresses of network `vni` other nodes hold for workloads or endpoints.
pub struct HeldElsewhere {
    pub vni: u32,
    pub reply: oneshot::Sender<Result<BTreeSet<IpAddr>, String>>,
}

impl Agent {
    pub(super) async fn held_elsewhere_in(&mut self, h: HeldElsewhere) {
        let found = self.addresses_held_elsewhere(h.vni).await;
        let _ = h.reply.send(found);
    }

    async fn addresses_held_elsewhere(&mut self, vni: u32) -> Result<BTreeSet<IpAddr>, String> {
        let connected = self.status.lock().unwrap_or_else(|e| e.into_inner()).connected;
        let client = self.client.as_ref().filter(|_| connected).ok_or("the store is away")?;
        let mut held = BTreeSet::new();
        // Endpoints another node published by hand or from another IPAM hold theirs too.
        for prefix in [self.keys.identities(vni), self.keys.endpoints(vni)] {
            let r = read(client, &prefix, Some(GetOptions::new().with_prefix()))
                .await
                .map_err(|e| format!("reading {prefix}: {e}"))?;
            for kv in r.kvs() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let ips = match self.keys.parse(&key) {
                    Some(Key::Identity { node, .. }) if node != self.cfg.node => {
                        serde_json::from_slice::<IdentityRecord>(kv.value()).map(|r| r.ips)
                    }
                    Some(Key::Endpoint { node, .. }) if node != self.cfg.node => {
                        serde_json::from_slice::<EndpointRecord>(kv.value()).map(|r| r.ips)
                    }
                    _ => continue,
                };
                held.extend(ips.unwrap_or_default());
            }
        }
        Ok(held)
    }

    pub(super) async fn lookup(&mut self, l: Lookup) {
        let found = self.held_elsewhere(l.vni, &l.identity).await;
        let _ = l.reply.send(found);
    }

    async fn held_elsewhere(&mut self, vni: u32, identity: &str) -> Option<Held> {
        let connected = self.status.lock().unwrap_or_else(|e| e.into_inner()).connected;
        let prefix = self.keys.identity_records(vni, identity);
        let client = self.client.as_mut().filter(|_| connected)?;
        let r = match read(client, &prefix, Some(GetOptions::new().with_prefix())).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cluster: looking up workload {identity:?}: {e}; it gets a new address");
                return None;
            }
        };
        let mut best: Option<(bool, i64, Held)> = None;
        for kv in r.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some(Key::Identity { node, .. }) = self.keys.parse(&key) else { continue };
            let Ok(record) = serde_json::from_slice::<IdentityRecord>(kv.value()) else { continue };
            if node == self.cfg.node {
                continue;
            }
            // A container holding them wins; else the newest record.
            let rank = (record.attached, kv.mod_revision());
            if best.as_ref().is_none_or(|b| (b.0, b.1) < rank) {
                let node_up = self.is_alive(&node);
                best = Some((rank.0, rank.1, Held { node, record, node_up }));
            }
        }
        best.map(|b| b.2)
    }
}
