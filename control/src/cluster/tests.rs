use super::{
    keys::{EndpointRecord, Key, Keys, NodeRecord},
    parse_store,
    view::{diff, Op, Touched, View},
};
use std::net::{IpAddr, Ipv4Addr};

fn node(vtep: [u8; 4]) -> Vec<u8> {
    serde_json::to_vec(&NodeRecord { vtep: Ipv4Addr::from(vtep), udp_port: 4789, mac: None, boot: 1, vnis: vec![100] })
        .unwrap()
}

fn ep(mac: &str, ip: &str) -> Vec<u8> {
    let rec = EndpointRecord { mac: mac.into(), ips: vec![ip.parse().unwrap()], port: "p".into(), container: None };
    serde_json::to_vec(&rec).unwrap()
}

#[test]
fn keys_round_trip_and_foreign_keys_are_ignored() {
    let k = Keys::new("/vswitch/");
    assert_eq!(k.endpoint(100, "a", "02:00:00:00:00:01"), "/vswitch/endpoints/100/a/02:00:00:00:00:01");
    assert_eq!(
        k.parse("/vswitch/endpoints/100/a/02:00:00:00:00:01"),
        Some(Key::Endpoint { vni: 100, node: "a".into(), mac: "02:00:00:00:00:01".into() })
    );
    assert_eq!(k.parse("/vswitch/nodes/b"), Some(Key::Node("b".into())));
    assert_eq!(k.parse("/vswitch/nodes/b/x"), None);
    assert_eq!(k.parse("/vswitchx/nodes/b"), None);
    assert_eq!(k.parse("/vswitch/endpoints/x/a/m"), None);
    assert_eq!(k.parse("/vswitch/policy/1"), None);
}

#[test]
fn store_urls_are_checked() {
    assert_eq!(parse_store("etcd://127.0.0.1:2379,h:1").unwrap(), vec!["http://127.0.0.1:2379", "http://h:1"]);
    assert!(parse_store("http://127.0.0.1:2379").unwrap_err().contains("etcd://"));
    assert!(parse_store("etcd://127.0.0.1").unwrap_err().contains("HOST:PORT"));
    assert!(parse_store("etcd://:80").is_err());
}

#[test]
fn other_nodes_endpoints_become_entries_and_own_ones_do_not() {
    let k = Keys::new("/v");
    let mut v = View::new("a");
    v.endpoints.insert(100, Default::default());
    let mut t = Touched::default();
    v.apply(&k, "/v/nodes/a", Some(&node([10, 0, 0, 1])), 1, &mut t);
    v.apply(&k, "/v/nodes/b", Some(&node([10, 0, 0, 2])), 2, &mut t);
    v.apply(&k, "/v/endpoints/100/a/02:00:00:00:00:0a", Some(&ep("02:00:00:00:00:0a", "10.1.0.10")), 3, &mut t);
    v.apply(&k, "/v/endpoints/100/b/02:00:00:00:00:0b", Some(&ep("02:00:00:00:00:0b", "10.1.0.11")), 4, &mut t);
    // A network not watched is not held.
    v.apply(&k, "/v/endpoints/200/b/02:00:00:00:00:0c", Some(&ep("02:00:00:00:00:0c", "10.2.0.1")), 5, &mut t);
    assert!(t.nodes && t.vnis.contains(&100) && !v.endpoints.contains_key(&200));
    let d = v.derive(100);
    let b: Ipv4Addr = "10.0.0.2".parse().unwrap();
    assert_eq!(d.macs.len(), 1);
    assert_eq!(d.macs.values().next(), Some(&b));
    assert_eq!(d.ips.get(&"10.1.0.11".parse::<IpAddr>().unwrap()).map(|x| x.1), Some(b));
    assert_eq!(d.flood.iter().copied().collect::<Vec<_>>(), vec![b]);

    // A workload moving from b to c: while both claim the MAC, the newer claim wins.
    v.apply(&k, "/v/nodes/c", Some(&node([10, 0, 0, 3])), 6, &mut t);
    v.apply(&k, "/v/endpoints/100/c/02:00:00:00:00:0b", Some(&ep("02:00:00:00:00:0b", "10.1.0.11")), 7, &mut t);
    let moved = v.derive(100);
    assert_eq!(moved.macs.values().next(), Some(&"10.0.0.3".parse().unwrap()));
    let mut ops = Vec::new();
    diff(100, &d, &moved, &mut ops);
    assert!(ops
        .iter()
        .any(|o| matches!(o, Op::Mac { vtep: Some(ip), .. } if *ip == "10.0.0.3".parse::<Ipv4Addr>().unwrap())));
    assert!(ops.iter().any(|o| matches!(o, Op::Flood { vteps, .. } if vteps.len() == 2)));

    // Deleting every record takes everything back out.
    v.apply(&k, "/v/endpoints/100/b/02:00:00:00:00:0b", None, 8, &mut t);
    v.apply(&k, "/v/endpoints/100/c/02:00:00:00:00:0b", None, 9, &mut t);
    let empty = v.derive(100);
    let mut ops = Vec::new();
    diff(100, &moved, &empty, &mut ops);
    assert_eq!(ops.iter().filter(|o| matches!(o, Op::Mac { vtep: None, .. })).count(), 1);
    assert_eq!(ops.iter().filter(|o| matches!(o, Op::Ip { at: None, .. })).count(), 1);
    assert!(empty.flood.is_empty());
}

