use super::*;

fn ctx_add(s: &mut Services, spec: ServiceSpec) -> Result<Handled, String> {
    let ports: Vec<PortRef> = Vec::new();
    let ctx = Ctx { ports: &ports, has_network: &|v| v == 100, vtep_ip: None, shared: None };
    s.handle(ServiceRequest::ServiceAdd(spec), &ctx)
}

fn spec(name: &str, vip: &str, backends: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        vni: 100,
        vip: vip.into(),
        proto: "tcp".into(),
        backends: backends.iter().map(|b| b.to_string()).collect(),
        algorithm: None,
        affinity: None,
        table_size: None,
        node_port: None,
        external_traffic: None,
    }
}

#[test]
fn services_are_checked_where_they_enter() {
    let mut s = Services::default();
    let e = |r: Result<Handled, String>| r.err().unwrap_or_default();
    assert!(e(ctx_add(&mut s, ServiceSpec { vni: 7, ..spec("web", "10.96.0.10:80", &[]) }))
        .starts_with("vni: no network 7"));
    assert!(e(ctx_add(&mut s, spec("web", "10.96.0.10", &[]))).starts_with("vip:"));
    assert!(e(ctx_add(&mut s, spec("web", "224.0.0.1:80", &[]))).starts_with("vip:"));
    assert!(e(ctx_add(&mut s, spec("we b", "10.96.0.10:80", &[]))).starts_with("name:"));
    assert!(e(ctx_add(&mut s, ServiceSpec { proto: "sctp".into(), ..spec("web", "10.96.0.10:80", &[]) }))
        .starts_with("proto:"));
    assert!(e(ctx_add(&mut s, spec("web", "10.96.0.10:80", &["10.1.0.2"]))).contains("IP:PORT[@WEIGHT]"));
    assert!(e(ctx_add(&mut s, spec("web", "10.96.0.10:80", &["10.1.0.2:80@70000"]))).contains("weight"));
    assert!(e(ctx_add(&mut s, spec("web", "10.96.0.10:80", &["[fd00::2]:80"]))).contains("address family"));
    assert!(e(ctx_add(&mut s, spec("web", "10.96.0.10:80", &["10.1.0.2:80", "10.1.0.2:80@3"]))).contains("twice"));
    assert!(e(ctx_add(&mut s, ServiceSpec { table_size: Some(16383), ..spec("web", "10.96.0.10:80", &[]) }))
        .starts_with("table_size"));
    assert!(e(ctx_add(
        &mut s,
        ServiceSpec { algorithm: Some("round-robin".into()), ..spec("web", "10.96.0.10:80", &[]) }
    ))
    .starts_with("algorithm"));
    assert!(s.list.is_empty());
    let ok = ctx_add(&mut s, spec("web", "10.96.0.10:80", &["10.1.0.2:8080", "10.1.0.3:8080@2"])).unwrap();
    assert_eq!(ok.reply, serde_json::json!({}), "no warning at 16381 slots for 2 backends");
    assert!(e(ctx_add(&mut s, spec("web", "10.96.0.11:80", &[]))).contains("exists"));
    assert!(e(ctx_add(&mut s, spec("web2", "10.96.0.10:80", &[]))).contains("service \"web\"'s"));
    let small = ctx_add(
        &mut s,
        ServiceSpec {
            table_size: Some(251),
            ..spec("db", "[fd00::10]:5432", &["[fd00::2]:5432", "[fd00::3]:5432", "[fd00::4]:5432"])
        },
    )
    .unwrap();
    assert!(small.reply["warning"].as_str().unwrap().contains("less than 100 x 3 backends"));
    let v = s.views(0);
    let web = v.iter().find(|v| v.name == "web").unwrap();
    assert_eq!(
        web.backends.iter().map(|b| (b.addr.as_str(), b.weight)).collect::<Vec<_>>(),
        vec![("10.1.0.2:8080", 1), ("10.1.0.3:8080", 2)]
    );
    let slots: Vec<u32> = web.backends.iter().map(|b| b.slots).collect();
    assert_eq!(slots.iter().sum::<u32>(), 16381);
    assert!(slots[1].abs_diff(2 * slots[0]) < 100, "{slots:?}");
}

