//! The journal's oracle: whatever a feature's handler records for a request, replayed
//! onto the state as it was, gives the state the features hold afterwards. Requests
//! that are refused must record nothing.
use crate::{
    acl::api::*,
    api::Request,
    endpoints::api::*,
    fuzz::requests::{canonical, desired, features, handle, ports},
    overlay::api::*,
    qos::api::*,
    sflow::api::*,
    state::DesiredState,
    store::change::Image,
    xconnect::api::XconnectRequest,
};
use proptest::prelude::*;
use std::net::Ipv4Addr;

fn rule(port: Option<&str>, vni: Option<u32>, id: Option<u32>, priority: u32) -> AclRuleSpec {
    AclRuleSpec {
        id,
        priority,
        port: port.map(Into::into),
        vni,
        dir: Some(if priority.is_multiple_of(2) { AclDir::In } else { AclDir::Out }),
        src: Some(format!("10.{}.0.0/16", priority % 7)),
        dst: None,
        proto: Some("tcp".into()),
        sport: None,
        dport: Some(format!("{}-{}", 1000 + priority, 2000 + priority)),
        icmp_type: None,
        action: if priority.is_multiple_of(3) { AclAction::Deny } else { AclAction::Allow },
    }
}

/// One request from a small space, so that requests meet each other's entries.
fn op(kind: u8, a: u8, b: u8) -> Request {
    let ip = |n: u8| Ipv4Addr::new(192, 168, 50, 2 + n % 4);
    let mac = |n: u8| format!("02:00:00:00:0{}:{:02X}", n % 2, n % 5);
    let vni = |n: u8| [100, 300, 301, 302][n as usize % 4];
    let vm = |n: u8| ["vm1", "vm2", "vm3", "up0"][n as usize % 4];
    match kind % 22 {
        0 => Request::Overlay(OverlayRequest::NetworkAdd(NetworkSpec {
            vni: vni(a),
            name: b.is_multiple_of(2).then(|| format!("net{b}")),
            max_macs: None,
            aging: None,
            flood_vteps: vec![ip(b)],
            gateway: if b.is_multiple_of(3) { vec![format!("10.{}.0.254/24", a % 4)] } else { vec![] },
            snat: b.is_multiple_of(6),
        })),
        1 => Request::Overlay(OverlayRequest::NetworkDel { vni: vni(a) }),
        2 => Request::Overlay(OverlayRequest::NetworkAddVtep { vni: vni(a), ip: ip(b) }),
        3 => Request::Overlay(OverlayRequest::NetworkDelVtep { vni: vni(a), ip: ip(b) }),
        4 => Request::Overlay(OverlayRequest::VtepSet(VtepSpec {
            ip: format!("192.168.50.1/{}", 24 - a % 2),
            uplink: vm(b).into(),
            mac: None,
            gateway: None,
            udp_port: None,
            ttl: Some(1 + a),
            ip6: None,
            gateway6: None,
        })),
        5 => Request::Overlay(OverlayRequest::NeighAdd(NeighSpec { ip: ip(a), mac: mac(b) })),
        6 => Request::Overlay(OverlayRequest::NeighDel { ip: ip(a) }),
        7 | 8 => Request::Overlay(OverlayRequest::FibAdd(FibSpec {
            vni: vni(a % 2),
            mac: mac(b),
            port: (!a.is_multiple_of(3)).then(|| vm(a).to_string()),
            vtep: a.is_multiple_of(3).then(|| ip(b)),
        })),
        9 => Request::Overlay(OverlayRequest::FibDel { vni: vni(a % 2), mac: mac(b) }),
        10 | 11 => {
            let id = a.is_multiple_of(2).then_some(1 + b as u32 % 6);
            let (port, v) = if a.is_multiple_of(3) { (None, Some(100)) } else { (Some(vm(b)), None) };
            Request::Acl(AclRequest::AclAdd(rule(port, v, id, a as u32 * 7 + b as u32)))
        }
        12 => Request::Acl(AclRequest::AclDel { id: 1 + a as u32 % 8 }),
        13 => Request::Acl(AclRequest::AclDefault {
            port: vm(a).into(),
            action: if b.is_multiple_of(2) { AclAction::Deny } else { AclAction::Allow },
        }),
        14 => Request::Acl(AclRequest::AclLoad {
            rules: (0..a % 4)
                .map(|i| rule(Some(vm(b + i)), None, i.is_multiple_of(2).then_some(1 + i as u32), i as u32))
                .collect(),
        }),
        15 => Request::Qos(QosRequest::QosSet(QosSpec {
            port: vm(a).into(),
            mode: None,
            ingress: Some(MeterSpec {
                rate: format!("{}mbit", 1 + b),
                burst: None,
                excess_burst: None,
                peak_rate: None,
                peak_burst: None,
            }),
            egress: None,
            yellow: None,
            red: None,
            dscp: b.is_multiple_of(2).then_some(a % 64),
        })),
        16 => Request::Qos(QosRequest::QosClear { port: vm(a).into() }),
        17 => Request::Sflow(if a.is_multiple_of(3) {
            SflowRequest::SflowOff
        } else {
            SflowRequest::SflowSet(SflowSpec {
                collectors: vec![format!("127.0.0.1:{}", 6343 + b as u16 % 2)],
                sampling: b as u32,
                polling: None,
                agent: None,
                header_bytes: None,
            })
        }),
        18 => Request::Xconnect(XconnectRequest::XconnectAdd {
            a: ["x1", "x2", "vm1"][a as usize % 3].into(),
            b: ["x2", "x1", "x3"][b as usize % 3].into(),
        }),
        19 => Request::Xconnect(XconnectRequest::XconnectDel { a: ["x1", "x2", "x3"][a as usize % 3].into() }),
        20 => Request::Endpoint(EndpointRequest::EndpointAdd(EndpointSpec {
            vni: vni(a),
            ip: [format!("10.0.0.{}", b % 3), format!("fd00::{}", b % 3)][a as usize % 2].parse().unwrap(),
            mac: mac(b),
            port: (!b.is_multiple_of(3)).then(|| vm(a).into()),
            vtep: b.is_multiple_of(3).then(|| ip(a)),
            container: None,
            netns: None,
        })),
        _ => Request::Endpoint(EndpointRequest::EndpointDel {
            vni: vni(a),
            ip: [format!("10.0.0.{}", b % 3), format!("fd00::{}", b % 3)][a as usize % 2].parse().unwrap(),
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn journal_records_replay_to_what_the_features_hold(ops in prop::collection::vec((0u8..22, 0u8..8, 0u8..8), 1..80)) {
        let ports = ports();
        let mut f = features();
        let start = desired(&f);
        let mut image = Image::from_value(serde_json::to_value(&start).unwrap()).unwrap();
        for (kind, a, b) in ops {
            let op = op(kind, a, b);
            let before = canonical(desired(&f));
            match handle(&mut f, op.clone(), &ports).expect("a feature's request") {
                Ok(h) => {
                    for c in h.changes {
                        image.apply(c).unwrap();
                    }
                }
                Err(_) => prop_assert_eq!(canonical(desired(&f)), before.clone(), "a refused {:?} changed the state", op),
            }
            let replayed: DesiredState = serde_json::from_value(image.to_value()).unwrap();
            prop_assert_eq!(canonical(replayed), canonical(desired(&f)), "after {:?}", op);
        }
    }
}
