use super::*;
use crate::{overlay::parse_gateway, ports::port_ref};
use pipelines::PortId;

fn spec(ip: &str, mac: &str, port: Option<&str>, vtep: Option<&str>) -> EndpointSpec {
    EndpointSpec {
        vni: 100,
        ip: ip.parse().unwrap(),
        mac: mac.into(),
        port: port.map(Into::into),
        vtep: vtep.map(|v| v.parse().unwrap()),
        container: None,
        netns: None,
    }
}

fn add(eps: &mut Endpoints, s: EndpointSpec) -> Result<Handled, String> {
    let ports = vec![port_ref("vm1", 1, PortRole::Vm, Some(100)), port_ref("vm3", 3, PortRole::Vm, Some(300))];
    let ctx = Ctx {
        ports: &ports,
        has_network: &|v| v == 100 || v == 300,
        vtep_ip: Some("192.168.50.1".parse().unwrap()),
        shared: None,
    };
    eps.handle(EndpointRequest::EndpointAdd(s), &ctx)
}

#[test]
fn endpoints_are_checked_where_they_enter() {
    let mut eps = Endpoints::default();
    let e = |r: Result<Handled, String>| r.err().unwrap_or_default();
    assert!(e(add(&mut eps, EndpointSpec { vni: 7, ..spec("10.1.0.2", "02:00:00:00:00:02", Some("vm1"), None) }))
        .starts_with("vni: no network 7"));
    assert!(e(add(&mut eps, spec("224.0.0.1", "02:00:00:00:00:02", Some("vm1"), None))).starts_with("ip:"));
    assert!(e(add(&mut eps, spec("10.1.0.2", "01:00:5e:00:00:01", Some("vm1"), None))).starts_with("mac:"));
    assert!(
        e(add(&mut eps, spec("10.1.0.2", "02:76:73:67:77:01", Some("vm1"), None))).contains("gateway's virtual MAC")
    );
    assert!(e(add(&mut eps, spec("10.1.0.2", "02:00:00:00:00:02", Some("vm3"), None)))
        .contains("not a VM port of network 100"));
    assert!(e(add(&mut eps, spec("10.1.0.2", "02:00:00:00:00:02", Some("ghost"), None))).starts_with("port: no port"));
    assert!(e(add(&mut eps, spec("10.1.0.2", "02:00:00:00:00:02", None, None))).contains("either --port"));
    assert!(e(add(&mut eps, spec("10.1.0.2", "02:00:00:00:00:02", None, Some("192.168.50.1")))).contains("own VTEP"));
    assert!(eps.list.is_empty(), "nothing refused was kept");
    add(&mut eps, spec("10.1.0.2", "02:00:00:00:00:AB", Some("vm1"), None)).unwrap();
    assert_eq!(eps.list.values().next().unwrap().mac, "02:00:00:00:00:ab", "MACs kept in canonical form");
    // Adding the same address again moves it.
    add(&mut eps, spec("10.1.0.2", "02:00:00:00:00:07", None, Some("192.168.50.2"))).unwrap();
    assert_eq!(eps.list.len(), 1);
    assert_eq!(eps.list.values().next().unwrap().vtep, Some("192.168.50.2".parse().unwrap()));
}

#[test]
fn an_endpoint_goes_with_its_port() {
    let mut eps = Endpoints::default();
    add(&mut eps, spec("10.1.0.2", "02:00:00:00:00:02", Some("vm1"), None)).unwrap();
    add(&mut eps, spec("10.1.0.3", "02:00:00:00:00:03", None, Some("192.168.50.2"))).unwrap();
    let changes = eps.port_removed(&port_ref("vm1", 1, PortRole::Vm, Some(100)));
    assert_eq!(changes, vec![Change::del("endpoints", json!([100, "10.1.0.2"]))]);
    assert_eq!(eps.list.len(), 1);
}

#[test]
fn gateways_are_host_addresses_one_per_family() {
    let g = parse_gateway(&["10.1.0.254/24".into(), "fd00:1::fe/64".into()]).unwrap();
    assert_eq!(g.v4, Some(0x0a01_00fe));
    assert_eq!(g.v6, Some(0xfd00_0001_0000_0000_0000_0000_0000_00fe));
    for bad in ["10.1.0.0/24", "10.1.0.255/24", "224.0.0.1/4", "10.1.0.1", "fd00:1::/64", "::1/128"] {
        assert!(parse_gateway(&[bad.into()]).unwrap_err().starts_with("gateway:"), "{bad}");
    }
    assert!(parse_gateway(&["10.1.0.1/24".into(), "10.2.0.1/24".into()]).unwrap_err().contains("at most one"));
    assert!(parse_gateway(&["10.1.0.0/31".into()]).is_ok(), "a /31 has no network address to avoid");
}

fn seen(vni: u32, ip: &str, mac: u8, port: PortId) -> LearnEvent {
    let ip: IpAddr = ip.parse().unwrap();
    LearnEvent { ip: ip_key(ip), ..LearnEvent::mac(vni, Mac([2, 0, 0, 0, 0, mac]), FibTarget::Port(port)) }
}

