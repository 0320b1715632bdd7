//! Security groups on the control plane: rules as users give them, validated where they
//! enter, kept with stable ids and hit-counter slots, compiled per VM port.
use crate::{
    api::{AclAction, AclDir, AclRuleSpec, PortRole},
    overlay::PortRef,
};
use ipnetwork::IpNetwork;
use pipelines::acl::{AclTables, Classifier, Family, PortAcl, Prefix, Rule, Verdict, ANY_PORT};
use std::collections::BTreeMap;

/// Rules in one set at most (each needs a counter slot).
pub const MAX_RULES: usize = dataplane::stats::ACL_COUNTERS;

fn verdict(a: AclAction) -> Verdict {
    match a {
        AclAction::Allow => Verdict::Allow,
        AclAction::Deny => Verdict::Deny,
    }
}

fn prefix(field: &str, s: &str) -> Result<(Prefix, Family), String> {
    let net: IpNetwork = s
        .parse()
        .map_err(|e| format!("{field}: {s:?} is not an IPv4 or IPv6 prefix (e.g. 10.0.0.0/8, fd00::/64): {e}"))?;
    Ok(match net {
        IpNetwork::V4(n) => (Prefix::v4(u32::from(n.ip()), n.prefix()), Family::V4),
        IpNetwork::V6(n) => (Prefix::v6(u128::from(n.ip()), n.prefix()), Family::V6),
    })
}

fn protocol(s: &str) -> Result<u8, String> {
    match s {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        "icmpv6" => Ok(58),
        n => n
            .parse::<u8>()
            .map_err(|_| format!("proto: {n:?} is not a protocol; give tcp, udp, icmp, icmpv6 or a number 0-255")),
    }
}

fn port_range(field: &str, s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{field}: {s:?} is not a port or range (e.g. 22 or 1024-65535)");
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().map_err(|_| bad())?, b.trim().parse::<u16>().map_err(|_| bad())?),
        None => {
            let p = s.trim().parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("{field}: range {s:?} has its low end above its high end"));
    }
    Ok((lo, hi))
}

/// Checks a rule (its id aside) against the ports and networks there are, and returns
/// its classifier form (counter slot 0, set by the caller).
pub fn compile_rule(spec: &AclRuleSpec, ports: &[PortRef], has_network: &dyn Fn(u32) -> bool) -> Result<Rule, String> {
    match (&spec.port, spec.vni) {
        (Some(name), None) => {
            let p = ports.iter().find(|p| &p.name == name).ok_or_else(|| format!("port: no port named {name:?}"))?;
            if p.role != Some(PortRole::Vm) {
                return Err(format!("port: {name:?} is not a VM port; security groups apply to VM ports"));
            }
        }
        (None, Some(vni)) => {
            if !has_network(vni) {
                return Err(format!("vni: no network {vni}"));
            }
        }
        _ => return Err("give exactly one of --port NAME or --vni VNI".into()),
    }
    let mut family = Family::Any;
    let mut src = Prefix::ANY;
    let mut dst = Prefix::ANY;
    for (field, value, out) in [("src", &spec.src, &mut src), ("dst", &spec.dst, &mut dst)] {
        if let Some(s) = value {
            let (p, f) = prefix(field, s)?;
            if family != Family::Any && family != f {
                return Err(format!("{field}: {s:?} is not the same IP family as the other prefix"));
            }
            family = f;
            *out = p;
        }
    }
    let proto = spec.proto.as_deref().map(protocol).transpose()?;
    match (proto, family) {
        (Some(1), Family::V6) => return Err("proto: icmp is for IPv4; use icmpv6 with IPv6 prefixes".into()),
        (Some(58), Family::V4) => return Err("proto: icmpv6 is for IPv6; use icmp with IPv4 prefixes".into()),
        (Some(1), _) => family = Family::V4,
        (Some(58), _) => family = Family::V6,
        _ => {}
    }
    let l4 = matches!(proto, Some(6 | 17));
    let mut sport = ANY_PORT;
    let mut dport = ANY_PORT;
    for (field, value, out) in [("sport", &spec.sport, &mut sport), ("dport", &spec.dport, &mut dport)] {
        if let Some(s) = value {
            if !l4 {
                return Err(format!("{field}: port ranges need --proto tcp or udp"));
            }
            *out = port_range(field, s)?;
        }
    }
    if spec.icmp_type.is_some() && !matches!(proto, Some(1 | 58)) {
        return Err("icmp_type: needs --proto icmp or icmpv6".into());
    }
    Ok(Rule {
        id: spec.id.unwrap_or(0),
        priority: spec.priority,
        family,
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type: spec.icmp_type,
        verdict: verdict(spec.action),
        counter: 0,
    })
}

struct Entry {
    spec: AclRuleSpec,
    rule: Rule,
}

/// Every rule and per-port default. Counter slots are per rule id and stable while the
/// rule lives.
#[derive(Default)]
pub struct Acls {
    rules: BTreeMap<u32, Entry>,
    defaults: BTreeMap<String, AclAction>,
    /// Slot of each rule id.
    slots: BTreeMap<u32, u32>,
    free: Vec<u32>,
    next_slot: u32,
}

