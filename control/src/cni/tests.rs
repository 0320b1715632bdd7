use super::{
    api::*,
    host_iface,
    ipam::{state, Ask, Leases, Reuse},
    plugin::{identity, run, Invocation},
    spec::{self, code},
};
use ipnetwork::IpNetwork;
use std::net::IpAddr;

fn ask<'a>(identity: &'a str, container: &'a str, want: Option<&str>, now: u64) -> Ask<'a> {
    Ask {
        vni: 100,
        net: "10.1.0.0/29".parse().unwrap(),
        identity,
        container,
        want: want.map(|w| w.parse().unwrap()),
        mac: "0a:00:00:00:00:01",
        hold: 60,
        now,
        within: None,
        reuse: Reuse::Any,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_workload_gets_its_address_back_and_others_wait_for_its_hold() {
    let mut l = Leases::default();
    let gw = |a: IpAddr| a == ip("10.1.0.1");
    let (a, _) = l.lease(&ask("pod-a", "c1", None, 0), &gw).unwrap();
    assert_eq!(a.ip, ip("10.1.0.2"), "the gateway is skipped, the network address too");
    let (b, _) = l.lease(&ask("pod-b", "c2", None, 0), &gw).unwrap();
    assert_eq!(b.ip, ip("10.1.0.3"));
    // pod-a goes; its address stays its own for 60 s.
    assert_eq!(l.detach(100, "c1", 10).len(), 1);
    assert_eq!(state(&l.by_ip[&(100, ip("10.1.0.2"))], 10), "reserved");
    let (c, _) = l.lease(&ask("pod-c", "c3", None, 20), &gw).unwrap();
    assert_eq!(c.ip, ip("10.1.0.4"), "a reserved address is not given to another workload");
    let e = l.lease(&ask("pod-d", "c4", Some("10.1.0.2"), 20), &gw).unwrap_err();
    assert!(e.contains("reserved for workload \"pod-a\"") && e.contains("ipam release 100 10.1.0.2"), "{e}");
    let (again, _) = l.lease(&ask("pod-a", "c5", None, 30), &gw).unwrap();
    assert_eq!((again.ip, again.container.as_deref()), (ip("10.1.0.2"), Some("c5")));
    // The same workload attached twice at once is refused.
    let e = l.lease(&ask("pod-a", "c6", None, 30), &gw).unwrap_err();
    assert!(e.contains("attached to container c5"), "{e}");
}

#[test]
fn expired_reservations_are_reused_only_when_nothing_else_is_left() {
    let mut l = Leases::default();
    let none = |_: IpAddr| false;
    // A /29 has six host addresses: .1 to .6.
    for (i, who) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        let (x, _) = l.lease(&ask(who, who, None, 0), &none).unwrap();
        assert_eq!(x.ip, ip(&format!("10.1.0.{}", i + 1)));
    }
    let e = l.lease(&ask("g", "g", None, 0), &none).unwrap_err();
    assert!(e.contains("no address left"), "{e}");
    l.detach(100, "c", 0);
    assert!(l.lease(&ask("g", "g", None, 59), &none).is_err(), "still reserved");
    let (g, replaced) = l.lease(&ask("g", "g", None, 60), &none).unwrap();
    assert_eq!(g.ip, ip("10.1.0.3"));
    assert_eq!(replaced.map(|r| r.identity), Some("c".into()), "the expired lease is replaced, for the journal");
}

#[test]
fn asked_addresses_are_checked_and_moving_drops_the_old_lease() {
    let mut l = Leases::default();
    let gw = |a: IpAddr| a == ip("10.1.0.1");
    for bad in ["10.1.0.0", "10.1.0.7", "10.2.0.2"] {
        assert!(l.lease(&ask("a", "c1", Some(bad), 0), &gw).is_err(), "{bad}");
    }
    assert!(l.lease(&ask("a", "c1", Some("10.1.0.1"), 0), &gw).unwrap_err().contains("in use"));
    l.lease(&ask("a", "c1", Some("10.1.0.5"), 0), &gw).unwrap();
    l.detach(100, "c1", 0);
    let (x, old) = l.lease(&ask("a", "c2", Some("10.1.0.6"), 1), &gw).unwrap();
    assert_eq!(x.ip, ip("10.1.0.6"));
    assert_eq!(old.map(|o| o.ip), Some(ip("10.1.0.5")));
    assert_eq!(l.by_ip.len(), 1);
    assert!(l.release(100, ip("10.1.0.6")).unwrap_err().contains("attached"));
    l.detach(100, "c2", 2);
    l.release(100, ip("10.1.0.6")).unwrap();
    assert!(l.by_ip.is_empty());
}

#[test]
fn ipv6_subnets_lease_without_scanning_them() {
    let mut l = Leases::default();
    let net: IpNetwork = "fd00:1::/64".parse().unwrap();
    let a = Ask { net, ..ask("a", "c1", None, 0) };
    let (x, _) = l.lease(&a, &|i| i == ip("fd00:1::1")).unwrap();
    assert_eq!(x.ip, ip("fd00:1::2"));
    assert_eq!(x.len, 64);
}

#[test]
fn host_ends_are_named_the_same_every_time_and_fit_the_kernel() {
    let k = |c: &str| AttachmentKey { network: "net".into(), container: c.into(), ifname: "eth0".into() };
    assert_eq!(host_iface(&k("abc")), host_iface(&k("abc")));
    assert_ne!(host_iface(&k("abc")), host_iface(&k("abd")));
    assert_eq!(host_iface(&k("abc")).len(), 15);
}

fn inv(command: &str, args: &str) -> Invocation {
    Invocation {
        command: command.into(),
        container: "c0ffee".into(),
        netns: "/var/run/netns/x".into(),
        ifname: "eth0".into(),
        args: args.into(),
        path: String::new(),
    }
}

#[test]
fn identity_is_the_pod_else_the_container() {
    assert_eq!(identity(&inv("ADD", "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=db-0")), "web/db-0");
    assert_eq!(identity(&inv("ADD", "K8S_POD_NAME=db-0")), "db-0");
    assert_eq!(identity(&inv("ADD", "")), "c0ffee");
}

#[test]
fn version_and_errors_are_spelled_as_the_spec_says() {
    let v = run(&inv("VERSION", ""), br#"{"cniVersion":"0.4.0"}"#).unwrap().unwrap();
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(v["supportedVersions"], serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]));
    let e = run(&inv("ADD", ""), br#"{"cniVersion":"9.9.9","name":"n","type":"vswitch"}"#).unwrap_err();
    assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
    let e = run(&inv("ADD", ""), b"{not json").unwrap_err();
    assert_eq!(e.code, code::DECODE_FAILURE);
    let e = run(&inv("ADD", ""), br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch"}"#).unwrap_err();
    assert_eq!((e.code, e.cni_version.as_str()), (code::INVALID_CONFIG, "1.0.0"));
    assert!(e.msg.contains("vni"), "{}", e.msg);
    let e = run(&inv("CHECK", ""), br#"{"cniVersion":"0.3.1","name":"n","type":"vswitch","vni":1}"#).unwrap_err();
    assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
    let e = run(&inv("BOGUS", ""), br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","vni":1}"#).unwrap_err();
    assert_eq!(e.code, code::INVALID_ENV);
    let json = serde_json::to_value(&e).unwrap();
    assert!(json["msg"].is_string() && json["code"] == 4 && json["cniVersion"] == "1.0.0", "{json}");
}

#[test]
fn a_dead_socket_is_try_again_later() {
    let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","vni":1,"socket":"/nonexistent/vswitchd.sock"}"#;
    let e = run(&inv("ADD", ""), conf).unwrap_err();
    assert_eq!(e.code, code::TRY_AGAIN_LATER, "{e:?}");
    let e = run(&inv("STATUS", ""), conf).unwrap_err();
    assert_eq!(e.code, code::NOT_AVAILABLE, "{e:?}");
}

#[test]
fn results_follow_the_version_asked() {
    let r = AttachResult {
        host_iface: "vsc0".into(),
        host_mac: "02:00:00:00:00:01".into(),
        ifname: "eth0".into(),
        mac: "0a:00:00:00:00:02".into(),
        netns: "/run/netns/x".into(),
        mtu: 1450,
        ips: vec![
            IpConfig { address: "10.1.0.2/24".into(), gateway: Some(ip("10.1.0.1")) },
            IpConfig { address: "fd00::2/64".into(), gateway: None },
        ],
        routes: vec![Route { dst: "0.0.0.0/0".into(), gw: Some(ip("10.1.0.1")) }],
    };
    let old = spec::add_result("0.4.0", &r);
    assert_eq!(old["ips"][0]["version"], "4");
    assert_eq!(old["ips"][1]["version"], "6");
    assert!(old["interfaces"][1].get("mtu").is_none());
    let new = spec::add_result("1.1.0", &r);
    assert!(new["ips"][0].get("version").is_none());
    assert_eq!(new["ips"][0]["interface"], 1);
    assert_eq!(new["interfaces"][1]["sandbox"], "/run/netns/x");
    assert_eq!(new["interfaces"][1]["mtu"], 1450);
    assert_eq!(new["routes"][0], serde_json::json!({"dst": "0.0.0.0/0", "gw": "10.1.0.1"}));
    // What we print reads back as an IPAM result (a chained plugin's prevResult).
    let (ips, routes) = spec::ipam_result(&new).unwrap();
    assert_eq!((ips, routes), (r.ips.clone(), r.routes.clone()));
}

#[test]
fn apply_keeps_what_belongs_to_attachments_and_takes_the_rest_from_the_file() {
    use crate::state::DesiredState;
    let running: DesiredState = serde_json::from_value(serde_json::json!({
        "format": 1,
        "ports": [{"name": "vm1", "devargs": "net_null0"}, {"name": "vsc1", "devargs": "kernel:iface=vsc1,backend=packet"}],
        "endpoints": [{"vni": 100, "ip": "10.1.0.2", "mac": "0a:00:00:00:00:02", "port": "vsc1", "container": "c1"}],
        "acl": [{"id": 1, "priority": 1, "port": "vsc1", "action": "allow"}, {"id": 2, "priority": 1, "port": "vm1", "action": "deny"}],
        "acl_defaults": {"vsc1": "deny"},
        "stateful": [{"port": "vsc1"}],
        "qos": [{"port": "vsc1", "egress": {"rate": "10mbit"}}],
        "services": [{"name": "vsc1-tcp-8080", "vni": 100, "proto": "tcp", "backends": ["10.1.0.2:80"], "node_port": 8080}],
        "attachments": [{"network": "n", "container": "c1", "ifname": "eth0", "netns": "/run/netns/x", "identity": "c1",
                         "vni": 100, "port": "vsc1", "mac": "0a:00:00:00:00:02", "mtu": 1450,
                         "ips": [{"address": "10.1.0.2/24"}], "leased": true}],
        "leases": [{"vni": 100, "ip": "10.1.0.2", "len": 24, "identity": "c1", "mac": "0a:00:00:00:00:02",
                    "container": "c1", "hold": 60},
                   {"vni": 200, "ip": "10.2.0.2", "len": 24, "identity": "c2", "mac": "0a:00:00:00:00:03", "hold": 60}],
    }))
    .unwrap();
    // The operator's file: only vm1, with another rule, and nothing of the container's.
    let mut file: DesiredState = serde_json::from_value(serde_json::json!({
        "format": 1,
        "ports": [{"name": "vm1", "devargs": "net_null0"}],
        "acl": [{"id": 3, "priority": 2, "port": "vm1", "action": "allow"}],
    }))
    .unwrap();
    super::Cni::default().carry_into(&mut file, &running);
    assert_eq!(file.ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["vm1", "vsc1"]);
    assert_eq!(file.acl.iter().map(|r| r.id.unwrap()).collect::<Vec<_>>(), [3, 1]);
    assert_eq!(file.endpoints, running.endpoints);
    assert_eq!((file.acl_defaults, file.stateful, file.qos), (running.acl_defaults, running.stateful, running.qos));
    assert_eq!((file.services, file.attachments), (running.services, running.attachments));
    // The attached lease stays; the reservation in network 200, which the file leaves
    // out, goes with it.
    assert_eq!(file.leases, running.leases[..1]);
}

#[test]
fn in_a_cluster_new_addresses_come_from_this_nodes_blocks_only() {
    use super::ipam::{block_prefix, blocks};
    let net: IpNetwork = "10.1.0.0/24".parse().unwrap();
    assert_eq!(block_prefix(net), 28);
    let all: Vec<IpNetwork> = blocks(net).collect();
    assert_eq!(all.len(), 16);
    assert_eq!(all[1].to_string(), "10.1.0.16/28");
    assert_eq!(block_prefix("10.0.0.0/8".parse().unwrap()), 26);
    assert_eq!(block_prefix("10.0.0.0/30".parse().unwrap()), 30, "a subnet smaller than a block is one block");
    assert_eq!(block_prefix("fd00::/64".parse().unwrap()), 122);
    let mut l = Leases::default();
    let mine = [all[1]];
    let within = Ask { net, within: Some(&mine), ..ask("a", "c1", None, 0) };
    let (lease, _) = l.lease(&within, &|_| false).unwrap();
    assert_eq!(lease.ip, ip("10.1.0.16"), "the block's first address (not the subnet's first)");
    assert_eq!(l.room(100, net, &mine, &|_| false, Reuse::Any), 15);
    // A fixed address may be outside the node's blocks.
    let fixed = Ask { net, within: Some(&mine), ..ask("b", "c2", Some("10.1.0.200"), 0) };
    assert_eq!(l.lease(&fixed, &|_| false).unwrap().0.ip, ip("10.1.0.200"));
    // The last block's last address is the subnet's broadcast: not a host's.
    let last = [all[15]];
    for i in 0..15 {
        let id = format!("w{i}");
        let a = Ask { net, within: Some(&last), ..ask(&id, &id, None, 0) };
        l.lease(&a, &|_| false).unwrap();
    }
    let full = Ask { net, within: Some(&last), ..ask("x", "x", None, 0) };
    let e = l.lease(&full, &|_| false).unwrap_err();
    assert!(e.contains("blocks") && e.contains("full"), "{e}");
}

#[test]
fn in_a_cluster_an_expired_address_another_node_holds_is_not_given_again() {
    let net: IpNetwork = "10.1.0.0/24".parse().unwrap();
    let mine: Vec<IpNetwork> = vec![super::ipam::blocks(net).nth(1).unwrap()];
    let mut l = Leases::default();
    for i in 0..16 {
        let id = format!("w{i}");
        let a = Ask { net, within: Some(&mine), hold: 10, ..ask(&id, &id, None, 0) };
        l.lease(&a, &|_| false).unwrap();
        l.detach(100, &id, 0);
    }
    // Every reservation ran out; w0 (10.1.0.16) moved to another node and lives on there.
    let moved: std::collections::BTreeSet<IpAddr> = [ip("10.1.0.16")].into();
    let unknown = Reuse::NotHeldElsewhere(None);
    let known = Reuse::NotHeldElsewhere(Some(&moved));
    assert_eq!(l.room(100, net, &mine, &|_| false, Reuse::Any), 16);
    assert_eq!(l.room(100, net, &mine, &|_| false, unknown), 0, "while the store cannot say, none");
    assert_eq!(l.room(100, net, &mine, &|_| false, known), 15);
    let a = Ask { net, within: Some(&mine), reuse: unknown, ..ask("n", "n", None, 100) };
    assert!(l.lease(&a, &|_| false).unwrap_err().contains("full"));
    let a = Ask { net, within: Some(&mine), reuse: known, ..ask("n", "n", None, 100) };
    let (lease, replaced) = l.lease(&a, &|_| false).unwrap();
    assert_eq!(lease.ip, ip("10.1.0.17"), "the lowest expired address nobody holds");
    assert_eq!(replaced.unwrap().identity, "w1");
}

#[test]
fn a_network_goes_with_its_reservations_and_not_under_its_containers() {
    use crate::feature::Feature;
    let lease = |vni: u32, ip: &str, container: Option<&str>| -> crate::cni::api::LeaseSpec {
        serde_json::from_value(
            serde_json::json!({"vni": vni, "ip": ip, "len": 24, "identity": ip, "mac": "0a:00:00:00:00:02",
            "container": container, "hold": 60}),
        )
        .unwrap()
    };
    let mut cni = super::Cni::default();
    for l in [lease(100, "10.1.0.2", Some("c1")), lease(100, "10.1.0.3", None), lease(200, "10.2.0.2", None)] {
        cni.leases.by_ip.insert((l.vni, l.ip), l);
    }
    let why = cni.network_in_use(100).expect("c1 is attached in it");
    assert!(why.contains("network 100 still has containers attached (1, e.g. c1 at 10.1.0.2)"), "{why}");
    assert_eq!(cni.network_in_use(200), None, "a reservation does not hold a network");
    let changes = cni.network_removed(200);
    assert_eq!(changes.len(), 1);
    assert_eq!(cni.leases.by_ip.keys().map(|(v, _)| *v).collect::<Vec<_>>(), [100, 100]);
}
