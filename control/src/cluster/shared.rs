//! The cluster's shared desired state: networks, per-network security-group rules and
//! services, written once (`vswitchctl --cluster ...`, `apply -f FILE --cluster`) and
//! applied by every node. In the store each entry is one key, `P/shared/SECTION/ID`,
//! holding the entry as `dump` prints it. On a node the entries join the local desired
//! state, and the node remembers which are the cluster's (`Owned`, a section of its own
//! state file) so that local verbs leave them alone and a deletion in the cluster
//! removes them. A request is run on the shared state by the same feature code that
//! runs it locally, so both accept and refuse the same things.
use super::api::SharedState;
use crate::{
    acl::{api::AclRuleSpec, Acl},
    api::{AclRequest, OverlayRequest, Request, ServiceRequest},
    feature::{Ctx, Feature},
    overlay::Overlay,
    services::Services,
    state::DesiredState,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Rule ids from here up are the cluster's; a node's own rules stay below.
pub use crate::acl::SHARED_IDS as ACL_IDS;

pub use super::owned::Owned;

/// Entries by their key under `P/shared/` (`networks/100`, `acl/2147483648`,
/// `services/web`), each as its JSON text.
pub type Entries = BTreeMap<String, String>;

/// The sections the shared state has.
pub const SECTIONS: [&str; 3] = ["networks", "acl", "services"];

fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Checks a rule the cluster is to hold: it names a network, not a port, and its id
/// (if given) is in the cluster's range.
fn check_rule(r: &AclRuleSpec) -> Result<(), String> {
    if r.port.is_some() || r.vni.is_none() {
        return Err(
            "a cluster rule applies to a network: give --vni VNI, not --port (ports are each node's own)".into()
        );
    }
    match r.id {
        Some(id) if id < ACL_IDS => {
            Err(format!("id {id}: the cluster's rule ids start at {ACL_IDS} (leave the id out to have one assigned)"))
        }
        _ => Ok(()),
    }
}

/// Gives rules without an id the next free ids of the cluster's range.
pub fn number(rules: &mut [AclRuleSpec], taken: impl IntoIterator<Item = u32>) {
    let first = taken.into_iter().chain(rules.iter().filter_map(|r| r.id)).max().map_or(ACL_IDS, |m| m + 1);
    for (id, r) in (first..).zip(rules.iter_mut().filter(|r| r.id.is_none())) {
        r.id = Some(id);
    }
}

impl SharedState {
    /// Its entries, keyed as the store keys them. Rules without an id get one.
    pub fn entries(&self) -> Result<Entries, String> {
        let mut out = Entries::new();
        for n in &self.networks {
            if out.insert(format!("networks/{}", n.vni), text(n)).is_some() {
                return Err(format!("networks: VNI {} is there twice", n.vni));
            }
        }
        let mut rules = self.acl.clone();
        for r in &rules {
            check_rule(r).map_err(|e| format!("acl: {e}"))?;
        }
        number(&mut rules, []);
        for r in &rules {
            let id = r.id.unwrap_or_default();
            if out.insert(format!("acl/{id}"), text(r)).is_some() {
                return Err(format!("acl: rule id {id} is there twice"));
            }
        }
        for s in &self.services {
            if out.insert(format!("services/{}", s.name), text(s)).is_some() {
                return Err(format!("services: {:?} is there twice", s.name));
            }
        }
        Ok(out)
    }

    /// The shared state the store's entries make. An entry that does not decode (a
    /// newer writer, or damage) is skipped and named in the second part.
    pub fn from_entries(entries: &Entries) -> (SharedState, Vec<String>) {
        let mut s = SharedState::default();
        let mut bad = Vec::new();
        for (key, value) in entries {
            let ok = match key.split_once('/').map(|(s, _)| s) {
                Some("networks") => serde_json::from_str(value).map(|n| s.networks.push(n)).is_ok(),
                Some("acl") => serde_json::from_str(value).map(|r| s.acl.push(r)).is_ok(),
                Some("services") => serde_json::from_str(value).map(|v| s.services.push(v)).is_ok(),
                _ => false,
            };
            if !ok {
                bad.push(key.clone());
            }
        }
        (s, bad)
    }

    /// The shared state as a desired state of its own (no ports, no VTEP).
    fn as_desired(&self) -> DesiredState {
        DesiredState {
            networks: self.networks.clone(),
            acl: self.acl.clone(),
            services: self.services.clone(),
            ..DesiredState::new()
        }
    }
}

/// The shared state's features, on their own: what a request is run on.
struct Scratch {
    overlay: Overlay,
    acl: Acl,
    services: Services,
}

/// Networks are checked against the shared state when a node takes an entry in; here
/// any network will do (a node may define it locally).
fn any_network(_: u32) -> bool {
    true
}

impl Scratch {
    fn of(s: &SharedState) -> Result<Scratch, String> {
        let mut overlay = Overlay::default();
        for n in &s.networks {
            overlay.network_add(n.clone()).map_err(|e| format!("networks (vni {}): {e}", n.vni))?;
        }
        let mut acl = Acl::default();
        acl.replace(s.acl.clone(), BTreeMap::new(), &[], &any_network).map_err(|e| format!("acl {e}"))?;
        let mut services = Services::default();
        services.adopt(&s.as_desired(), &ctx())?;
        Ok(Scratch { overlay, acl, services })
    }

    fn state(&self) -> SharedState {
        let mut d = DesiredState::new();
        self.services.desired(&mut d);
        SharedState { revision: None, networks: self.overlay.desired().0, acl: self.acl.specs(), services: d.services }
    }
}

fn ctx() -> Ctx<'static> {
    Ctx { ports: &[], has_network: &any_network, vtep_ip: None, shared: None }
}

