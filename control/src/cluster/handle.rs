//! The switch's side of the agent: what it tells the agent after each change, what it
//! does with the agent's changes (the shared state taken into the desired state), which
//! local changes it refuses because they are the cluster's, and `cluster status`.
use super::{
    agent::Local,
    api::ClusterRequest,
    keys::EndpointRecord,
    shared::{self, ACL_IDS},
    write::Write,
    Op,
};
use crate::{
    api::{AclRequest, OverlayRequest, Request, Response, ServiceRequest},
    ports::api::PortRole,
    state::DesiredState,
    switch::Switch,
};

impl Switch {
    /// This node's endpoints, VTEP and networks, for the agent to publish and watch.
    fn cluster_local(&self) -> Local {
        let mut local = Local { vtep: self.features.overlay.vtep_record(), ..Local::default() };
        for e in self.features.endpoints.local() {
            let (Some(port), Ok(mac)) = (&e.port, e.mac.parse::<pipelines::wire::Mac>()) else { continue };
            let rec = local.endpoints.entry((e.vni, mac.to_string())).or_insert_with(|| EndpointRecord {
                mac: mac.to_string(),
                ips: Vec::new(),
                port: port.clone(),
                container: e.container.clone(),
            });
            rec.ips.push(e.ip);
        }
        let now = crate::cni::unix_now();
        for l in self.cni.leases.by_ip.values().filter(|l| !crate::cni::ipam::is_free(l, now)) {
            let rec = local.identities.entry((l.vni, l.identity.clone())).or_insert_with(|| {
                super::keys::IdentityRecord { ips: Vec::new(), mac: l.mac.clone(), attached: false }
            });
            rec.ips.push(l.ip);
            rec.attached |= l.container.is_some();
        }
        local.vnis = self
            .ports
            .specs()
            .iter()
            .filter(|p| p.role == Some(PortRole::Vm))
            .filter_map(|p| p.vni)
            .filter(|v| self.features.overlay.has_network(*v))
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
        let mut shared = false;
        for op in batches.into_iter().flatten() {
            changed |= match op {
                Op::Mac { vni, mac, vtep } => self.features.overlay.set_cluster_mac(vni, mac, vtep),
                Op::Ip { vni, ip, at } => self.features.endpoints.set_cluster(vni, ip, at),
                Op::Flood { vni, vteps } => self.features.overlay.set_cluster_flood(vni, vteps),
                Op::Blocks { vni, net, blocks } => {
                    for b in blocks {
                        self.cni_add_block(vni, net, b);
                    }
                    false
                }
                Op::Shared { revision, entries } => {
                    self.cluster.received = Some((revision, entries));
                    shared = true;
                    false
                }
            };
        }
        if shared {
            changed |= self.cluster_take_shared().await;
        }
        if changed {
            self.publish().await;
        }
    }

    /// Takes the shared state as last received into the desired state: the cluster's
    /// entries put, changed or removed; local ones of the same name stay. An entry this
    /// node cannot take (a rule for a network it does not have, a network its ports
    /// still use) waits, named in `cluster status`, and is tried again when the local
    /// state changes. True if the desired state changed.
    async fn cluster_take_shared(&mut self) -> bool {
        let Some((revision, entries)) = self.cluster.received.clone() else { return false };
        let current = self.desired();
        self.cluster.tried_with = tried_with(&current);
        let (edits, mut unapplied) = shared::edits(&current, &self.cluster.owned, &entries);
        let owned_with = |s: &mut DesiredState, o: &shared::Owned| {
            s.cluster = (!o.is_empty() || revision != 0).then(|| shared::Owned { revision, ..o.clone() });
        };
        let workers = self.eal.workers.clone();
        // All at once when they fit (the usual case), else one by one.
        let mut all = (current.clone(), self.cluster.owned.clone());
        let whole = edits.iter().try_for_each(|e| shared::edit(&mut all.0, &mut all.1, e)).is_ok() && {
            owned_with(&mut all.0, &all.1);
            crate::apply::validate_state(&all.0, &workers).is_ok()
        };
        let (state, owned) = if whole {
            all
        } else {
            let (mut state, mut owned) = (current.clone(), self.cluster.owned.clone());
            for e in &edits {
                let (mut s, mut o) = (state.clone(), owned.clone());
                let tried = shared::edit(&mut s, &mut o, e).and_then(|()| {
                    owned_with(&mut s, &o);
                    crate::apply::validate_state(&s, &workers).map(|_| ())
                });
                match tried {
                    Ok(()) => (state, owned) = (s, o),
                    Err(why) => unapplied.push(format!("{}: {why}", e.key())),
                }
            }
            owned_with(&mut state, &owned);
            (state, owned)
        };
        for u in unapplied.iter().filter(|u| !self.cluster.unapplied.contains(u)) {
            tracing::warn!("cluster: shared entry not taken in here: {u}");
        }
        self.cluster.unapplied = unapplied;
        if state == current {
            return false;
        }
        match self.apply(state, false).await {
            Ok(r) => {
                tracing::info!("cluster: shared state at revision {revision} taken in: {}", r.changes.join("; "));
                self.cluster.owned = shared::Owned { revision, ..owned };
                true
            }
            Err(e) => {
                tracing::error!("cluster: the shared state at revision {revision} could not be taken in: {e}");
                false
            }
        }
    }

