use super::*;
use crate::ports::port_ref;
use pipelines::tables::FibEntry;
use pipelines::wire::arp;

fn mac(last: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, last])
}

fn ports() -> Vec<PortRef> {
    vec![
        port_ref("vm1", 0, PortRole::Vm, Some(100)),
        port_ref("vm2", 1, PortRole::Vm, Some(100)),
        port_ref("vm3", 2, PortRole::Vm, Some(200)),
        port_ref("up0", 5, PortRole::Uplink, None),
    ]
}

fn net(vni: u32) -> NetworkSpec {
    NetworkSpec { vni, name: None, max_macs: None, aging: None, flood_vteps: vec![], gateway: vec![], snat: false }
}

fn overlay() -> Overlay {
    let mut o = Overlay::default();
    o.network_add(NetworkSpec { max_macs: Some(3), aging: Some(60), ..net(100) }).unwrap();
    o.network_add(net(200)).unwrap();
    let spec = VtepSpec {
        ip: "192.168.50.1/24".into(),
        uplink: "up0".into(),
        mac: Some("02:00:00:00:00:f1".into()),
        gateway: Some("192.168.50.254".parse().unwrap()),
        udp_port: None,
        ttl: None,
        ip6: None,
        gateway6: None,
    };
    o.vtep_set(spec, &ports()).unwrap();
    o
}

fn ev(vni: u32, m: Mac, target: FibTarget) -> LearnEvent {
    LearnEvent::mac(vni, m, target)
}

#[test]
fn learning_inserts_refreshes_moves_and_respects_static_entries() {
    let mut o = overlay();
    let p = ports();
    let t0 = Instant::now();
    assert!(o.learn(ev(100, mac(1), FibTarget::Port(0)), &p, t0));
    assert!(!o.learn(ev(100, mac(1), FibTarget::Port(0)), &p, t0), "a refresh changes no table");
    assert!(o.learn(ev(100, mac(1), FibTarget::Port(1)), &p, t0), "a move re-points the entry");
    assert_eq!(o.network_views(&p)[0].mac_moves, 1);
    assert!(o.learn(ev(100, mac(1), FibTarget::Vtep(0xc0a83202)), &p, t0), "moves to a remote VTEP too");
    // Static wins: a learn event for a static MAC is ignored.
    o.fib_add(FibSpec { vni: 100, mac: mac(7).to_string(), port: Some("vm1".into()), vtep: None }, &p).unwrap();
    assert!(!o.learn(ev(100, mac(7), FibTarget::Port(1)), &p, t0));
    let t = o.compile(&p, 32);
    assert_eq!(t.lookup(100, mac(7)), Some(&FibEntry { target: FibTarget::Port(0), is_static: true }));
    // Not a port of that VNI (vm3 is in 200), an unknown port id, or an unknown VNI: ignored.
    assert!(!o.learn(ev(100, mac(2), FibTarget::Port(2)), &p, t0));
    assert!(!o.learn(ev(100, mac(2), FibTarget::Port(9)), &p, t0));
    assert!(!o.learn(ev(999, mac(2), FibTarget::Port(0)), &p, t0));
}

#[test]
fn the_mac_limit_stops_a_flood_and_counts_it() {
    let mut o = overlay();
    let p = ports();
    let t0 = Instant::now();
    for i in 0..10 {
        o.learn(ev(100, mac(i), FibTarget::Port(0)), &p, t0);
    }
    let v = &o.network_views(&p)[0];
    assert_eq!((v.macs_learned, v.learn_refused), (3, 7));
    // Another network is unaffected.
    assert!(o.learn(ev(200, mac(1), FibTarget::Port(2)), &p, t0));
    // Room again after a MAC is deleted.
    o.fib_del(100, &mac(0).to_string()).unwrap();
    assert!(o.learn(ev(100, mac(50), FibTarget::Port(0)), &p, t0));
}

