//! The life of a port across the features: attach and start a device, take one out
//! once every feature lets it go and no core uses it; list ports and their counters.
use super::{to_value, Reply, Switch};
use crate::{
    ports::{api::*, validate, Port},
    store::change::Change,
};

impl Switch {
    pub(crate) fn port_request(&mut self, req: PortRequest) -> Reply {
        match req {
            PortRequest::PortAdd(spec) => self.port_add(spec).map(|v| to_value(&v)),
            PortRequest::PortDel { name } => self.port_del(&name).map(|()| serde_json::Value::Null),
            PortRequest::PortSet { name, admin } => self.port_set(&name, admin).map(|v| to_value(&v)),
            PortRequest::PortList => Ok(to_value(&self.port_views())),
            PortRequest::PortStats { name } => self.ports.stats(name.as_deref()).map(|v| to_value(&v)),
        }
    }

    pub(crate) fn port_views(&self) -> Vec<PortView> {
        self.ports.list.iter().map(|p| self.ports.view(p, self.features.xconnects.peer(&p.spec.name))).collect()
    }

    /// Checks a port spec against the switch as it is.
    pub(crate) fn check_spec(&self, spec: &PortSpec) -> Result<(), String> {
        validate::port_spec(spec, self.ports.list.iter().map(|p| &p.spec), &self.eal.workers)?;
        self.features.overlay.check_port(spec, &self.ports.refs())
    }

    fn port_add(&mut self, spec: PortSpec) -> Result<PortView, String> {
        self.check_spec(&spec)?;
        let run = self.ports.bring_up(&spec).map_err(|e| format!("port {}: {e}", spec.name))?;
        tracing::info!("port {} added ({})", spec.name, spec.devargs);
        self.changed([Change::put("ports", &spec)]);
        self.ports.list.push(Port { spec, run: Ok(run) });
        let p = self.ports.list.last().expect("just pushed");
        Ok(self.ports.view(p, None))
    }

    /// Takes the port out of service (or back into it) without closing its device: the
    /// cores stop polling it and drop what is sent to it as `port_down`.
    fn port_set(&mut self, name: &str, admin: AdminState) -> Result<PortView, String> {
        let idx = self.ports.position("name", name)?;
        let p = &mut self.ports.list[idx];
        if p.spec.admin != admin {
            p.spec.admin = admin;
            if let Ok(run) = &p.run {
                crate::ports::signal_admin(name, &run.dev, admin);
            }
            let spec = p.spec.clone();
            tracing::info!("port {name} admin {}", admin.name());
            self.changed([Change::put("ports", &spec)]);
        }
        Ok(self.ports.view(&self.ports.list[idx], self.features.xconnects.peer(name)))
    }

    /// Takes the port out of the desired state; its device is closed once the batch is
    /// published and no core can touch it any more.
    fn port_del(&mut self, name: &str) -> Result<(), String> {
        let idx = self.ports.position("name", name)?;
        if let Some(why) = self.every_feature_ref().iter().find_map(|f| f.port_in_use(name)) {
            return Err(why);
        }
        let gone = self.ports.refs().swap_remove(idx);
        let port = self.ports.list.remove(idx);
        // What the switch took down it gives back up as it lets go of the interface.
        if let (false, Ok(run)) = (port.spec.admin.is_up(), &port.run) {
            crate::ports::signal_admin(name, &run.dev, AdminState::Up);
        }
        let mut changes = vec![Change::del("ports", serde_json::json!(name))];
        for f in self.every_feature() {
            changes.extend(f.port_removed(&gone));
        }
        self.changed(changes);
        self.closing.push((idx, port));
        tracing::info!("port {name} deleted");
        Ok(())
    }
}