#[test]
fn an_endpoint_of_an_unknown_node_waits_for_its_node_record() {
    let k = Keys::new("/v");
    let mut v = View::new("a");
    v.endpoints.insert(100, Default::default());
    let mut t = Touched::default();
    v.apply(&k, "/v/endpoints/100/b/02:00:00:00:00:0b", Some(&ep("02:00:00:00:00:0b", "10.1.0.11")), 1, &mut t);
    assert!(v.derive(100).macs.is_empty());
    v.apply(&k, "/v/nodes/b", Some(&node([10, 0, 0, 2])), 2, &mut t);
    assert_eq!(v.derive(100).macs.len(), 1);
    // A node that claims this node's own VTEP is not sent traffic.
    v.apply(&k, "/v/nodes/a", Some(&node([10, 0, 0, 2])), 3, &mut t);
    assert!(v.derive(100).macs.is_empty());
    v.apply(&k, "/v/nodes/a", Some(&node([10, 0, 0, 1])), 4, &mut t);
    // Garbage is skipped and counted, and does not disturb the rest.
    v.apply(&k, "/v/endpoints/100/b/02:00:00:00:00:0c", Some(b"{not json"), 5, &mut t);
    assert_eq!(v.undecodable.len(), 1);
    assert_eq!(v.derive(100).macs.len(), 1);
}

mod shared_state {
    use super::super::{
        api::SharedState,
        shared::{edit, edits, run, Edit, Owned, ACL_IDS},
    };
    use crate::{api::*, state::DesiredState};

    fn req(v: serde_json::Value) -> Request {
        serde_json::from_value(v).unwrap()
    }

    fn svc(backend: &str) -> Request {
        req(serde_json::json!({"cmd": "service_add", "name": "web", "vni": 100, "vip": "10.1.0.100:80",
            "proto": "tcp", "backends": [backend]}))
    }