#[test]
fn learned_macs_age_per_network_unless_refreshed() {
    let mut o = overlay();
    let p = ports();
    let t0 = Instant::now();
    o.learn(ev(100, mac(1), FibTarget::Port(0)), &p, t0);
    o.learn(ev(100, mac(2), FibTarget::Port(0)), &p, t0);
    o.learn(ev(200, mac(1), FibTarget::Port(2)), &p, t0);
    o.learn(ev(100, mac(2), FibTarget::Port(0)), &p, t0 + Duration::from_secs(50)); // refresh
    assert!(!o.age(t0 + Duration::from_secs(59)));
    assert!(o.age(t0 + Duration::from_secs(61)), "VNI 100 ages after 60 s");
    let t = o.compile(&p, 32);
    assert!(t.lookup(100, mac(1)).is_none());
    assert!(t.lookup(100, mac(2)).is_some(), "refreshed at 50 s");
    assert!(t.lookup(200, mac(1)).is_some(), "VNI 200 keeps the default 300 s");
    assert!(o.age(t0 + Duration::from_secs(301)));
    assert!(o.compile(&p, 32).fib.is_empty());
}

#[test]
fn deleting_a_port_forgets_what_was_learned_on_it() {
    let mut o = overlay();
    let p = ports();
    o.learn(ev(100, mac(1), FibTarget::Port(0)), &p, Instant::now());
    o.learn(ev(100, mac(2), FibTarget::Port(1)), &p, Instant::now());
    o.port_removed(0);
    let t = o.compile(&p, 32);
    assert!(t.lookup(100, mac(1)).is_none());
    assert!(t.lookup(100, mac(2)).is_some());
    assert_eq!(o.network_views(&p)[0].macs_learned, 1);
}

/// A VTEP that only a static endpoint is behind (no flood list names it) is resolved
/// too: a packet routed to that endpoint must find its outer headers.
#[test]
fn a_vtep_only_an_endpoint_is_behind_is_resolved() {
    let mut o = overlay();
    let p = ports();
    o.endpoint_vteps.insert("192.168.50.7".parse().unwrap());
    let mut changed = false;
    let parse = |f: &[u8; 60]| pipelines::wire::arp::Arp::parse(&f[14..]).unwrap();
    let asked: Vec<u32> = o.arp_due(&p, Instant::now(), &mut changed).iter().map(|f| parse(f).target_ip).collect();
    assert_eq!(asked, [0xc0a83207]);
    let reply = arp::Arp {
        op: arp::OP_REPLY,
        sender_mac: mac(0xe7),
        sender_ip: 0xc0a83207,
        target_mac: mac(0xf1),
        target_ip: 0xc0a83201,
    };
    assert!(o.arp_reply(&reply, Instant::now()));
    assert!(o.compile(&p, 32).remotes.contains_key(&0xc0a83207));
}

