//! The features that make the tables (all but the ports, CNI and the cluster, which
//! reach outside the switch): the one list of them, in the order they compile, what
//! one tells another before compiling, and which of them a request is for. The switch
//! holds one; so does the request fuzzer, which thereby runs the same code.
use crate::{
    acl::Acl,
    api::{OverlayRequest, Request, ServiceRequest},
    conntrack::Conntrack,
    endpoints::Endpoints,
    feature::{Ctx, Feature, Handled},
    overlay::Overlay,
    ports::PortRef,
    qos::Qos,
    services::Services,
    sflow::Sflow,
    xconnect::Xconnects,
};
use dataplane::pmd::Shared;

pub(crate) struct Features {
    pub(crate) xconnects: Xconnects,
    pub(crate) overlay: Overlay,
    pub(crate) acl: Acl,
    pub(crate) qos: Qos,
    pub(crate) sflow: Sflow,
    pub(crate) conntrack: Conntrack,
    pub(crate) endpoints: Endpoints,
    pub(crate) services: Services,
}

/// Where a request went.
pub(crate) enum Routed {
    /// To its feature, which answered.
    Handled(Result<Handled, String>),
    /// Not to one of these (the ports', the core's, the outside's): the caller's.
    Elsewhere(Box<Request>),
}

impl Features {
    /// The two that hold what the cores share (rule counters, the session table) are
    /// the caller's to make; the rest start empty.
    pub(crate) fn new(acl: Acl, conntrack: Conntrack) -> Features {
        Features {
            xconnects: Xconnects::default(),
            overlay: Overlay::default(),
            acl,
            qos: Qos::default(),
            sflow: Sflow::default(),
            conntrack,
            endpoints: Endpoints::default(),
            services: Services::default(),
        }
    }

    /// In the order they compile.
    /// (Connection tracking after the ACL: it reads the compiled rules' epochs.
    /// Endpoints after the overlay: they add to the FIB it compiled. Services after
    /// connection tracking: they use its table.)
    pub(crate) fn all(&mut self) -> [&mut dyn Feature; 8] {
        [
            &mut self.xconnects,
            &mut self.overlay,
            &mut self.acl,
            &mut self.qos,
            &mut self.sflow,
            &mut self.conntrack,
            &mut self.endpoints,
            &mut self.services,
        ]
    }

    pub(crate) fn all_ref(&self) -> [&dyn Feature; 8] {
        [
            &self.xconnects,
            &self.overlay,
            &self.acl,
            &self.qos,
            &self.sflow,
            &self.conntrack,
            &self.endpoints,
            &self.services,
        ]
    }

    /// Why network `vni` cannot go now: what some feature still has in it.
    fn network_in_use(&self, vni: u32, others: &[&mut dyn Feature]) -> Option<String> {
        let mine = self.all_ref().into_iter().find_map(|f| f.network_in_use(vni));
        mine.or_else(|| others.iter().find_map(|f| f.network_in_use(vni)))
    }

    /// What one feature's state tells another's compile step, set before compiling.
    pub(crate) fn wire(&mut self) {
        self.conntrack.for_services = !self.services.is_empty() || self.overlay.masquerades();
        self.overlay.egress_wanted = self.services.has_node_ports();
        self.overlay.endpoint_vteps = self.endpoints.vteps();
    }

    /// Hands `req` to its feature (validated, applied in memory, its journal records
    /// returned), or back if it is for none of these. `others` are the features kept
    /// outside these (CNI's, the cluster's), asked too when a network goes.
    pub(crate) fn handle(
        &mut self,
        req: Request,
        ports: &[PortRef],
        shared: Option<&Shared>,
        others: &mut [&mut dyn Feature],
    ) -> Routed {
        if let Request::Overlay(r) = req {
            let deleting = match r {
                OverlayRequest::NetworkDel { vni } if self.overlay.has_network(vni) => Some(vni),
                _ => None,
            };
            if let Some(why) = deleting.and_then(|vni| self.network_in_use(vni, others)) {
                return Routed::Handled(Err(why));
            }
            // The overlay is the one that knows networks and the VTEP.
            let ctx = Ctx { ports, has_network: &|_| false, vtep_ip: None, shared };
            let mut handled = self.overlay.handle(r, &ctx);
            if let (Some(vni), Ok(h)) = (deleting, &mut handled) {
                // What was in the network leaves before it, as a replay reads it.
                let mut changes: Vec<_> = self.all().into_iter().flat_map(|f| f.network_removed(vni)).collect();
                changes.extend(others.iter_mut().flat_map(|f| f.network_removed(vni)));
                changes.append(&mut h.changes);
                h.changes = changes;
            }
            return Routed::Handled(handled);
        }
        let overlay = &self.overlay;
        let has_network = |v: u32| overlay.has_network(v);
        let ctx = Ctx { ports, has_network: &has_network, vtep_ip: overlay.vtep_ip(), shared };
        Routed::Handled(match req {
            Request::Xconnect(r) => self.xconnects.handle(r, &ctx),
            Request::Acl(r) => self.acl.handle(r, &ctx),
            Request::Qos(r) => self.qos.handle(r, &ctx),
            Request::Sflow(r) => self.sflow.handle(r, &ctx),
            Request::Conntrack(r) => self.conntrack.handle(r, &ctx),
            Request::Endpoint(r) => self.endpoints.handle(r, &ctx),
            Request::Service(r) => {
                let vip = match &r {
                    ServiceRequest::ServiceAdd(s) if !s.vip.is_empty() => Some((s.vni, s.vip.starts_with('['))),
                    _ => None,
                };
                self.services.handle(r, &ctx).map(|mut handled| {
                    if let Some((vni, v6)) = vip {
                        warn_without_gateway(overlay, vni, v6, &mut handled);
                    }
                    handled
                })
            }
            other => return Routed::Elsewhere(Box::new(other)),
        })
    }
}

/// Clients reach a VIP through their network's gateway: without one the service is
/// there, and nobody can use it. The reply says so.
fn warn_without_gateway(overlay: &Overlay, vni: u32, v6: bool, handled: &mut Handled) {
    let g = overlay.gateway_of(vni);
    if (if v6 { g.v6 } else { g.v4.map(u128::from) }).is_some() {
        return;
    }
    let why = format!(
        "network {vni} has no {} gateway: its VMs cannot reach the VIP until it has one (vswitchctl network add {vni} --gateway IP/LEN, or apply)",
        if v6 { "IPv6" } else { "IPv4" }
    );
    let w = &mut handled.reply["warning"];
    *w = serde_json::Value::String(match w.as_str() {
        Some(first) => format!("{first}; {why}"),
        None => why,
    });
}
