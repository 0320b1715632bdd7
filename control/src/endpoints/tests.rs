use super::*;
use crate::{overlay::parse_gateway, ports::port_ref};

fn spec(ip: &str, mac: &str, port: Option<&str>, vtep: Option<&str>) -> EndpointSpec {
    EndpointSpec {
        vni: 100,
        ip: ip.parse().unwrap(),
        mac: mac.into(),
        port: port.map(Into::into),
        vtep: vtep.map(|v| v.parse().unwrap()),
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