#[test]
fn set_backends_keeps_the_id_and_del_forgets() {
    let mut s = Services::default();
    ctx_add(&mut s, spec("web", "10.96.0.10:80", &["10.1.0.2:8080"])).unwrap();
    let id = s.list["web"].built.id;
    let ports: Vec<PortRef> = Vec::new();
    let ctx = Ctx { ports: &ports, has_network: &|v| v == 100, vtep_ip: None, shared: None };
    let h = s
        .handle(ServiceRequest::ServiceSetBackends { name: "web".into(), backends: vec!["10.1.0.4:8080".into()] }, &ctx)
        .unwrap();
    assert_eq!(h.changes.len(), 1);
    assert_eq!(s.list["web"].built.id, id, "sessions name their service by its id");
    assert_eq!(s.list["web"].built.backends.len(), 1);
    s.handle(ServiceRequest::ServiceDel { name: "web".into() }, &ctx).unwrap();
    assert!(s.handle(ServiceRequest::ServiceDel { name: "web".into() }, &ctx).is_err());
}

#[test]
fn affinity_and_algorithm_are_checked_and_the_client_memory_outlives_a_backend_change() {
    let mut s = Services::default();
    let e = |r: Result<Handled, String>| r.err().unwrap_or_default();
    for secs in [0, MAX_AFFINITY + 1] {
        let bad = ServiceSpec { affinity: Some(secs), ..spec("web", "10.96.0.10:80", &[]) };
        assert!(e(ctx_add(&mut s, bad)).starts_with("affinity"));
    }
    assert!(e(ctx_add(&mut s, spec("web", "10.96.0.10:80", &["10.96.0.10:8080"]))).contains("VIP's own address"));
    let sticky = ServiceSpec {
        affinity: Some(600),
        algorithm: Some("random".into()),
        ..spec("web", "10.96.0.10:80", &["10.1.0.2:8080", "10.1.0.3:8080"])
    };
    ctx_add(&mut s, sticky).unwrap();
    let before = memory(&s.list["web"]).unwrap();
    let ports: Vec<PortRef> = Vec::new();
    let ctx = Ctx { ports: &ports, has_network: &|v| v == 100, vtep_ip: None, shared: None };
    let change = ServiceRequest::ServiceSetBackends { name: "web".into(), backends: vec!["10.1.0.3:8080".into()] };
    s.handle(change, &ctx).unwrap();
    assert!(Arc::ptr_eq(&before, &memory(&s.list["web"]).unwrap()), "clients remembered across the change");
    let v = &s.views(0)[0];
    assert_eq!((v.algorithm.as_str(), v.affinity), ("random", Some(600)));
}

#[test]
fn a_backends_counts_survive_changes_of_the_backend_set_until_the_service_goes() {
    let mut s = Services::default();
    ctx_add(&mut s, spec("web", "10.96.0.10:80", &["10.1.0.2:8080", "10.1.0.3:8080"])).unwrap();
    let first = Arc::new(BackendCounters::new(2, 2));
    s.list.get_mut("web").unwrap().counters = Some(first.clone());
    first.count(0, 1, 100, true);
    first.count(1, 1, 60, false);
    let counts = |s: &Services| -> Vec<(String, u64, u64, u64)> {
        s.views(0)[0].backends.iter().map(|b| (b.addr.clone(), b.connections, b.packets, b.bytes)).collect()
    };
    assert_eq!(counts(&s)[1], ("10.1.0.3:8080".into(), 1, 2, 160));
    // 10.1.0.3 stays, 10.1.0.4 comes: the old build's counts are kept while a core may
    // still count into them, then folded.
    let ports: Vec<PortRef> = Vec::new();
    let ctx = Ctx { ports: &ports, has_network: &|v| v == 100, vtep_ip: None, shared: None };
    let backends = vec!["10.1.0.4:8080".into(), "10.1.0.3:8080".into()];
    s.handle(ServiceRequest::ServiceSetBackends { name: "web".into(), backends }, &ctx).unwrap();
    first.count(0, 1, 40, false);
    let second = Arc::new(BackendCounters::new(2, 2));
    s.list.get_mut("web").unwrap().counters = Some(second.clone());
    second.count(1, 1, 10, true);
    let want = vec![("10.1.0.4:8080".to_string(), 0, 0, 0), ("10.1.0.3:8080".to_string(), 2, 4, 210)];
    assert_eq!(counts(&s), want);
    drop(first);
    s.fold_retired();
    assert!(s.retired.is_empty());
    assert_eq!(counts(&s), want, "the same once folded");
    assert!(
        s.metrics().contains("vswitch_service_backend_bytes_total{service=\"web\",backend=\"10.1.0.3:8080\"} 210"),
        "{}",
        s.metrics()
    );
    s.handle(ServiceRequest::ServiceDel { name: "web".into() }, &ctx).unwrap();
    assert!(s.base.is_empty() && s.retired.is_empty());
}

