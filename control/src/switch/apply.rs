//! `apply` and `dump`: reconciling the running switch to a whole desired state.
use super::{to_value, Refusal, Reply, Switch};
use crate::{
    apply::{api::*, diff, needs_new_device, validate_state},
    overlay::Overlay,
    ports::Port,
    state::DesiredState,
};

impl Switch {
    pub(crate) async fn apply_request(&mut self, req: ApplyRequest) -> Reply {
        match req {
            ApplyRequest::Dump => Ok(to_value(&self.desired())),
            ApplyRequest::Apply { mut state, dry_run } => {
                self.cluster_carry(&mut state);
                self.apply(state, dry_run).await.map(|r| to_value(&r))
            }
        }
    }

    /// Reconciles the switch to `state`, all or nothing: everything is validated and
    /// every new device attached before anything changes; then the state is written as
    /// the new snapshot and adopted, and the devices that left are closed once every
    /// core has moved on.
    pub(crate) async fn apply(&mut self, mut state: DesiredState, dry_run: bool) -> Result<ApplyReport, Refusal> {
        self.cni.carry_into(&mut state, &self.desired());
        let (norm, overlay) = validate_state(&state, &self.eal.workers)?;
        let changes = diff(&self.desired(), &norm);
        if dry_run || changes.is_empty() {
            return Ok(ApplyReport { changes, applied: false });
        }
        let (carried, fresh) = self.prepare_ports(&norm)?;
        // Not durable, not done: the new devices are dropped (never published) on failure.
        self.store.compact(&norm).map_err(|e| e.to_string())?;
        self.adopt(norm, overlay, carried, fresh);
        tracing::info!("applied {} changes", changes.len());
        Ok(ApplyReport { changes, applied: true })
    }

    /// Makes the switch hold `state` again without writing it (it is what the files
    /// hold): after a batch whose records could not be written.
    pub(crate) async fn reconcile(&mut self, state: DesiredState) -> Result<(), Refusal> {
        let (norm, overlay) = validate_state(&state, &self.eal.workers)?;
        let (carried, fresh) = self.prepare_ports(&norm)?;
        self.adopt(norm, overlay, carried, fresh);
        Ok(())
    }

    /// For each port of `norm`: the index of the running port it carries over (same
    /// device settings), or a freshly attached device.
    #[allow(clippy::type_complexity)]
    fn prepare_ports(&self, norm: &DesiredState) -> Result<(Vec<Option<usize>>, Vec<Port>), Refusal> {
        let list = &self.ports.list;
        let carried: Vec<Option<usize>> = norm
            .ports
            .iter()
            .map(|spec| list.iter().position(|p| p.spec.name == spec.name && !needs_new_device(&p.spec, spec)))
            .collect();
        for (spec, c) in norm.ports.iter().zip(&carried) {
            if c.is_some() {
                continue;
            }
            let device = dataplane::port::device_name(&spec.devargs).unwrap_or_default();
            if let Some(holder) = list.iter().enumerate().find(|(i, p)| {
                !carried.contains(&Some(*i)) && dataplane::port::device_name(&p.spec.devargs).is_ok_and(|d| d == device)
            }) {
                return Err(format!(
                    "ports ({}): device {device:?} is held by port {:?}, which this apply removes or changes; \
                     a device cannot be swapped in one step: apply once without the port, then with it",
                    spec.name, holder.1.spec.name
                ));
            }
        }
        let mut fresh = Vec::new();
        for (spec, c) in norm.ports.iter().zip(&carried) {
            if c.is_none() {
                let run = self
                    .ports
                    .bring_up(spec)
                    .map_err(|e| format!("ports ({}): {e}; nothing was changed", spec.name))?;
                fresh.push(Port { spec: spec.clone(), run: Ok(run) });
            }
        }
        Ok((carried, fresh))
    }

    /// Takes a validated state as the running one.
    fn adopt(&mut self, norm: DesiredState, overlay: Overlay, carried: Vec<Option<usize>>, fresh: Vec<Port>) {
        let mut old: Vec<Option<Port>> = self.ports.list.drain(..).map(Some).collect();
        let mut fresh = fresh.into_iter();
        for (spec, c) in norm.ports.iter().zip(carried) {
            let port = match c.and_then(|i| old[i].take()) {
                Some(mut p) => {
                    if (p.spec.role, p.spec.vni) != (spec.role, spec.vni) {
                        // What was learned on it belongs to its old network.
                        if let Ok(r) = &p.run {
                            self.features.overlay.port_removed(r.dev.id());
                        }
                    }
                    p.spec = spec.clone();
                    p
                }
                None => fresh.next().expect("one fresh port per new spec"),
            };
            self.ports.list.push(port);
        }
        for p in old.into_iter().flatten() {
            if let Ok(r) = &p.run {
                self.features.overlay.port_removed(r.dev.id());
            }
            // Closed once the cores have moved on (the batch settles).
            self.closing.push((usize::MAX, p));
        }
        self.features.xconnects.list = norm.xconnects.clone();
        self.features.overlay.adopt_config(overlay);
        if let Err(e) = self.adopt_all(&norm) {
            tracing::error!("internal: a validated state did not apply: {e}");
        }
        let refs = self.refs();
        let ov = &self.features.overlay;
        if let Err(e) = self.features.acl.replace(norm.acl, norm.acl_defaults, &refs, &|v| ov.has_network(v)) {
            tracing::error!("internal: validated ACL rules did not apply: {e}");
        }
        if let Err(e) = self.features.qos.replace(norm.qos, &refs) {
            tracing::error!("internal: validated QoS did not apply: {e}");
        }
        if let Err(e) = self.features.conntrack.replace(norm.stateful, norm.conntrack_timeouts, &refs) {
            tracing::error!("internal: validated connection-tracking settings did not apply: {e}");
        }
        if self.features.sflow.spec() != norm.sflow.as_ref() {
            let agent = self.features.overlay.vtep_ip();
            if let Err(e) = self.features.sflow.replace(norm.sflow, agent) {
                tracing::error!("internal: validated sFlow did not apply: {e}");
            }
        }
        self.dirty = true;
    }
}