impl Acls {
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

    /// The counter slot of a new rule id, if a rule with that id got one (the caller
    /// takes a baseline for reused slots).
    pub fn slot(&self, id: u32) -> Option<u32> {
        self.slots.get(&id).copied()
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
            None => self.rules.keys().next_back().map_or(1, |m| m + 1),
        };
        spec.id = Some(id);
        let mut rule = compile_rule(&spec, ports, has_network)?;
        rule.counter = self.slot_for(id);
        rule.id = id;
        self.rules.insert(id, Entry { spec, rule });
        Ok(id)
    }

    pub fn del(&mut self, id: u32) -> Result<(), String> {
        self.rules.remove(&id).ok_or_else(|| format!("id: no ACL rule {id} (vswitchctl acl list shows them)"))?;
        if let Some(s) = self.slots.remove(&id) {
            self.free.push(s);
        }
        Ok(())
    }

    /// Replaces every rule: all or nothing. Errors name the rule by its position.
    pub fn replace(
        &mut self,
        specs: Vec<AclRuleSpec>,
        ports: &[PortRef],
        has_network: &dyn Fn(u32) -> bool,
    ) -> Result<(), String> {
        let mut next = Acls { defaults: self.defaults.clone(), ..Default::default() };
        // Rules that keep their id keep their counter slot.
        for (i, spec) in specs.into_iter().enumerate() {
            let keep = spec.id.and_then(|id| self.slots.get(&id).map(|s| (id, *s)));
            if let Some((id, s)) = keep {
                next.slots.insert(id, s);
            }
            next.add(spec, ports, has_network).map_err(|e| format!("rules[{i}]: {e}"))?;
        }
        let used: std::collections::BTreeSet<u32> = next.slots.values().copied().collect();
        next.next_slot = self.next_slot.max(used.iter().next_back().map_or(0, |m| m + 1));
        next.free = (0..next.next_slot).filter(|s| !used.contains(s)).collect();
        // Fresh slots must not collide with kept ones: re-assign any that do.
        let mut seen = std::collections::BTreeSet::new();
        let ids: Vec<u32> = next.rules.keys().copied().collect();
        for id in ids {
            let s = next.slots[&id];
            if !seen.insert(s) {
                let fresh = next.free.pop().unwrap_or_else(|| {
                    next.next_slot += 1;
                    next.next_slot - 1
                });
                next.slots.insert(id, fresh);
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
        Ok(())
    }

    /// Why `name` cannot be deleted now.
    pub fn port_in_use(&self, name: &str) -> Option<String> {
        let r = self.rules.values().find(|e| e.spec.port.as_deref() == Some(name))?;
        Some(format!(
            "port {name:?} has ACL rules (e.g. rule {}); delete them first (vswitchctl acl list --port {name})",
            r.rule.id
        ))
    }

    /// Forgets the default of a port that is going away.
    pub fn port_removed(&mut self, name: &str) {
        self.defaults.remove(name);
    }

    pub fn specs(&self) -> Vec<AclRuleSpec> {
        self.rules.values().map(|e| e.spec.clone()).collect()
    }

    pub fn defaults(&self) -> BTreeMap<String, AclAction> {
        self.defaults.clone()
    }

    pub fn restore_defaults(&mut self, d: BTreeMap<String, AclAction>) {
        self.defaults = d;
    }

    /// (rule, its counter slot), filtered.
    pub fn list(&self, port: Option<&str>, vni: Option<u32>) -> Vec<(AclRuleSpec, u32)> {
        self.rules
            .values()
            .filter(|e| port.is_none_or(|p| e.spec.port.as_deref() == Some(p)))
            .filter(|e| vni.is_none_or(|v| e.spec.vni == Some(v)))
            .map(|e| (e.spec.clone(), e.rule.counter))
            .collect()
    }

    /// The classifiers of every running VM port: its own rules and its VNI's.
    pub fn compile(&self, ports: &[PortRef], max_ports: usize) -> AclTables {
        let mut t = AclTables { ports: (0..max_ports).map(|_| None).collect() };
        for p in ports {
            let (Some(id), Some(PortRole::Vm)) = (p.id, p.role) else { continue };
            let mine = |dir: AclDir| -> Vec<Rule> {
                self.rules
                    .values()
                    .filter(|e| e.spec.dir.unwrap_or(AclDir::In) == dir)
                    .filter(|e| {
                        e.spec.port.as_deref() == Some(p.name.as_str()) || (e.spec.vni.is_some() && e.spec.vni == p.vni)
                    })
                    .map(|e| e.rule.clone())
                    .collect()
            };
            let (ingress, egress) = (mine(AclDir::In), mine(AclDir::Out));
            let default = self.defaults.get(&p.name).copied().unwrap_or(AclAction::Allow);
            if ingress.is_empty() && egress.is_empty() && default == AclAction::Allow {
                continue;
            }
            if let Some(slot) = t.ports.get_mut(id as usize) {
                *slot = Some(PortAcl {
                    ingress: Classifier::new(ingress),
                    egress: Classifier::new(egress),
                    default: verdict(default),
                });
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Vec<PortRef> {
        use crate::overlay::port_ref;
        vec![port_ref("vm1", 0, PortRole::Vm, Some(100)), port_ref("up0", 1, PortRole::Uplink, None)]
    }

    fn spec(port: Option<&str>) -> AclRuleSpec {
        AclRuleSpec {
            id: None,
            priority: 10,
            port: port.map(Into::into),
            vni: None,
            dir: None,
            src: None,
            dst: None,
            proto: None,
            sport: None,
            dport: None,
            icmp_type: None,
            action: AclAction::Deny,
        }
    }

    #[test]
    fn bad_rules_are_refused_by_field() {
        let p = ports();
        let net = |v: u32| v == 100;
        let e = |s: AclRuleSpec| compile_rule(&s, &p, &net).unwrap_err();
        assert!(e(AclRuleSpec { src: Some("10.0.0.0/33".into()), ..spec(Some("vm1")) }).starts_with("src:"));
        assert!(e(AclRuleSpec { dst: Some("banana".into()), ..spec(Some("vm1")) }).starts_with("dst:"));
        assert!(e(AclRuleSpec { src: Some("10.0.0.0/8".into()), dst: Some("fd00::/8".into()), ..spec(Some("vm1")) })
            .contains("same IP family"));
        assert!(e(AclRuleSpec { proto: Some("sctpx".into()), ..spec(Some("vm1")) }).starts_with("proto: \"sctpx\""));
        assert!(e(AclRuleSpec { proto: Some("tcp".into()), dport: Some("80-22".into()), ..spec(Some("vm1")) })
            .contains("low end above its high end"));
        assert!(e(AclRuleSpec { dport: Some("80".into()), ..spec(Some("vm1")) }).contains("need --proto tcp or udp"));
        assert!(e(AclRuleSpec { proto: Some("tcp".into()), dport: Some("70000".into()), ..spec(Some("vm1")) })
            .starts_with("dport:"));
        assert!(e(spec(Some("nope"))).starts_with("port: no port named"));
        assert!(e(spec(Some("up0"))).contains("not a VM port"));
        assert!(e(AclRuleSpec { vni: Some(7), ..spec(None) }).starts_with("vni: no network 7"));
        assert!(e(spec(None)).contains("exactly one of"));
        assert!(e(AclRuleSpec { proto: Some("icmp".into()), src: Some("fd00::/8".into()), ..spec(Some("vm1")) })
            .contains("icmp is for IPv4"));
        let ok = compile_rule(
            &AclRuleSpec { proto: Some("udp".into()), sport: Some("1024-2047".into()), ..spec(Some("vm1")) },
            &p,
            &net,
        )
        .unwrap();
        assert_eq!((ok.proto, ok.sport, ok.dport), (Some(17), (1024, 2047), ANY_PORT));
    }

    #[test]
    fn ids_slots_and_atomic_replace() {
        let p = ports();
        let net = |v: u32| v == 100;
        let mut a = Acls::default();
        assert_eq!(a.add(spec(Some("vm1")), &p, &net).unwrap(), 1);
        assert_eq!(a.add(spec(Some("vm1")), &p, &net).unwrap(), 2);
        assert!(a
            .add(AclRuleSpec { id: Some(2), ..spec(Some("vm1")) }, &p, &net)
            .unwrap_err()
            .contains("already exists"));
        let s1 = a.slot(1).unwrap();
        a.del(1).unwrap();
        assert!(a.del(1).unwrap_err().contains("no ACL rule 1"));
        assert_eq!(a.add(AclRuleSpec { id: Some(9), ..spec(Some("vm1")) }, &p, &net).unwrap(), 9);
        assert_eq!(a.slot(9), Some(s1), "the freed slot is reused");
        // A replace with one bad rule changes nothing and names it.
        let before = a.specs();
        let bad = vec![spec(Some("vm1")), AclRuleSpec { src: Some("x".into()), ..spec(Some("vm1")) }];
        assert!(a.replace(bad, &p, &net).unwrap_err().starts_with("rules[1]: src:"));
        assert_eq!(a.specs(), before);
        let keep2 = a.slot(2);
        let good = vec![AclRuleSpec { id: Some(2), ..spec(Some("vm1")) }, spec(Some("vm1")), spec(Some("vm1"))];
        a.replace(good, &p, &net).unwrap();
        assert_eq!(a.specs().len(), 3);
        assert_eq!(a.slot(2), keep2, "a rule that keeps its id keeps its counter");
        let slots: std::collections::BTreeSet<_> = [2, 3, 4].iter().map(|id| a.slot(*id).unwrap()).collect();
        assert_eq!(slots.len(), 3, "distinct slots");
        // Compiled: vm1 gets an ingress classifier.
        let t = a.compile(&p, 4);
        assert_eq!(t.ports[0].as_ref().map(|acl| acl.ingress.len()), Some(3));
        assert!(t.ports[1].is_none());
    }
}