    /// Tries again the shared entries that waited, once the local state they waited on
    /// changed. Every second.
    pub(crate) async fn cluster_retry(&mut self) {
        if self.cluster.unapplied.is_empty() {
            return;
        }
        if tried_with(&self.desired()) != self.cluster.tried_with && self.cluster_take_shared().await {
            self.publish().await;
        }
    }

    /// Why a local request may not run: it changes an entry that is the cluster's. A
    /// local rule load keeps the cluster's rules.
    pub(crate) fn cluster_guard(&self, req: &mut Request) -> Result<(), String> {
        let owned = &self.cluster.owned;
        let theirs = |what: String, key: String| {
            if owned.has(&key) {
                Err(format!(
                    "{what} is the cluster's (written with vswitchctl --cluster): change it with \
                     `vswitchctl --cluster ...` from any node, not here"
                ))
            } else {
                Ok(())
            }
        };
        match req {
            Request::Overlay(
                OverlayRequest::NetworkAdd(crate::api::NetworkSpec { vni, .. })
                | OverlayRequest::NetworkDel { vni }
                | OverlayRequest::NetworkAddVtep { vni, .. }
                | OverlayRequest::NetworkDelVtep { vni, .. },
            ) => theirs(format!("network {vni}"), format!("networks/{vni}")),
            Request::Acl(AclRequest::AclAdd(r)) if r.id.is_some_and(|id| id >= ACL_IDS) => {
                Err(format!("id: ids from {ACL_IDS} up are the cluster's rules'; leave the id out or use a lower one"))
            }
            Request::Acl(AclRequest::AclDel { id }) => theirs(format!("ACL rule {id}"), format!("acl/{id}")),
            Request::Acl(AclRequest::AclLoad { rules }) => {
                rules.retain(|r| r.id.is_none_or(|id| !owned.acl.contains(&id)));
                rules.extend(
                    self.features.acl.specs().into_iter().filter(|r| r.id.is_some_and(|id| owned.acl.contains(&id))),
                );
                Ok(())
            }
            Request::Service(
                ServiceRequest::ServiceAdd(crate::api::ServiceSpec { name, .. })
                | ServiceRequest::ServiceSetBackends { name, .. }
                | ServiceRequest::ServiceDel { name },
            ) => theirs(format!("service {name:?}"), format!("services/{name}")),
            _ => Ok(()),
        }
    }

    /// A whole local state to apply keeps the cluster's entries as they are.
    pub(crate) fn cluster_carry(&self, state: &mut DesiredState) {
        let o = &self.cluster.owned;
        let now = self.desired();
        state.networks.retain(|n| !o.networks.contains(&n.vni));
        state.networks.extend(now.networks.into_iter().filter(|n| o.networks.contains(&n.vni)));
        state.acl.retain(|r| r.id.is_none_or(|id| !o.acl.contains(&id)));
        state.acl.extend(now.acl.into_iter().filter(|r| r.id.is_some_and(|id| o.acl.contains(&id))));
        state.services.retain(|s| !o.services.contains(&s.name));
        state.services.extend(now.services.into_iter().filter(|s| o.services.contains(&s.name)));
        state.cluster = now.cluster;
    }

    /// Hands a write of the shared state to the agent, which answers `reply` once the
    /// store has it (or has refused it).
    pub(crate) fn cluster_write(&self, req: ClusterRequest, reply: tokio::sync::oneshot::Sender<Response>) {
        let write = match req {
            ClusterRequest::ClusterDump => Write::Dump,
            ClusterRequest::ClusterApply { state, dry_run } => Write::Apply { state, dry_run },
            ClusterRequest::ClusterChange { request, if_revision } => {
                match serde_json::from_value::<Request>(request) {
                    Ok(request) => Write::Change { request: Box::new(request), if_revision },
                    Err(e) => {
                        let _ = reply.send(Response::err(format!("cluster change: not a request: {e}")));
                        return;
                    }
                }
            }
            ClusterRequest::ClusterStatus => {
                let _ = reply.send(match self.cluster_request(req) {
                    Ok(v) => Response::ok(v),
                    Err(e) => Response::err(e),
                });
                return;
            }
        };
        self.cluster.write(write, reply);
    }

    pub(crate) fn cluster_request(&self, req: ClusterRequest) -> crate::switch::Reply {
        match req {
            ClusterRequest::ClusterStatus => match self.cluster.status() {
                Some(s) => Ok(crate::switch::to_value(&s)),
                None => Err(super::NOT_IN_CLUSTER.into()),
            },
            _ => Err("internal: writes of the shared state go to the agent".into()),
        }
    }
}

/// What a node's taking in of the shared state depends on: which networks, rules and
/// services it has, and which networks its ports are in.
fn tried_with(d: &DesiredState) -> String {
    let mut keys: Vec<String> = shared::local_entries(d).into_keys().collect();
    keys.extend(d.ports.iter().filter_map(|p| p.vni).map(|v| format!("port in {v}")));
    keys.join(",")
}
