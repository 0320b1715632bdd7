//! Address blocks: each node claims blocks of a network's subnet in the store (a key
//! created only if absent), and its built-in IPAM gives new addresses from its own
//! blocks alone. No two nodes give the same address, and an ADD needs the store only
//! when the node's blocks are full (the next block is claimed before they are).
use super::{
    agent::Agent,
    call::{read, timed},
    keys::BlockRecord,
    Op,
};
use crate::cni::ipam;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// The switch asks for a block of `net` (network `vni`); `reply` waits for it, or
/// none does (claimed ahead of need).
pub struct Claim {
    pub vni: u32,
    pub net: IpNetwork,
    pub reply: Option<oneshot::Sender<Result<IpNetwork, String>>>,
}

impl Agent {
    pub(super) async fn claim(&mut self, c: Claim) {
        let r = self.claim_block(c.vni, c.net).await;
        match (&r, &c.reply) {
            (Ok(b), _) => tracing::info!("cluster: claimed address block {b} of network {} ({})", c.vni, c.net),
            (Err(e), None) => tracing::warn!("cluster: could not claim a block of {} ahead of need: {e}", c.net),
            _ => {}
        }
        if let Some(tx) = c.reply {
            let _ = tx.send(r);
        }
    }

    async fn claim_block(&mut self, vni: u32, net: IpNetwork) -> Result<IpNetwork, String> {
        let connected = self.status.lock().unwrap_or_else(|e| e.into_inner()).connected;
        let node = self.cfg.node.clone();
        let prefix = self.keys.blocks(vni);
        let Some(client) = self.client.as_mut().filter(|_| connected) else {
            return Err("no new block can be claimed while the store is away (vswitchctl cluster status)".into());
        };
        let held = read(client, &prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| format!("no new block could be claimed: reading {prefix}: {e}"))?;
        let mut claimed = BTreeMap::new();
        for kv in held.kvs() {
            let holder = serde_json::from_slice::<BlockRecord>(kv.value()).map_or_else(|_| String::new(), |r| r.node);
            claimed.insert(String::from_utf8_lossy(kv.key()).into_owned(), holder);
        }
        // Blocks the store says are this node's and it forgot (a crash before its
        // cache was saved) are its own again.
        let mine = self.blocks.entry((vni, net)).or_default();
        for b in ipam::blocks(net) {
            if claimed.get(&self.keys.block(vni, b)) == Some(&node) {
                mine.insert(b);
            }
        }
        for b in ipam::blocks(net) {
            let key = self.keys.block(vni, b);
            if claimed.contains_key(&key) {
                continue;
            }
            let rec = serde_json::to_string(&BlockRecord { node: node.clone() }).unwrap_or_default();
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), rec, None)]);
            let Some(client) = self.client.as_mut() else { break };
            let done = timed(client.txn(txn)).await.map_err(|e| format!("no new block could be claimed: {e}"))?;
            if done.succeeded() {
                self.blocks.entry((vni, net)).or_default().insert(b);
                self.emit_blocks(vni, net);
                self.cache_dirty = true;
                return Ok(b);
            }
        }
        self.emit_blocks(vni, net);
        Err(format!(
            "every address block of subnet {net} is claimed by other nodes: give network {vni} a larger subnet \
             (or more subnets: ipam.subnets in the CNI config)"
        ))
    }

    /// Tells the switch which blocks of `net` this node holds.
    pub(super) fn emit_blocks(&mut self, vni: u32, net: IpNetwork) {
        let blocks = self.blocks.get(&(vni, net)).map(|b| b.iter().copied().collect()).unwrap_or_default();
        let _ = self.ops.send(vec![Op::Blocks { vni, net, blocks }]);
    }
}