#[test]
fn addresses_are_learned_refreshed_moved_aged_and_statics_win() {
    let ports = vec![port_ref("vm1", 1, PortRole::Vm, Some(100)), port_ref("vm2", 2, PortRole::Vm, Some(100))];
    let mut eps = Endpoints::default();
    let t0 = Instant::now();
    assert!(eps.learn(&seen(100, "10.1.0.1", 1, 1), &ports, t0));
    assert!(!eps.learn(&seen(100, "10.1.0.1", 1, 1), &ports, t0 + Duration::from_secs(200)), "a refresh");
    assert!(eps.learn(&seen(100, "fd00::1", 1, 1), &ports, t0));
    assert!(!eps.learn(&seen(300, "10.1.0.9", 1, 1), &ports, t0), "vm1 is not in network 300");
    assert!(eps.learn(&seen(100, "10.1.0.1", 2, 2), &ports, t0 + Duration::from_secs(200)), "moved to vm2");
    let views = eps.views(Some(100), &ports);
    assert_eq!(views.len(), 2);
    assert_eq!((views[0].port.as_deref(), views[0].source.as_str()), (Some("vm2"), "learned"));
    // A static entry wins over what is learned, and is not learned over.
    add(&mut eps, spec("10.1.0.5", "02:00:00:00:00:05", Some("vm1"), None)).unwrap();
    assert!(!eps.learn(&seen(100, "10.1.0.5", 9, 1), &ports, t0));
    // Aged: the IPv6 one was last heard of at t0, the moved one at t0 + 200 s.
    assert!(eps.age(t0 + LEARNED_AGING));
    let views = eps.views(None, &ports);
    assert_eq!(views.iter().map(|v| v.ip.to_string()).collect::<Vec<_>>(), vec!["10.1.0.1", "10.1.0.5"]);
    // A port's learned addresses go with it.
    eps.port_removed(&ports[1]);
    assert_eq!(eps.views(None, &ports).len(), 1);
    assert_eq!(eps.learned_per_vni[&100], 0);
}

#[test]
fn a_network_learns_at_most_its_limit() {
    let ports = vec![port_ref("vm1", 1, PortRole::Vm, Some(100))];
    let mut eps = Endpoints::default();
    let now = Instant::now();
    for i in 0..MAX_LEARNED as u32 + 5 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
        eps.learn(&seen(100, &ip, 1, 1), &ports, now);
    }
    assert_eq!(eps.learned.len(), MAX_LEARNED);
    assert_eq!(eps.refused, 5);
}

#[test]
fn unknown_addresses_are_asked_about_three_times_then_left_alone_a_while() {
    use super::resolve::{ASK_EVERY, ASK_TRIES, UNANSWERED_HOLD};
    let ports = vec![port_ref("vm1", 1, PortRole::Vm, Some(100))];
    let mut eps = Endpoints::default();
    let subnets = |vni: u32| -> Vec<ipnetwork::IpNetwork> {
        if vni == 100 {
            vec!["10.1.0.254/24".parse().unwrap(), "fd00::fe/64".parse().unwrap()]
        } else {
            Vec::new()
        }
    };
    let t0 = Instant::now();
    let unknown = |ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        LearnEvent::unknown(100, ip_key(ip), 1)
    };
    for ip in ["10.1.0.9", "fd00::9", "10.9.9.9"] {
        eps.unknown(&unknown(ip), t0);
    }
    let q = eps.questions_due(subnets, t0);
    assert_eq!(q.len(), 2, "off the gateway's subnets nobody is asked");
    let arp = pipelines::wire::arp::Arp::parse(&q[0].1[14..]).unwrap();
    assert_eq!((arp.sender_ip, arp.target_ip), (0x0a01_00fe, 0x0a01_0009));
    assert_eq!(q[1].1.len(), pipelines::gateway::ask::SOLICITATION_LEN);
    assert!(eps.questions_due(subnets, t0 + ASK_EVERY / 2).is_empty(), "not before a second");
    let mut asked = 1;
    let mut t = t0;
    for _ in 0..10 {
        t += ASK_EVERY;
        asked += eps.questions_due(subnets, t).iter().filter(|(_, f)| f.len() == 60).count();
    }
    assert_eq!(asked, ASK_TRIES as usize);
    // Left alone for a while, even when packets keep coming for it; then asked again.
    eps.unknown(&unknown("10.1.0.9"), t);
    assert!(eps.questions_due(subnets, t).is_empty());
    let later = t0 + UNANSWERED_HOLD + ASK_EVERY * ASK_TRIES;
    assert!(eps.questions_due(subnets, later).is_empty(), "forgotten");
    eps.unknown(&unknown("10.1.0.9"), later);
    assert_eq!(eps.questions_due(subnets, later).len(), 1);
    // Once its owner answers, no more questions.
    assert!(eps.learn(&seen(100, "10.1.0.9", 9, 1), &ports, later));
    assert!(eps.questions_due(subnets, later + ASK_EVERY).is_empty());
    eps.unknown(&unknown("10.1.0.9"), later);
    assert!(eps.asking.is_empty());
}