    #[test]
    fn requests_run_on_the_shared_state_as_they_run_locally() {
        let s = SharedState::default();
        let (s, _) = run(&s, req(serde_json::json!({"cmd": "network_add", "vni": 100}))).unwrap();
        let (s, _) = run(&s, svc("10.1.0.11:80")).unwrap();
        let rule = |port: Option<&str>| {
            let mut r = serde_json::json!({"cmd": "acl_add", "priority": 10, "vni": 100, "action": "deny"});
            if let Some(p) = port {
                r["port"] = p.into();
                r.as_object_mut().unwrap().remove("vni");
            }
            req(r)
        };
        let (s, reply) = run(&s, rule(None)).unwrap();
        assert_eq!(reply["id"], ACL_IDS, "the cluster's rules are numbered from its own range");
        let (s, reply) = run(&s, rule(None)).unwrap();
        assert_eq!(reply["id"], ACL_IDS + 1);
        let e = s.entries().unwrap();
        let keys: Vec<&str> = e.keys().map(String::as_str).collect();
        assert_eq!(keys, ["acl/2147483648", "acl/2147483649", "networks/100", "services/web"]);
        // Refused as locally, or because they are each node's own.
        assert!(run(&s, rule(Some("vm1"))).unwrap_err().contains("--vni"));
        assert!(run(&s, req(serde_json::json!({"cmd": "port_del", "name": "vm1"})))
            .unwrap_err()
            .contains("--cluster takes"));
        assert!(run(&s, req(serde_json::json!({"cmd": "acl_del", "id": 7})))
            .unwrap_err()
            .contains("not a cluster rule"));
        let bad = serde_json::json!({"cmd": "service_set_backends", "name": "nope", "backends": []});
        assert!(run(&s, req(bad)).unwrap_err().contains("no service"));
        let del = || req(serde_json::json!({"cmd": "network_del", "vni": 100}));
        assert!(run(&s, del()).unwrap_err().contains("network 100 still has ACL rules (2"));
        let mut rules_gone = s.clone();
        rules_gone.acl.clear();
        assert!(run(&rules_gone, del()).unwrap_err().contains("still has services (web)"));
        // Round trip through the store's entries.
        let (back, bad) = SharedState::from_entries(&e);
        assert!(bad.is_empty());
        assert_eq!(back.entries().unwrap(), e);
    }

    #[test]
    fn a_node_takes_the_cluster_entries_and_keeps_its_own() {
        let (shared, _) =
            run(&SharedState::default(), req(serde_json::json!({"cmd": "network_add", "vni": 200}))).unwrap();
        let (shared, _) = run(&shared, req(serde_json::json!({"cmd": "network_add", "vni": 100}))).unwrap();
        let entries = shared.entries().unwrap();
        // The node has its own network 100 and the cluster's old network 300.
        let mut local: DesiredState = serde_json::from_value(serde_json::json!({
            "format": 1, "networks": [{"vni": 100}, {"vni": 300}], "cluster": {"revision": 5, "networks": [300]},
            "leases": [{"vni": 300, "ip": "10.3.0.2", "len": 24, "identity": "c2", "mac": "0a:00:00:00:00:03", "hold": 60}]
        }))
        .unwrap();
        let mut owned = local.cluster.clone().unwrap();
        let (todo, blocked) = edits(&local, &owned, &entries);
        assert_eq!(blocked.len(), 1, "{blocked:?}");
        assert!(blocked[0].starts_with("networks/100"), "the node's own network 100 stays: {blocked:?}");
        assert!(
            matches!(&todo[..], [Edit::Remove(r), Edit::Put(p, _)] if r == "networks/300" && p == "networks/200"),
            "{todo:?}"
        );
        for e in &todo {
            edit(&mut local, &mut owned, e).unwrap();
        }
        let vnis: Vec<u32> = local.networks.iter().map(|n| n.vni).collect();
        assert_eq!(vnis, [100, 200]);
        assert!(local.leases.is_empty(), "the reservation went with network 300");
        assert_eq!(owned, Owned { revision: 5, networks: [200].into(), ..Owned::default() });
        // Taken in once, nothing more to do.
        assert!(edits(&local, &owned, &entries).0.is_empty());
    }
}

#[test]
fn identity_keys_carry_any_workload_name() {
    use super::keys::{decode_identity, encode_identity};
    let k = Keys::new("/vswitch");
    let key = k.identity(100, "db/web-0", "a");
    assert_eq!(key, "/vswitch/identities/100/db%2Fweb-0/a");
    assert_eq!(k.parse(&key), Some(Key::Identity { vni: 100, identity: "db/web-0".into(), node: "a".into() }));
    for id in ["plain", "ns/pod", "100%/x y", "ünïcode"] {
        assert_eq!(decode_identity(&encode_identity(id)).as_deref(), Some(id));
        assert!(!encode_identity(id).contains('/'));
    }
    assert_eq!(decode_identity("bad%zz"), None);
}
