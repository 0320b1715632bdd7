//! Static cross-connects: everything one port receives leaves the other, both ways,
//! bypassing the pipeline.
pub mod api;
pub mod cli;

use crate::{
    feature::{Ctx, Feature, Handled, Tables},
    ports::PortRef,
    state::DesiredState,
    store::change::Change,
};
use api::{Xconnect, XconnectRequest};
use serde_json::{json, Value};

#[derive(Default)]
pub struct Xconnects {
    pub list: Vec<Xconnect>,
}

impl Xconnects {
    /// The other end of `port`'s cross-connect.
    pub fn peer(&self, port: &str) -> Option<String> {
        self.list.iter().find_map(|x| {
            if x.a == port {
                Some(x.b.clone())
            } else if x.b == port {
                Some(x.a.clone())
            } else {
                None
            }
        })
    }

    fn add(&mut self, a: String, b: String, ports: &[PortRef]) -> Result<Change, String> {
        for (field, p) in [("a", &a), ("b", &b)] {
            if !ports.iter().any(|r| &r.name == p) {
                return Err(format!("{field}: no port named {p:?} (vswitchctl port list shows the ports)"));
            }
        }
        if a == b {
            return Err(format!("b: a port cannot be cross-connected to itself ({a:?})"));
        }
        for x in &self.list {
            for p in [&a, &b] {
                if &x.a == p || &x.b == p {
                    return Err(format!(
                        "port {p:?} is already cross-connected ({} <-> {}); delete that first",
                        x.a, x.b
                    ));
                }
            }
        }
        let x = Xconnect { a, b };
        let change = Change::put("xconnects", &x);
        self.list.push(x);
        Ok(change)
    }

    fn del(&mut self, a: &str) -> Result<Change, String> {
        let idx = self
            .list
            .iter()
            .position(|x| x.a == a || x.b == a)
            .ok_or_else(|| format!("a: port {a:?} has no cross-connect"))?;
        let x = self.list.remove(idx);
        Ok(Change::del("xconnects", json!(x.a)))
    }
}

impl Feature for Xconnects {
    fn port_in_use(&self, name: &str) -> Option<String> {
        let x = self.list.iter().find(|x| x.a == name || x.b == name)?;
        Some(format!(
            "port {name:?} is cross-connected ({} <-> {}); delete the cross-connect first: vswitchctl xconnect del {}",
            x.a, x.b, x.a
        ))
    }

    fn desired(&self, out: &mut DesiredState) {
        out.xconnects = self.list.clone();
    }

    fn compile(&mut self, ports: &[PortRef], _cores: usize, t: &mut Tables) {
        let id = |name: &str| ports.iter().find(|p| p.name == name).and_then(|p| p.id);
        for x in &self.list {
            if let (Some(a), Some(b)) = (id(&x.a), id(&x.b)) {
                t.snap.ports[a as usize].xconnect = Some(b);
                t.snap.ports[b as usize].xconnect = Some(a);
            }
        }
    }
}

impl Xconnects {
    pub fn handle(&mut self, req: XconnectRequest, ctx: &Ctx) -> Result<Handled, String> {
        let change = match req {
            XconnectRequest::XconnectAdd { a, b } => self.add(a, b, ctx.ports)?,
            XconnectRequest::XconnectDel { a } => self.del(&a)?,
        };
        Ok(Handled::change(Value::Null, vec![change]))
    }
}
