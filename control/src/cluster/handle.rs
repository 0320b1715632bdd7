//! The switch's side of the agent: what it tells the agent after each change, what it
//! does with the agent's changes, and `cluster status`.
use super::{agent::Local, api::ClusterRequest, keys::EndpointRecord, Op};
use crate::{ports::api::PortRole, switch::Switch};

impl Switch {
    /// This node's endpoints, VTEP and networks, for the agent to publish and watch.
    fn cluster_local(&self) -> Local {
        let mut local = Local { vtep: self.overlay.vtep_record(), ..Local::default() };
        for e in self.endpoints.local() {
            let (Some(port), Ok(mac)) = (&e.port, e.mac.parse::<pipelines::wire::Mac>()) else { continue };
            let rec = local.endpoints.entry((e.vni, mac.to_string())).or_insert_with(|| EndpointRecord {
                mac: mac.to_string(),
                ips: Vec::new(),
                port: port.clone(),
                container: e.container.clone(),
            });
            rec.ips.push(e.ip);
        }
        local.vnis = self
            .ports
            .specs()
            .iter()
            .filter(|p| p.role == Some(PortRole::Vm))
            .filter_map(|p| p.vni)
            .filter(|v| self.overlay.has_network(*v))
            .collect();
        local
    }

    /// Tells the agent what this node has now (nothing happens if it did not change).
    pub(crate) fn cluster_tell(&self) {
        // Every batch ends here: outside a cluster there is nobody to tell.
        if self.cluster.link.is_none() {
            return;
        }
        self.cluster.tell(self.cluster_local());
    }

    /// Applies what the agent read from the store; publishes if the tables changed.
    pub async fn cluster_apply(&mut self, batches: Vec<Vec<Op>>) {
        let mut changed = false;
        for op in batches.into_iter().flatten() {
            changed |= match op {
                Op::Mac { vni, mac, vtep } => self.overlay.set_cluster_mac(vni, mac, vtep),
                Op::Ip { vni, ip, at } => self.endpoints.set_cluster(vni, ip, at),
                Op::Flood { vni, vteps } => self.overlay.set_cluster_flood(vni, vteps),
            };
        }
        if changed {
            self.publish().await;
        }
    }

    pub(crate) fn cluster_request(&self, req: ClusterRequest) -> crate::switch::Reply {
        match req {
            ClusterRequest::ClusterStatus => match self.cluster.status() {
                Some(s) => Ok(crate::switch::to_value(&s)),
                None => {
                    Err("this vswitchd is not in a cluster (start it with --cluster etcd://HOST:PORT --node NAME)"
                        .into())
                }
            },
        }
    }
}
