//! ACL requests: each change staged as the journal records of what it changed.
use super::api::{AclAction, AclRequest};
use crate::{
    store::change::Change,
    switch::{to_value, Reply, Switch},
};
use serde_json::json;

impl Switch {
    pub(crate) fn acl_request(&mut self, req: AclRequest) -> Reply {
        let refs = self.refs();
        let overlay = &self.overlay;
        let has_network = |v: u32| overlay.has_network(v);
        let (reply, changes) = match req {
            AclRequest::AclList { port, vni } => return Ok(to_value(&self.acl.list(port.as_deref(), vni))),
            AclRequest::AclAdd(spec) => {
                let id = self.acl.add(spec, &refs, &has_network)?;
                (json!({ "id": id }), self.acl.spec(id).map(|s| Change::put("acl", s)).into_iter().collect())
            }
            AclRequest::AclDel { id } => {
                self.acl.del(id)?;
                (serde_json::Value::Null, vec![Change::del("acl", json!(id))])
            }
            AclRequest::AclLoad { rules } => {
                let n = rules.len();
                let defaults = self.acl.defaults();
                self.acl.replace(rules, defaults, &refs, &has_network)?;
                (json!({ "rules": n }), vec![Change::set("acl", &self.acl.specs())])
            }
            AclRequest::AclDefault { port, action } => {
                self.acl.set_default(&port, action, &refs)?;
                let c = match action {
                    AclAction::Allow => Change::del("acl_defaults", json!(port)),
                    AclAction::Deny => Change::put_named("acl_defaults", &port, &action),
                };
                (serde_json::Value::Null, vec![c])
            }
        };
        self.changed(changes);
        Ok(reply)
    }
}