#[test]
fn node_ports_are_checked_and_unique_per_protocol() {
    let mut s = Services::default();
    let e = |r: Result<Handled, String>| r.err().unwrap_or_default();
    let np = |name: &str, vip: &str, port: u16| ServiceSpec { node_port: Some(port), ..spec(name, vip, &[]) };
    assert!(e(ctx_add(&mut s, np("web", "10.96.0.10:80", 0))).starts_with("node_port"));
    assert!(e(ctx_add(&mut s, np("web", "10.96.0.10:80", 40000))).contains("masqueraded"));
    ctx_add(&mut s, np("web", "10.96.0.10:80", 30080)).unwrap();
    assert!(s.has_node_ports());
    assert!(e(ctx_add(&mut s, np("api", "10.96.0.11:80", 30080))).contains("service \"web\"'s"));
    let udp = ServiceSpec { proto: "udp".into(), ..np("dns", "10.96.0.12:53", 30080) };
    ctx_add(&mut s, udp).unwrap();
    assert_eq!(s.views(0).iter().filter(|v| v.node_port == Some(30080)).count(), 2, "one per protocol");
    // A host port mapping: no VIP, a node port.
    assert!(e(ctx_add(&mut s, spec("map", "", &["10.1.0.2:80"]))).contains("--node-port"));
    let map = ServiceSpec { node_port: Some(8080), ..spec("map", "", &["10.1.0.2:80"]) };
    ctx_add(&mut s, map.clone()).unwrap();
    let other = ServiceSpec { name: "map2".into(), node_port: Some(8081), ..map };
    ctx_add(&mut s, other).expect("two mappings without a VIP do not clash");
    assert!(e(ctx_add(&mut s, ServiceSpec { node_port: Some(8082), ..spec("map3", "", &["[fd00::2]:80"]) }))
        .contains("address family"));
    // The traffic policy: cluster or local, and only with a node port.
    let policy = |p: &str, port: Option<u16>| ServiceSpec {
        external_traffic: Some(p.into()),
        node_port: port,
        ..spec("pol", "10.96.0.20:80", &["10.1.0.2:80"])
    };
    assert!(e(ctx_add(&mut s, policy("local", None))).contains("--node-port"));
    assert!(e(ctx_add(&mut s, policy("nearest", Some(30090)))).contains("cluster or local"));
    ctx_add(&mut s, policy("local", Some(30090))).unwrap();
    let view = s.views(0).into_iter().find(|v| v.name == "pol").unwrap();
    assert_eq!(view.external_traffic.as_deref(), Some("local"));
}

/// `service list` counts a backend's connections from the session table, leaving out
/// one past its timeout that its core has not freed yet (as `conntrack list` does).
#[test]
fn a_backends_connections_leave_out_sessions_past_their_timeout() {
    use pipelines::conntrack::{table::NewSession, tcp::TcpConn, NatKey, Tuple};
    let mut s = Services::default();
    ctx_add(&mut s, spec("web", "10.96.0.10:80", &["10.1.0.2:8080"])).unwrap();
    let table = Arc::new(CtTable::new(64, 1, 8));
    table.enable_nat(|_, _| 0);
    s.table = Some(table.clone());
    let client = (ip_key("10.1.0.9".parse().unwrap()), 40000);
    let tuple = |to: (u128, u16)| Tuple { zone: 100, proto: PROTO_UDP, src: client, dst: to };
    let (key, orig_hi) = tuple((ip_key("10.1.0.2".parse().unwrap()), 8080)).key();
    let (vip, _) = tuple((ip_key("10.96.0.10".parse().unwrap()), 80)).key();
    let nat = NatKey { key: vip, service: s.list["web"].built.id, pick: 0 };
    let n = NewSession {
        key,
        orig_hi,
        tcp: TcpConn::default(),
        port: 0,
        side: 0,
        epoch: 0,
        now: 1_000,
        len: 60,
        nat: Some(nat),
    };
    table.create(0, &n, 0).unwrap();
    let connections = |now| s.views(now)[0].backends[0].sessions;
    assert_eq!(connections(1_000), 1);
    assert_eq!(connections(31_001), 0, "UDP's 30 s ran out at 31 s");
}
