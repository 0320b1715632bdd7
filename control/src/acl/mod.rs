//! Security groups on the control plane: rules kept with stable ids and hit-counter
//! slots, indexed by the port or VNI they apply to, and compiled per VM port. A change
//! recompiles only the ports whose rules it touched; the others keep sharing their
//! compiled ACL with the snapshot before.
pub mod api;
pub mod cli;
mod handle;
pub mod rule;

use crate::{
    feature::{Feature, Tables},
    ports::{api::PortRole, PortRef},
    state::DesiredState,
    store::change::Change,
};
use api::{AclAction, AclDir, AclRuleSpec, AclRuleView};
use dataplane::{pmd::Shared, MAX_PORTS};
use pipelines::acl::{AclTables, Classifier, PortAcl, Rule};
pub use rule::{compile_rule, MAX_RULES};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

struct Entry {
    spec: AclRuleSpec,
    rule: Rule,
}

/// Rule ids from here up are the cluster's shared rules' (`cluster::shared`); a node's
/// own rules are numbered below.
pub const SHARED_IDS: u32 = 1 << 31;

/// A VM port's compiled ACL, valid while its VNI and rules stay as they were.
struct Compiled {
    vni: Option<u32>,
    acl: Option<Arc<PortAcl>>,
}

/// Every rule and per-port default. Counter slots are per rule id and stable while the
/// rule lives.
#[derive(Default)]
pub struct Acl {
    rules: BTreeMap<u32, Entry>,
    by_port: BTreeMap<String, BTreeSet<u32>>,
    by_vni: BTreeMap<u32, BTreeSet<u32>>,
    defaults: BTreeMap<String, AclAction>,
    /// Slot of each rule id.
    slots: BTreeMap<u32, u32>,
    free: Vec<u32>,
    next_slot: u32,
    /// Hits of each rule's slot when the rule took it (a reused slot starts at zero).
    baseline: HashMap<u32, u64>,
    compiled: HashMap<String, Compiled>,
    stale_ports: HashSet<String>,
    stale_vnis: HashSet<u32>,
    /// The per-core hit counters (none in unit tests).
    shared: Option<Arc<Shared>>,
}

impl Acl {
    /// Ids of the rules written for port `name`.
    pub fn rules_of_port(&self, name: &str) -> Vec<u32> {
        self.by_port.get(name).map(|ids| ids.iter().copied().collect()).unwrap_or_default()
    }

    pub fn new(shared: Arc<Shared>) -> Acl {
        Acl { shared: Some(shared), ..Default::default() }
    }

    /// Hits of a counter slot, summed over cores.
    fn hits(&self, slot: u32) -> u64 {
        let Some(shared) = &self.shared else { return 0 };
        shared.counters.iter().map(|c| c.acl_hits.get(slot as usize).map_or(0, |x| x.get())).sum()
    }

