use super::*;
use crate::ports::port_ref;
use pipelines::acl::ANY_PORT;

fn ports() -> Vec<PortRef> {
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
    let mut a = Acl::default();
    assert_eq!(a.add(spec(Some("vm1")), &p, &net).unwrap(), 1);
    assert_eq!(a.add(spec(Some("vm1")), &p, &net).unwrap(), 2);
    assert!(a.add(AclRuleSpec { id: Some(2), ..spec(Some("vm1")) }, &p, &net).unwrap_err().contains("already exists"));
    let s1 = a.slot(1).unwrap();
    a.del(1).unwrap();
    assert!(a.del(1).unwrap_err().contains("no ACL rule 1"));
    assert_eq!(a.add(AclRuleSpec { id: Some(9), ..spec(Some("vm1")) }, &p, &net).unwrap(), 9);
    assert_eq!(a.slot(9), Some(s1), "the freed slot is reused");
    // A replace with one bad rule changes nothing and names it.
    let before = a.specs();
    let bad = vec![spec(Some("vm1")), AclRuleSpec { src: Some("x".into()), ..spec(Some("vm1")) }];
    assert!(a.replace(bad, BTreeMap::new(), &p, &net).unwrap_err().starts_with("rules[1]: src:"));
    assert_eq!(a.specs(), before);
    let keep2 = a.slot(2);
    let good = vec![AclRuleSpec { id: Some(2), ..spec(Some("vm1")) }, spec(Some("vm1")), spec(Some("vm1"))];
    a.replace(good, BTreeMap::new(), &p, &net).unwrap();
    assert_eq!(a.specs().len(), 3);
    assert_eq!(a.slot(2), keep2, "a rule that keeps its id keeps its counter");
    let slots: std::collections::BTreeSet<_> = [2, 3, 4].iter().map(|id| a.slot(*id).unwrap()).collect();
    assert_eq!(slots.len(), 3, "distinct slots");
    // Compiled: vm1 gets an ingress classifier.
    let t = a.compile(&p, 4);
    assert_eq!(t.ports[0].as_ref().map(|acl| acl.ingress.len()), Some(3));
    assert!(t.ports[1].is_none());
}

#[test]
fn only_the_ports_a_change_touches_are_compiled_again() {
    let p = vec![
        port_ref("vm1", 0, PortRole::Vm, Some(100)),
        port_ref("vm2", 1, PortRole::Vm, Some(100)),
        port_ref("vm3", 2, PortRole::Vm, Some(200)),
    ];
    let net = |v: u32| v == 100 || v == 200;
    let mut a = Acl::default();
    for port in ["vm1", "vm2", "vm3"] {
        a.add(spec(Some(port)), &p, &net).unwrap();
    }
    let t1 = a.compile(&p, 4);
    let same = |x: &AclTables, y: &AclTables, i: usize| match (&x.ports[i], &y.ports[i]) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    };
    // A rule on vm2: only vm2 is new.
    let id = a.add(spec(Some("vm2")), &p, &net).unwrap();
    let t2 = a.compile(&p, 4);
    assert!(same(&t1, &t2, 0) && !same(&t1, &t2, 1) && same(&t1, &t2, 2));
    assert_eq!(t2.ports[1].as_ref().unwrap().ingress.len(), 2);
    // A rule on VNI 100: vm1 and vm2, not vm3.
    a.add(AclRuleSpec { vni: Some(100), ..spec(None) }, &p, &net).unwrap();
    let t3 = a.compile(&p, 4);
    assert!(!same(&t2, &t3, 0) && !same(&t2, &t3, 1) && same(&t2, &t3, 2));
    // A default, a deletion: the port concerned.
    a.set_default("vm3", AclAction::Deny, &p).unwrap();
    a.del(id).unwrap();
    let t4 = a.compile(&p, 4);
    assert!(same(&t3, &t4, 0) && !same(&t3, &t4, 1) && !same(&t3, &t4, 2));
    // What is shared is what compiling everything afresh gives.
    let mut fresh = Acl::default();
    fresh.replace(a.specs(), a.defaults(), &p, &net).unwrap();
    let all = fresh.compile(&p, 4);
    for i in 0..3 {
        let (x, y) = (t4.ports[i].as_ref().unwrap(), all.ports[i].as_ref().unwrap());
        assert_eq!(
            (x.ingress.len(), x.egress.len(), x.default),
            (y.ingress.len(), y.egress.len(), y.default),
            "port {i}"
        );
    }
}