/// What `--cluster` takes: the verbs that change networks, per-network rules and services.
pub const VERBS: &str =
    "network add/del, acl add/del/load (per network: --vni), service add/set-backends/del, apply and dump";

/// Runs `req` on the shared state `s` as the local switch would run it on its own:
/// the shared state it leaves, and the request's reply.
pub fn run(s: &SharedState, req: Request) -> Result<(SharedState, Value), String> {
    let mut scratch = Scratch::of(s)?;
    let ctx = ctx();
    let taken: Vec<u32> = s.acl.iter().filter_map(|r| r.id).collect();
    let handled = match req {
        Request::Overlay(r @ (OverlayRequest::NetworkAdd(_) | OverlayRequest::NetworkDel { .. })) => {
            if let OverlayRequest::NetworkDel { vni } = r {
                // The cluster's rules and services in it would name a network no node has.
                let in_use = scratch.acl.network_in_use(vni).or_else(|| scratch.services.network_in_use(vni));
                if let Some(why) = in_use.filter(|_| scratch.overlay.has_network(vni)) {
                    return Err(why);
                }
            }
            scratch.overlay.handle(r, &ctx)?
        }
        Request::Acl(AclRequest::AclAdd(mut spec)) => {
            check_rule(&spec)?;
            number(std::slice::from_mut(&mut spec), taken);
            scratch.acl.handle(AclRequest::AclAdd(spec), &ctx)?
        }
        Request::Acl(AclRequest::AclDel { id }) if id >= ACL_IDS => {
            scratch.acl.handle(AclRequest::AclDel { id }, &ctx)?
        }
        Request::Acl(AclRequest::AclDel { id }) => {
            return Err(format!("id {id}: not a cluster rule (the cluster's ids start at {ACL_IDS})"))
        }
        Request::Acl(AclRequest::AclLoad { mut rules }) => {
            for r in &rules {
                check_rule(r)?;
            }
            number(&mut rules, []);
            scratch.acl.handle(AclRequest::AclLoad { rules }, &ctx)?
        }
        Request::Service(
            r @ (ServiceRequest::ServiceAdd(_)
            | ServiceRequest::ServiceSetBackends { .. }
            | ServiceRequest::ServiceDel { .. }),
        ) => scratch.services.handle(r, &ctx)?,
        _ => return Err(format!("--cluster takes {VERBS}; other verbs are each node's own")),
    };
    Ok((scratch.state(), handled.reply))
}