    fn slot_for(&mut self, id: u32) -> u32 {
        if let Some(&s) = self.slots.get(&id) {
            return s;
        }
        let s = self.free.pop().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot - 1
        });
        self.slots.insert(id, s);
        s
    }

    /// The counter slot of a rule id.
    pub fn slot(&self, id: u32) -> Option<u32> {
        self.slots.get(&id).copied()
    }

    /// The port or VNI whose compiled ACLs a rule is part of goes stale.
    fn touch(&mut self, spec: &AclRuleSpec) {
        if let Some(p) = &spec.port {
            self.stale_ports.insert(p.clone());
        }
        if let Some(v) = spec.vni {
            self.stale_vnis.insert(v);
        }
    }

    fn index(&mut self, id: u32, spec: &AclRuleSpec, add: bool) {
        let set = match (&spec.port, spec.vni) {
            (Some(p), _) => self.by_port.entry(p.clone()).or_default(),
            (None, Some(v)) => self.by_vni.entry(v).or_default(),
            (None, None) => return,
        };
        if add {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    pub fn add(
        &mut self,
        mut spec: AclRuleSpec,
        ports: &[PortRef],
        has_network: &dyn Fn(u32) -> bool,
    ) -> Result<u32, String> {
        if self.rules.len() >= MAX_RULES {
            return Err(format!("the ACL already holds {MAX_RULES} rules"));
        }
        let id = match spec.id {
            Some(0) => return Err("id: rule ids start at 1".into()),
            Some(id) if self.rules.contains_key(&id) => return Err(format!("id: rule {id} already exists")),
            Some(id) => id,
            // (Ids from SHARED_IDS up are the cluster's shared rules'.)
            None => self.rules.range(..SHARED_IDS).next_back().map_or(1, |(m, _)| m + 1),
        };
        spec.id = Some(id);
        let mut rule = compile_rule(&spec, ports, has_network)?;
        rule.counter = self.slot_for(id);
        rule.id = id;
        if !self.baseline.contains_key(&id) {
            // A new rule (or a reused slot) counts from now.
            self.baseline.insert(id, self.hits(rule.counter));
        }
        self.index(id, &spec, true);
        self.touch(&spec);
        self.rules.insert(id, Entry { spec, rule });
        Ok(id)
    }

    pub fn del(&mut self, id: u32) -> Result<(), String> {
        let e =
            self.rules.remove(&id).ok_or_else(|| format!("id: no ACL rule {id} (vswitchctl acl list shows them)"))?;
        self.index(id, &e.spec, false);
        self.touch(&e.spec);
        self.baseline.remove(&id);
        if let Some(s) = self.slots.remove(&id) {
            self.free.push(s);
        }
        Ok(())
    }

    /// Replaces every rule and default: all or nothing. Errors name the rule by its
    /// position, or the default by its port.
    pub fn replace(
        &mut self,
        specs: Vec<AclRuleSpec>,
        defaults: BTreeMap<String, AclAction>,
        ports: &[PortRef],
        has_network: &dyn Fn(u32) -> bool,
    ) -> Result<(), String> {
        let mut next = Acl { shared: self.shared.clone(), ..Default::default() };
        // Rules that keep their id keep their counter slot (and its baseline).
        for (i, spec) in specs.into_iter().enumerate() {
            let keep = spec.id.and_then(|id| self.slots.get(&id).map(|s| (id, *s)));
            if let Some((id, s)) = keep {
                next.slots.insert(id, s);
                if let Some(b) = self.baseline.get(&id) {
                    next.baseline.insert(id, *b);
                }
            }
            next.add(spec, ports, has_network).map_err(|e| format!("rules[{i}]: {e}"))?;
        }
        for (port, action) in defaults {
            next.set_default(&port, action, ports).map_err(|e| format!("acl_defaults ({port}): {e}"))?;
        }
        let used: BTreeSet<u32> = next.slots.values().copied().collect();
        next.next_slot = self.next_slot.max(used.iter().next_back().map_or(0, |m| m + 1));
        next.free = (0..next.next_slot).filter(|s| !used.contains(s)).collect();
        // Fresh slots must not collide with kept ones: re-assign any that do.
        let mut seen = BTreeSet::new();
        let ids: Vec<u32> = next.rules.keys().copied().collect();
        for id in ids {
            let s = next.slots[&id];
            if !seen.insert(s) {
                let fresh = next.free.pop().unwrap_or_else(|| {
                    next.next_slot += 1;
                    next.next_slot - 1
                });
                next.slots.insert(id, fresh);
                next.baseline.insert(id, next.hits(fresh));
                seen.insert(fresh);
                if let Some(e) = next.rules.get_mut(&id) {
                    e.rule.counter = fresh;
                }
            }
        }
        *self = next;
        Ok(())
    }

    pub fn set_default(&mut self, port: &str, action: AclAction, ports: &[PortRef]) -> Result<(), String> {
        let p = ports.iter().find(|p| p.name == port).ok_or_else(|| format!("port: no port named {port:?}"))?;
        if p.role != Some(PortRole::Vm) {
            return Err(format!("port: {port:?} is not a VM port; security groups apply to VM ports"));
        }
        match action {
            AclAction::Allow => self.defaults.remove(port),
            AclAction::Deny => self.defaults.insert(port.to_string(), action),
        };
        self.stale_ports.insert(port.to_string());
        Ok(())
    }

    /// The rule with this id, as stored.
    pub fn spec(&self, id: u32) -> Option<&AclRuleSpec> {
        self.rules.get(&id).map(|e| &e.spec)
    }

    pub fn specs(&self) -> Vec<AclRuleSpec> {
        self.rules.values().map(|e| e.spec.clone()).collect()
    }

    pub fn defaults(&self) -> BTreeMap<String, AclAction> {
        self.defaults.clone()
    }

    /// Rules with their hit counters, filtered.
    pub fn list(&self, port: Option<&str>, vni: Option<u32>) -> Vec<AclRuleView> {
        self.rules
            .values()
            .filter(|e| port.is_none_or(|p| e.spec.port.as_deref() == Some(p)))
            .filter(|e| vni.is_none_or(|v| e.spec.vni == Some(v)))
            .map(|e| {
                let base = e.spec.id.and_then(|id| self.baseline.get(&id)).copied().unwrap_or(0);
                AclRuleView { hits: self.hits(e.rule.counter).saturating_sub(base), rule: e.spec.clone() }
            })
            .collect()
    }

    /// The rule id behind each counter slot.
    pub fn rule_of_slot(&self) -> HashMap<u32, u32> {
        self.slots.iter().map(|(&id, &slot)| (slot, id)).collect()
    }

    /// One VM port's classifiers: its own rules and its VNI's, by direction.
    fn port_acl(&self, p: &PortRef) -> Option<Arc<PortAcl>> {
        let own = self.by_port.get(&p.name).into_iter().flatten();
        let net = p.vni.and_then(|v| self.by_vni.get(&v)).into_iter().flatten();
        let (mut ingress, mut egress): (Vec<&Rule>, Vec<&Rule>) = (Vec::new(), Vec::new());
        for e in own.chain(net).filter_map(|id| self.rules.get(id)) {
            match e.spec.dir.unwrap_or(AclDir::In) {
                AclDir::In => ingress.push(&e.rule),
                AclDir::Out => egress.push(&e.rule),
            }
        }
        let default = self.defaults.get(&p.name).copied().unwrap_or(AclAction::Allow);
        if ingress.is_empty() && egress.is_empty() && default == AclAction::Allow {
            return None;
        }
        // The classifier orders rules itself (priority, then id).
        let classifier = |rules: Vec<&Rule>| Classifier::new(rules.into_iter().cloned().collect());
        Some(Arc::new(PortAcl {
            ingress: classifier(ingress),
            egress: classifier(egress),
            default: rule::verdict(default),
        }))
    }

    /// The classifiers of every running VM port; those whose rules did not change since
    /// the last call are shared with it.
    pub fn compile(&mut self, ports: &[PortRef], max_ports: usize) -> AclTables {
        let mut t = AclTables { ports: (0..max_ports).map(|_| None).collect() };
        let mut fresh = HashMap::new();
        for p in ports {
            let (Some(id), Some(PortRole::Vm)) = (p.id, p.role) else { continue };
            let stale = self.stale_ports.contains(&p.name) || p.vni.is_some_and(|v| self.stale_vnis.contains(&v));
            let acl = match self.compiled.get(&p.name) {
                Some(c) if !stale && c.vni == p.vni => c.acl.clone(),
                _ => self.port_acl(p),
            };
            if let Some(slot) = t.ports.get_mut(id as usize) {
                slot.clone_from(&acl);
            }
            fresh.insert(p.name.clone(), Compiled { vni: p.vni, acl });
        }
        self.compiled = fresh;
        self.stale_ports.clear();
        self.stale_vnis.clear();
        t
    }
}

impl Feature for Acl {
    fn port_in_use(&self, name: &str) -> Option<String> {
        let id = self.by_port.get(name)?.iter().next()?;
        Some(format!(
            "port {name:?} has ACL rules (e.g. rule {id}); delete them first (vswitchctl acl list --port {name})"
        ))
    }

    fn network_in_use(&self, vni: u32) -> Option<String> {
        let ids = self.by_vni.get(&vni)?;
        let first = ids.first()?;
        Some(format!(
            "network {vni} still has ACL rules ({}, e.g. rule {first}); delete them first (vswitchctl acl list --vni {vni})",
            ids.len()
        ))
    }

    fn port_removed(&mut self, port: &PortRef) -> Vec<Change> {
        self.stale_ports.insert(port.name.clone());
        match self.defaults.remove(&port.name) {
            Some(_) => vec![Change::del("acl_defaults", serde_json::json!(port.name))],
            None => Vec::new(),
        }
    }

    fn desired(&self, out: &mut DesiredState) {
        out.acl = self.specs();
        out.acl_defaults = self.defaults();
    }

    fn compile(&mut self, ports: &[PortRef], _cores: usize, t: &mut Tables) {
        t.l2.acl = Arc::new(Acl::compile(self, ports, MAX_PORTS));
    }
}

#[cfg(test)]
mod tests;
