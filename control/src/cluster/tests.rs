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
