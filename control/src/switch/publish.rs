//! Publishing: compile every feature's part into one snapshot, swap it in, and wait
//! until every core has passed a quiescent point on it (RCU). The control plane never
//! stops a core; what the old snapshot referenced is freed only after that.
use super::Switch;
use crate::feature::Tables;
use dataplane::{snapshot::Snapshot, MAX_PORTS};
use pipelines::tables::L2Tables;
use std::time::Duration;

/// How long a core may take to pass a quiescent point before we call it stuck.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(5);

impl Switch {
    /// Compiles the running state into a snapshot, publishes it and waits until every
    /// core has passed a quiescent point on it. Only then may the caller free what the
    /// previous snapshot referenced.
    pub(crate) async fn publish(&mut self) {
        let snap = self.compile();
        self.install(snap).await;
    }

    /// Every feature's part of the tables, as one snapshot (not yet published).
    pub(crate) fn compile(&mut self) -> Snapshot {
        let cores = self.eal.workers.len();
        let mut t = Tables {
            snap: Snapshot::empty(cores),
            l2: L2Tables { port_mtu: vec![1500; MAX_PORTS], ..Default::default() },
        };
        self.ports.compile(&mut t.snap);
        let refs = self.ports.refs();
        self.features.wire();
        for f in self.every_feature() {
            f.compile(&refs, cores, &mut t);
        }
        let Tables { mut snap, mut l2 } = t;
        l2.stamp();
        snap.l2 = std::sync::Arc::new(l2);
        snap.capture = self
            .capture
            .as_ref()
            .filter(|c| refs.iter().any(|p| p.name == c.port && p.id == Some(c.tap.port)))
            .map(|c| c.tap);
        self.dirty = false;
        snap
    }

    /// The snapshot in force with only the capture tap changed: nothing to recompile.
    pub(crate) async fn publish_capture(&mut self) {
        let mut snap = (*self.shared.rcu.load()).clone();
        snap.capture = self.capture.as_ref().map(|c| c.tap);
        self.install(snap).await;
    }

    /// Publishes `snap` and waits until every core has passed a quiescent point on it.
    pub(crate) async fn install(&mut self, snap: Snapshot) {
        let old = self.shared.rcu.load();
        let generation = self.shared.rcu.publish(snap);
        let start = std::time::Instant::now();
        let mut spins = 0u32;
        while !self.shared.rcu.passed(generation) {
            if start.elapsed() > QUIESCE_TIMEOUT {
                // A stuck core is a bug; never free what it may still use.
                tracing::error!("a PMD core has not passed a quiescent point in {QUIESCE_TIMEOUT:?}; keeping the old snapshot alive");
                std::mem::forget(old);
                return;
            }
            spins += 1;
            if spins < 200 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        drop(old);
    }
}