/// The host's IPv6 address: checked, in the underlay the cores read, and its router
/// resolved by neighbour discovery once something leaves by the uplink.
#[test]
fn the_host_ipv6_address_and_its_router_by_neighbour_discovery() {
    let mut o = overlay();
    let p = ports();
    let v6 = |ip6: &str, gw: Option<&str>| VtepSpec {
        ip: "192.168.50.1/24".into(),
        uplink: "up0".into(),
        mac: Some("02:00:00:00:00:f1".into()),
        gateway: None,
        udp_port: None,
        ttl: None,
        ip6: Some(ip6.into()),
        gateway6: gw.map(|g| g.parse().unwrap()),
    };
    let e = |r: Result<(), String>| r.err().unwrap_or_default();
    assert!(e(o.vtep_set(v6("fd00:50::1", None), &p)).contains("prefix length"));
    assert!(e(o.vtep_set(v6("fe80::1/64", None), &p)).contains("global or unique-local"));
    assert!(e(o.vtep_set(v6("fd00:50::1/64", Some("fd00:51::1")), &p)).starts_with("gateway6"));
    o.vtep_set(v6("fd00:50::1/64", Some("fe80::1")), &p).unwrap();
    let u = o.compile(&p, 32).underlay;
    assert_eq!((u.host6, u.mask6, u.router6), (Some(0xfd00_0050 << 96 | 1), u128::MAX << 64, Some(0xfe80 << 112 | 1)));
    let t0 = Instant::now();
    let mut changed = false;
    assert!(o.nd_due(&p, t0, &mut changed).is_empty(), "nothing leaves by the uplink yet");
    o.egress_wanted = true;
    let asked = o.nd_due(&p, t0, &mut changed);
    assert_eq!(asked.len(), 1);
    assert_eq!(&asked[0][62..78], &"fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets(), "for the router");
    assert_eq!(&asked[0][6..12], &mac(0xf1).0, "from the host's MAC");
    // An on-link address a core found unresolved is asked about too; others are not.
    o.want6("fd00:50::7".parse().unwrap());
    o.want6("fd00:99::7".parse().unwrap());
    assert_eq!(o.nd_due(&p, t0 + Duration::from_millis(1100), &mut changed).len(), 2);
    // The router's advertisement (target link-layer address option) resolves it.
    let mut na = vec![0u8; 14 + 40 + 32];
    na[6..12].copy_from_slice(&mac(0xee).0);
    let l4 = 54;
    na[l4] = 136;
    na[l4 + 8..l4 + 24].copy_from_slice(&"fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    na[l4 + 24..l4 + 32].copy_from_slice(&[2, 1, 2, 0, 0, 0, 0, 0xe1]);
    assert!(o.nd_advert(&na, l4, t0));
    assert_eq!(o.compile(&p, 32).underlay.neighbours6.get(&(0xfe80 << 112 | 1)), Some(&mac(0xe1)));
    na[l4 + 8..l4 + 24].copy_from_slice(&"fd00:50::99".parse::<std::net::Ipv6Addr>().unwrap().octets());
    assert!(!o.nd_advert(&na, l4, t0), "an answer nobody asked for changes nothing");
}

#[test]
fn remotes_appear_once_their_next_hop_resolves() {
    let mut o = overlay();
    let p = ports();
    let t0 = Instant::now();
    o.add_vtep(100, "192.168.50.2".parse().unwrap()).unwrap();
    o.add_vtep(100, "10.9.9.9".parse().unwrap()).unwrap(); // off-subnet: via the gateway
    assert!(o.compile(&p, 32).remotes.is_empty(), "nothing resolved yet");
    let mut changed = false;
    // Announcements only in a cluster: unasked, the VTEP is as quiet as Linux.
    let quiet = o.clone_config().arp_due(&p, t0, &mut changed);
    assert!(quiet.iter().all(|f| f[28..32] != f[38..42]), "no gratuitous ARP unless asked");
    o.announce_vtep = true;
    // What arp_due sends, without the VTEP's own announcements (gratuitous ARP).
    let parse = |f: &[u8; 60]| pipelines::wire::arp::Arp::parse(&f[14..]).unwrap();
    let (announced, reqs): (Vec<_>, Vec<_>) =
        o.arp_due(&p, t0, &mut changed).iter().map(parse).partition(|a| a.sender_ip == a.target_ip);
    assert_eq!(reqs.len(), 2, "one request per next hop: the on-link VTEP and the gateway");
    assert_eq!(announced.len(), 1, "the VTEP announces itself as it comes up");
    assert_eq!((announced[0].sender_ip, announced[0].sender_mac), (0xc0a83201, mac(0xf1)));
    let a = reqs[0];
    assert_eq!((a.op, a.sender_ip, a.sender_mac), (arp::OP_REQUEST, 0xc0a83201, mac(0xf1)));
    assert!(o.arp_due(&p, t0 + Duration::from_millis(10), &mut changed).is_empty(), "no retry within a second");
    let again = o.arp_due(&p, t0 + Duration::from_millis(1100), &mut changed);
    assert_eq!(again.iter().map(parse).filter(|a| a.sender_ip != a.target_ip).count(), 2, "retry after a second");
    for s in [2, 3, 4] {
        o.arp_due(&p, t0 + Duration::from_millis(1100 * s), &mut changed);
    }
    let later = o.arp_due(&p, t0 + Duration::from_secs(20), &mut changed);
    assert!(later.iter().map(parse).all(|a| a.sender_ip != a.target_ip), "three announcements, then quiet");
    // The gateway answers: the off-subnet VTEP resolves through it.
    let gw = arp::Arp {
        op: arp::OP_REPLY,
        sender_mac: mac(0xee),
        sender_ip: 0xc0a832fe,
        target_mac: mac(0xf1),
        target_ip: 0xc0a83201,
    };
    assert!(o.arp_reply(&gw, t0));
    let t = o.compile(&p, 32);
    assert_eq!(t.remotes.len(), 1);
    let r = t.remotes.get(&0x0a090909).unwrap();
    assert_eq!(&r.header[0..6], &mac(0xee).0, "outer destination is the gateway's MAC");
    assert_eq!(&r.header[6..12], &mac(0xf1).0, "outer source is the VTEP's configured MAC");
    // An unsolicited reply for an address we never asked about changes nothing.
    assert!(!o.arp_reply(&arp::Arp { sender_ip: 0x01020304, ..gw }, t0));
    // A static neighbour needs no ARP at all.
    o.neigh_add(NeighSpec { ip: "192.168.50.2".parse().unwrap(), mac: mac(0xdd).to_string() }).unwrap();
    assert!(o.compile(&p, 32).remotes.contains_key(&0xc0a83202));
    // The cache entry expires without refreshes.
    let mut changed = false;
    o.arp_due(&p, t0 + Duration::from_secs(301), &mut changed);
    assert!(changed);
    assert!(!o.compile(&p, 32).remotes.contains_key(&0x0a090909));
}

#[test]
fn the_vtep_is_inactive_without_a_running_uplink() {
    let mut o = overlay();
    let mut p = ports();
    assert!(o.compile(&p, 32).vtep.is_some());
    p[3].id = None;
    assert!(o.compile(&p, 32).vtep.is_none());
    assert!(o.vtep_view(&p).unwrap().state.contains("not running"));
}

#[test]
fn bad_input_names_the_field() {
    let mut o = overlay();
    let p = ports();
    let e = |r: Result<(), String>| r.unwrap_err();
    assert!(e(o.network_add(net(0))).starts_with("vni: 0 is out of range; a VNI is 1 to 16777215"));
    assert!(e(o.network_add(net(16_777_216))).starts_with("vni: 16777216 is out of range"));
    assert!(o.network_add(net(16_777_215)).is_ok());
    assert!(e(o.network_add(net(100))).contains("already exists"));
    assert!(e(o.network_add(NetworkSpec { aging: Some(1), ..net(5) })).starts_with("aging:"));
    assert!(e(o.network_add(NetworkSpec { max_macs: Some(0), ..net(5) })).starts_with("max_macs:"));
    let none = NetworkSpec { snat: true, ..net(5) };
    assert!(e(o.network_add(none)).starts_with("snat: network 5 has no gateway"));
    assert!(!o.masquerades());
    o.network_add(NetworkSpec { snat: true, gateway: vec!["10.5.0.254/16".into()], ..net(5) }).unwrap();
    assert!(o.masquerades());
    assert_eq!(o.compile(&p, 32).networks[&5].snat, Some(0xffff_0000), "the gateway subnet's mask");
    o.network_add(NetworkSpec { snat: true, gateway: vec!["fd00:6::fe/64".into()], ..net(6) }).unwrap();
    let n6 = &o.compile(&p, 32).networks[&6];
    assert_eq!((n6.snat, n6.snat6), (None, Some(u128::MAX << 64)), "an IPv6-only network masquerades IPv6");
    let vt = |ip: &str| VtepSpec {
        ip: ip.into(),
        uplink: "up0".into(),
        mac: None,
        gateway: None,
        udp_port: None,
        ttl: None,
        ip6: None,
        gateway6: None,
    };
    assert!(e(o.vtep_set(vt("192.168.50.1"), &p)).contains("prefix length"));
    assert!(e(o.vtep_set(vt("192.168.50.0/24"), &p)).contains("network or broadcast"));
    assert!(e(o.vtep_set(vt("300.1.1.1/24"), &p)).starts_with("ip:"));
    assert!(e(o.vtep_set(VtepSpec { uplink: "vm1".into(), ..vt("192.168.50.1/24") }, &p)).contains("not an uplink"));
    assert!(e(o.vtep_set(VtepSpec { uplink: "nope".into(), ..vt("192.168.50.1/24") }, &p)).starts_with("uplink:"));
    assert!(e(o.vtep_set(VtepSpec { mac: Some("01:00:00:00:00:01".into()), ..vt("192.168.50.1/24") }, &p))
        .starts_with("mac:"));
    assert!(e(o.vtep_set(VtepSpec { gateway: Some("10.0.0.1".parse().unwrap()), ..vt("192.168.50.1/24") }, &p))
        .starts_with("gateway:"));
    let fib =
        |mac: &str, port: Option<&str>| FibSpec { vni: 100, mac: mac.into(), port: port.map(Into::into), vtep: None };
    assert!(e(o.fib_add(fib("zz:00:00:00:00:01", Some("vm1")), &p)).starts_with("mac:"));
    assert!(e(o.fib_add(fib("02:00:00:00:00:01", Some("vm3")), &p)).contains("not a VM port of network 100"));
    assert!(e(o.fib_add(fib("02:00:00:00:00:01", None), &p)).contains("exactly one of"));
    assert!(
        e(o.fib_add(FibSpec { vni: 7, ..fib("02:00:00:00:00:01", Some("vm1")) }, &p)).starts_with("vni: no network 7")
    );
    assert!(e(o.add_vtep(100, "224.0.0.1".parse().unwrap())).contains("not a unicast"));
    assert!(e(o.network_del(100, &p)).contains("still has ports (vm1, vm2)"));
    assert!(o.network_del(16_777_215, &p).is_ok());
    assert!(e(o.check_port(
        &PortSpec {
            name: "x".into(),
            devargs: "net_null9".into(),
            queues: None,
            cores: None,
            mtu: None,
            role: Some(PortRole::Vm),
            vni: Some(4242),
            admin: Default::default(),
        },
        &p
    ))
    .contains("network 4242 does not exist"));
    assert!(o.port_in_use("up0").unwrap().contains("VTEP's uplink"));
}

/// `compile` rebuilds only the shards of networks whose entries changed; what it
/// returns must be what compiling everything from scratch returns.
mod incremental {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Learn {
            vni: u32,
            mac: u8,
            target: FibTarget,
        },
        FibAdd {
            vni: u32,
            mac: u8,
            port: Option<&'static str>,
        },
        FibDel {
            vni: u32,
            mac: u8,
        },
        Age {
            secs: u64,
        },
        PortRemoved(PortId),
        /// vm2 stops or starts running (static entries naming it come and go).
        Vm2Running(bool),
        /// A whole new configuration: today's with one static entry more.
        Adopt {
            vni: u32,
            mac: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let vni = prop_oneof![Just(100u32), Just(200), Just(300)];
        let target = prop_oneof![
            (0..3u16).prop_map(FibTarget::Port),
            Just(FibTarget::Vtep(0xc0a8_3202)),
            Just(FibTarget::Vtep(0xc0a8_3203)),
        ];
        prop_oneof![
            4 => (vni.clone(), 1..6u8, target).prop_map(|(vni, mac, target)| Op::Learn { vni, mac, target }),
            1 => (vni.clone(), 1..6u8, prop_oneof![Just(Some("vm1")), Just(Some("vm2")), Just(Some("vm3")), Just(None)])
                .prop_map(|(vni, mac, port)| Op::FibAdd { vni, mac, port }),
            1 => (vni.clone(), 1..6u8).prop_map(|(vni, mac)| Op::FibDel { vni, mac }),
            1 => (0..120u64).prop_map(|secs| Op::Age { secs }),
            1 => (0..3u16).prop_map(Op::PortRemoved),
            1 => any::<bool>().prop_map(Op::Vm2Running),
            1 => (vni, 1..6u8).prop_map(|(vni, mac)| Op::Adopt { vni, mac }),
        ]
    }

    fn fib(t: &L2Tables) -> BTreeMap<(u32, u64), FibEntry> {
        t.fib.iter().flat_map(|(&v, s)| s.iter().map(move |(&m, &e)| ((v, m), e))).collect()
    }

    fn fib_spec(vni: u32, mac: u8, port: Option<&str>) -> FibSpec {
        let vtep = port.is_none().then(|| "192.168.50.9".parse().unwrap());
        FibSpec { vni, mac: super::mac(mac).to_string(), port: port.map(String::from), vtep }
    }

    proptest! {
        #[test]
        fn compiling_what_changed_gives_what_compiling_everything_gives(ops in proptest::collection::vec(op(), 1..40)) {
            let mut o = Overlay::default();
            o.network_add(NetworkSpec { aging: Some(60), ..net(100) }).unwrap();
            o.network_add(NetworkSpec { aging: Some(30), ..net(200) }).unwrap();
            let mut p = ports();
            let t0 = Instant::now();
            let mut now = t0;
            for op in ops {
                match op {
                    Op::Learn { vni, mac, target } => {
                        now += Duration::from_secs(1);
                        o.learn(ev(vni, super::mac(mac), target), &p, now);
                    }
                    Op::FibAdd { vni, mac, port } => {
                        let _ = o.fib_add(fib_spec(vni, mac, port), &p);
                    }
                    Op::FibDel { vni, mac } => {
                        let _ = o.fib_del(vni, &super::mac(mac).to_string());
                    }
                    Op::Age { secs } => {
                        now += Duration::from_secs(secs);
                        o.age(now);
                    }
                    Op::PortRemoved(id) => o.port_removed(id),
                    Op::Vm2Running(up) => p[1].id = up.then_some(1),
                    Op::Adopt { vni, mac } => {
                        let mut c = o.clone_config();
                        let _ = c.fib_add(fib_spec(vni, mac, Some("vm1")), &p);
                        o.adopt_config(c);
                    }
                }
                let got = o.compile(&p, 32);
                let want = o.clone_config().compile(&p, 32);
                prop_assert_eq!(fib(&got), fib(&want));
                prop_assert_eq!(&o.vtep_refs, &o.recount_vteps(), "remote VTEPs counted as entries change");
            }
        }
    }

    #[test]
    fn a_change_in_one_network_leaves_the_others_shards_shared() {
        let mut o = Overlay::default();
        o.network_add(net(100)).unwrap();
        o.network_add(net(200)).unwrap();
        let p = ports();
        let t0 = Instant::now();
        o.learn(ev(100, mac(1), FibTarget::Port(0)), &p, t0);
        o.learn(ev(200, mac(1), FibTarget::Port(2)), &p, t0);
        let before = o.compile(&p, 32);
        o.learn(ev(100, mac(2), FibTarget::Port(1)), &p, t0);
        let after = o.compile(&p, 32);
        assert!(Arc::ptr_eq(&before.fib[&200], &after.fib[&200]), "VNI 200 did not change: its shard is shared");
        assert!(!Arc::ptr_eq(&before.fib[&100], &after.fib[&100]));
        assert_eq!(after.lookup(100, mac(2)).map(|e| e.target), Some(FibTarget::Port(1)));
        assert_eq!(before.lookup(100, mac(2)), None, "the published snapshot is not changed under the cores");
    }
}
