//! ACL requests: each change answered with the journal records of what it changed.
use super::{
    api::{AclAction, AclRequest},
    Acl,
};
use crate::{
    feature::{Ctx, Handled},
    store::change::Change,
};
use serde_json::{json, Value};

impl Acl {
    pub fn handle(&mut self, req: AclRequest, ctx: &Ctx) -> Result<Handled, String> {
        Ok(match req {
            AclRequest::AclList { port, vni } => Handled::read(self.list(port.as_deref(), vni)),
            AclRequest::AclAdd(spec) => {
                let id = self.add(spec, ctx.ports, ctx.has_network)?;
                Handled::change(json!({ "id": id }), self.spec(id).map(|s| Change::put("acl", s)).into_iter().collect())
            }
            AclRequest::AclDel { id } => {
                self.del(id)?;
                Handled::change(Value::Null, vec![Change::del("acl", json!(id))])
            }
            AclRequest::AclLoad { rules } => {
                let n = rules.len();
                self.replace(rules, self.defaults(), ctx.ports, ctx.has_network)?;
                Handled::change(json!({ "rules": n }), vec![Change::set("acl", &self.specs())])
            }
            AclRequest::AclDefault { port, action } => {
                self.set_default(&port, action, ctx.ports)?;
                let c = match action {
                    AclAction::Allow => Change::del("acl_defaults", json!(port)),
                    AclAction::Deny => Change::put_named("acl_defaults", &port, &action),
                };
                Handled::change(Value::Null, vec![c])
            }
        })
    }
}
