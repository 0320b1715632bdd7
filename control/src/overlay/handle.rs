//! Overlay requests, and the overlay as a feature of the switch.
use super::{api::*, Overlay, MAC_FIRST, MAC_LAST};
use crate::{
    feature::{Ctx, Feature, Handled, Tables},
    ports::PortRef,
    state::DesiredState,
    store::change::Change,
};
use dataplane::MAX_PORTS;
use pipelines::{tables::L2Tables, wire::Mac};
use serde_json::{json, Value};
use std::time::Instant;

impl Overlay {
    /// The journal record for network `vni` as it is now.
    fn network_record(&self, vni: u32) -> Change {
        match self.networks.get(&vni) {
            Some(n) => Change::put("networks", n),
            None => Change::del("networks", json!(vni)),
        }
    }

    /// Applies a change request; the journal records of what it changed.
    fn change(&mut self, req: OverlayRequest, ports: &[PortRef]) -> Result<Vec<Change>, String> {
        Ok(match req {
            OverlayRequest::NetworkAdd(spec) => {
                let vni = spec.vni;
                self.network_add(spec)?;
                vec![self.network_record(vni)]
            }
            OverlayRequest::NetworkDel { vni } => {
                self.network_del(vni, ports)?;
                vec![self.network_record(vni)]
            }
            OverlayRequest::NetworkAddVtep { vni, ip } => {
                self.add_vtep(vni, ip)?;
                vec![self.network_record(vni)]
            }
            OverlayRequest::NetworkDelVtep { vni, ip } => {
                self.del_vtep(vni, ip)?;
                vec![self.network_record(vni)]
            }
            OverlayRequest::VtepSet(spec) => {
                self.vtep_set(spec, ports)?;
                vec![Change::set("vtep", &self.vtep.as_ref().map(|v| &v.spec))]
            }
            OverlayRequest::NeighAdd(spec) => {
                let ip = spec.ip;
                self.neigh_add(spec)?;
                let mac = self.neighbours.get(&ip).map(Mac::to_string).unwrap_or_default();
                vec![Change::put("neighbours", &NeighSpec { ip, mac })]
            }
            OverlayRequest::NeighDel { ip } => {
                self.neigh_del(ip)?;
                vec![Change::del("neighbours", json!(ip))]
            }
            OverlayRequest::FibAdd(spec) => {
                let (vni, mac) = (spec.vni, spec.mac.parse::<Mac>());
                self.fib_add(spec, ports)?;
                // Accepted, so the MAC parsed.
                mac.ok().and_then(|m| self.fib.get(&(vni, m))).map(|f| Change::put("fib", f)).into_iter().collect()
            }
            OverlayRequest::FibDel { vni, mac } => {
                let m: Option<Mac> = mac.parse().ok();
                let was_static = m.is_some_and(|m| self.fib.contains_key(&(vni, m)));
                self.fib_del(vni, &mac)?;
                // A learned entry is not part of the desired state: nothing to record.
                m.filter(|_| was_static).map(|m| Change::del("fib", json!([vni, m.to_string()]))).into_iter().collect()
            }
            read => return Err(format!("internal: {read:?} is not an overlay change")),
        })
    }

    /// The VTEP's address, if one is set.
    pub fn vtep_ip(&self) -> Option<std::net::IpAddr> {
        self.vtep.as_ref().map(|v| std::net::IpAddr::V4(v.net.ip()))
    }

    /// Static FIB entries of one network, if any.
    pub fn has_static_fib(&self, vni: u32) -> bool {
        self.fib.range((vni, MAC_FIRST)..=(vni, MAC_LAST)).next().is_some()
    }
}

impl Feature for Overlay {
    fn port_in_use(&self, name: &str) -> Option<String> {
        Overlay::port_in_use(self, name)
    }

    fn port_removed(&mut self, port: &PortRef) -> Vec<Change> {
        if let Some(id) = port.id {
            Overlay::port_removed(self, id);
        }
        Vec::new()
    }

    fn desired(&self, out: &mut DesiredState) {
        let (networks, vtep, fib, neighbours) = Overlay::desired(self);
        out.networks = networks;
        out.vtep = vtep;
        out.fib = fib;
        out.neighbours = neighbours;
    }

    fn compile(&mut self, ports: &[PortRef], _cores: usize, t: &mut Tables) {
        let l2 = Overlay::compile(self, ports, MAX_PORTS);
        // The overlay owns the L2 tables but for the policy other features put in them.
        t.l2 = L2Tables { acl: std::mem::take(&mut t.l2.acl), qos: std::mem::take(&mut t.l2.qos), ..l2 };
    }
}

impl Overlay {
    pub fn handle(&mut self, req: OverlayRequest, ctx: &Ctx) -> Result<Handled, String> {
        let now = Instant::now();
        Ok(match req {
            OverlayRequest::NetworkList => Handled::read(self.network_views(ctx.ports)),
            OverlayRequest::VtepShow => Handled::read(self.vtep_view(ctx.ports)),
            OverlayRequest::NeighList => Handled::read(self.neigh_views(now)),
            OverlayRequest::FibList { vni } => Handled::read(self.fib_views(vni, ctx.ports, now)),
            change => Handled::change(Value::Null, self.change(change, ctx.ports)?),
        })
    }
}