/// Checks a whole shared state as `run` checks each change.
pub fn check(s: &SharedState) -> Result<(), String> {
    s.entries()?;
    Scratch::of(s).map(|_| ())
}

/// One step from a node's state toward the shared state.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// The entry under this key (the cluster's) goes.
    Remove(String),
    /// The entry under this key becomes this one (JSON text).
    Put(String, String),
}

impl Edit {
    pub fn key(&self) -> &str {
        match self {
            Edit::Remove(k) | Edit::Put(k, _) => k,
        }
    }
}

/// A node's entries in the shared sections, keyed as the store keys them.
pub fn local_entries(d: &DesiredState) -> Entries {
    let mut out = Entries::new();
    for n in &d.networks {
        out.insert(format!("networks/{}", n.vni), text(n));
    }
    for r in &d.acl {
        out.insert(format!("acl/{}", r.id.unwrap_or_default()), text(r));
    }
    for s in &d.services {
        out.insert(format!("services/{}", s.name), text(s));
    }
    out
}

/// The edits that take a node holding `local` (of which `owned` are the cluster's)
/// to the cluster's `shared` entries; and the cluster's entries a local one of the
/// same key keeps out (named, with what to do).
pub fn edits(local: &DesiredState, owned: &Owned, shared: &Entries) -> (Vec<Edit>, Vec<String>) {
    let mine = local_entries(local);
    let mut out = Vec::new();
    let mut blocked = Vec::new();
    for (k, v) in shared {
        match mine.get(k) {
            Some(_) if !owned.has(k) => blocked.push(format!(
                "{k}: this node has its own entry of that name, which stays (delete it here to take the cluster's)"
            )),
            // Compared as values: the same entry may be written with fields in another order.
            Some(old) if same(old, v) => {}
            _ => out.push(Edit::Put(k.clone(), v.clone())),
        }
    }
    for k in mine.keys().filter(|k| owned.has(k) && !shared.contains_key(*k)) {
        out.push(Edit::Remove(k.clone()));
    }
    // Removals first (a service leaves before its network), networks before what is in them.
    let rank = |e: &Edit| {
        let section = SECTIONS.iter().position(|s| e.key().starts_with(s)).unwrap_or(0);
        match e {
            Edit::Remove(_) => 2 - section,
            Edit::Put(..) => 3 + section,
        }
    };
    out.sort_by_key(rank);
    (out, blocked)
}

fn same(a: &str, b: &str) -> bool {
    a == b || serde_json::from_str::<Value>(a).ok() == serde_json::from_str::<Value>(b).ok()
}

/// Makes one edit to `d` and to `owned`. An entry that does not decode is an error.
pub fn edit(d: &mut DesiredState, owned: &mut Owned, e: &Edit) -> Result<(), String> {
    let key = e.key();
    let (section, id) = key.split_once('/').ok_or_else(|| format!("{key}: not a shared entry"))?;
    let value = match e {
        Edit::Put(_, v) => Some(v.as_str()),
        Edit::Remove(_) => None,
    };
    fn put<T: serde::de::DeserializeOwned>(
        list: &mut Vec<T>,
        value: Option<&str>,
        is: impl Fn(&T) -> bool,
    ) -> Result<(), String> {
        list.retain(|x| !is(x));
        if let Some(v) = value {
            list.push(serde_json::from_str(v).map_err(|e| e.to_string())?);
        }
        Ok(())
    }
    match section {
        "networks" => put(&mut d.networks, value, |n| n.vni.to_string() == id),
        "acl" => put(&mut d.acl, value, |r| r.id.is_some_and(|x| x.to_string() == id)),
        "services" => put(&mut d.services, value, |s| s.name == id),
        _ => Err("not a shared section".into()),
    }
    .map_err(|err| format!("{key}: {err}"))?;
    if section == "networks" && value.is_none() {
        // A node's address reservations in it go with it, as at `network del`.
        crate::cni::drop_orphaned_reservations(d);
    }
    match e {
        Edit::Put(..) => owned.insert(key),
        Edit::Remove(_) => owned.remove(key),
    }
    Ok(())
}
