use super::*;
use crate::ports::api::PortRole;
use pipelines::wire::Mac;

fn port(name: &str, id: u16, role: PortRole) -> PortRef {
    PortRef {
        name: name.into(),
        id: Some(id),
        role: Some(role),
        vni: Some(100),
        mtu: 1500,
        mac: Mac([2, 0, 0, 0, 0, id as u8]),
        rx_cores: 1,
    }
}

fn spec(port: &str) -> StatefulSpec {
    StatefulSpec { port: port.into(), on: true, liberal: false, sticky: false, pickup: false, max_sessions: None }
}

#[test]
fn only_vm_ports_turn_stateful_and_errors_say_what_to_do() {
    let ports = [port("vm1", 0, PortRole::Vm), port("up", 1, PortRole::Uplink)];
    let mut ct = Conntrack { capacity: Some(1000), ..Default::default() };
    assert!(ct.set_stateful(spec("nope"), &ports).unwrap_err().contains("port list"));
    assert!(ct.set_stateful(spec("up"), &ports).unwrap_err().contains("not a VM port"));
    assert!(ct
        .set_stateful(StatefulSpec { max_sessions: Some(5000), ..spec("vm1") }, &ports)
        .unwrap_err()
        .contains("1000"));
    ct.set_stateful(spec("vm1"), &ports).unwrap();
    assert_eq!(ct.specs().len(), 1);
    ct.set_stateful(StatefulSpec { on: false, ..spec("vm1") }, &ports).unwrap();
    assert!(ct.specs().is_empty());
}

#[test]
fn timeouts_are_validated_and_defaults_not_stored() {
    let mut ct = Conntrack::default();
    let set = |pairs: &[(&str, u32)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
    assert!(ct.set_timeouts(&set(&[("tcp_bogus", 5)])).unwrap_err().contains("tcp_established"));
    assert!(ct.set_timeouts(&set(&[("udp", 0)])).is_err());
    ct.set_timeouts(&set(&[("udp", 60), ("tcp_established", 432_000)])).unwrap();
    assert_eq!(ct.timeouts(), set(&[("udp", 60)]));
    assert_eq!(ct.all_timeouts()["udp"], 60);
    assert_eq!(ct.all_timeouts()["icmp"], 30);
}

#[test]
fn metrics_come_with_the_table() {
    let ports = [port("vm1", 0, PortRole::Vm)];
    let mut ct = Conntrack { capacity: Some(64), ..Default::default() };
    assert_eq!(ct.metrics(), "");
    ct.set_stateful(spec("vm1"), &ports).unwrap();
    let mut t = Tables { snap: dataplane::snapshot::Snapshot::empty(1), l2: pipelines::tables::L2Tables::default() };
    ct.compile(&ports, 1, &mut t);
    let text = ct.metrics();
    assert!(text.contains("# TYPE vswitch_conntrack_sessions gauge\nvswitch_conntrack_sessions 0\n"), "{text}");
    assert!(text.contains("vswitch_conntrack_capacity 64\n"), "{text}");
    assert!(text.contains("vswitch_conntrack_invalid_total{reason=\"tcp_window\"} 0\n"), "{text}");
}

/// The table is made with the first stateful port and kept; a port's epoch moves only
/// when its compiled rules do.
#[test]
fn compile_keeps_the_table_and_bumps_epochs_on_rule_changes() {
    let ports = [port("vm1", 0, PortRole::Vm), port("vm2", 1, PortRole::Vm)];
    let mut ct = Conntrack { capacity: Some(64), ..Default::default() };
    let tables =
        || Tables { snap: dataplane::snapshot::Snapshot::empty(1), l2: pipelines::tables::L2Tables::default() };
    let mut t = tables();
    ct.compile(&ports, 2, &mut t);
    assert!(t.l2.ct.table.is_none());
    ct.set_stateful(spec("vm2"), &ports).unwrap();
    ct.compile(&ports, 2, &mut t);
    let table = t.l2.ct.table.clone().unwrap();
    assert_eq!(t.l2.ct.port(1).map(|p| p.epoch), Some(1));
    assert!(t.l2.ct.port(0).is_none());
    // Same rules: same epoch, same table.
    let mut t2 = tables();
    ct.compile(&ports, 2, &mut t2);
    assert!(Arc::ptr_eq(&table, t2.l2.ct.table.as_ref().unwrap()));
    assert_eq!(t2.l2.ct.port(1).map(|p| p.epoch), Some(1));
    // New rules for vm2: a new epoch.
    let mut acl = pipelines::acl::AclTables { ports: (0..MAX_PORTS).map(|_| None).collect() };
    acl.ports[1] = Some(Arc::new(pipelines::acl::PortAcl {
        ingress: pipelines::acl::Classifier::new(vec![]),
        egress: pipelines::acl::Classifier::new(vec![]),
        default: pipelines::acl::Verdict::Deny,
    }));
    let mut t3 = tables();
    t3.l2.acl = Arc::new(acl);
    ct.compile(&ports, 2, &mut t3);
    assert_eq!(t3.l2.ct.port(1).map(|p| p.epoch), Some(2));
}
