//! The journal's oracle: whatever a feature's handler records for a request, replayed
//! onto the state as it was, gives the state the features hold afterwards. Requests
//! that are refused must record nothing.
use crate::{
    acl::{api::*, Acl},
    endpoints::{api::*, Endpoints},
    feature::{Ctx, Feature, Handled},
    overlay::{api::*, Overlay},
    ports::{api::PortRole, port_ref, PortRef},
    qos::{api::*, Qos},
    sflow::{api::*, Sflow},
    state::DesiredState,
    store::change::Image,
    xconnect::{api::XconnectRequest, Xconnects},
};
use proptest::prelude::*;
use std::net::Ipv4Addr;

struct Features {
    xconnects: Xconnects,
    overlay: Overlay,
    acl: Acl,
    qos: Qos,
    sflow: Sflow,
    endpoints: Endpoints,
}

impl Features {
    fn desired(&self) -> DesiredState {
        let mut out = DesiredState::new();
        for f in [&self.xconnects as &dyn Feature, &self.overlay, &self.acl, &self.qos, &self.sflow, &self.endpoints] {
            f.desired(&mut out);
        }
        out
    }

    fn handle(&mut self, op: &Op, ports: &[PortRef]) -> Result<Handled, String> {
        let overlay = &self.overlay;
        let has_network = |v: u32| overlay.has_network(v);
        let ctx = Ctx { ports, has_network: &has_network, vtep_ip: overlay.vtep_ip(), shared: None };
        match op.clone() {
            Op::Overlay(r) => {
                let ctx = Ctx { ports, has_network: &|_| false, vtep_ip: None, shared: None };
                self.overlay.handle(r, &ctx)
            }
            Op::Acl(r) => self.acl.handle(r, &ctx),
            Op::Qos(r) => self.qos.handle(r, &ctx),
            Op::Sflow(r) => self.sflow.handle(r, &ctx),
            Op::Xconnect(r) => self.xconnects.handle(r, &ctx),
            Op::Endpoint(r) => self.endpoints.handle(r, &ctx),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Overlay(OverlayRequest),
    Acl(AclRequest),
    Qos(QosRequest),
    Sflow(SflowRequest),
    Xconnect(XconnectRequest),
    Endpoint(EndpointRequest),
}

/// The desired state with its sections in key order (as replay leaves unordered
/// sections in whatever order; the features order them themselves).
fn canonical(mut s: DesiredState) -> DesiredState {
    s.networks.sort_by_key(|n| n.vni);
    s.fib.sort_by(|a, b| (a.vni, &a.mac).cmp(&(b.vni, &b.mac)));
    s.neighbours.sort_by_key(|n| n.ip);
    s.acl.sort_by_key(|r| r.id);
    s.qos.sort_by(|a, b| a.port.cmp(&b.port));
    s.endpoints.sort_by_key(|e| (e.vni, e.ip));
    s
}

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
fn op(kind: u8, a: u8, b: u8) -> Op {
    let ip = |n: u8| Ipv4Addr::new(192, 168, 50, 2 + n % 4);
    let mac = |n: u8| format!("02:00:00:00:0{}:{:02X}", n % 2, n % 5);
    let vni = |n: u8| [100, 300, 301, 302][n as usize % 4];
    let vm = |n: u8| ["vm1", "vm2", "vm3", "up0"][n as usize % 4];
    match kind % 22 {
        0 => Op::Overlay(OverlayRequest::NetworkAdd(NetworkSpec {
            vni: vni(a),
            name: b.is_multiple_of(2).then(|| format!("net{b}")),
            max_macs: None,
            aging: None,
            flood_vteps: vec![ip(b)],
            gateway: if b.is_multiple_of(3) { vec![format!("10.{}.0.254/24", a % 4)] } else { vec![] },
            snat: b.is_multiple_of(6),
        })),
        1 => Op::Overlay(OverlayRequest::NetworkDel { vni: vni(a) }),
        2 => Op::Overlay(OverlayRequest::NetworkAddVtep { vni: vni(a), ip: ip(b) }),
        3 => Op::Overlay(OverlayRequest::NetworkDelVtep { vni: vni(a), ip: ip(b) }),
        4 => Op::Overlay(OverlayRequest::VtepSet(VtepSpec {
            ip: format!("192.168.50.1/{}", 24 - a % 2),
            uplink: vm(b).into(),
            mac: None,
            gateway: None,
            udp_port: None,
            ttl: Some(1 + a),
        })),
        5 => Op::Overlay(OverlayRequest::NeighAdd(NeighSpec { ip: ip(a), mac: mac(b) })),
        6 => Op::Overlay(OverlayRequest::NeighDel { ip: ip(a) }),
        7 | 8 => Op::Overlay(OverlayRequest::FibAdd(FibSpec {
            vni: vni(a % 2),
            mac: mac(b),
            port: (!a.is_multiple_of(3)).then(|| vm(a).to_string()),
            vtep: a.is_multiple_of(3).then(|| ip(b)),
        })),
        9 => Op::Overlay(OverlayRequest::FibDel { vni: vni(a % 2), mac: mac(b) }),
        10 | 11 => {
            let id = a.is_multiple_of(2).then_some(1 + b as u32 % 6);
            let (port, v) = if a.is_multiple_of(3) { (None, Some(100)) } else { (Some(vm(b)), None) };
            Op::Acl(AclRequest::AclAdd(rule(port, v, id, a as u32 * 7 + b as u32)))
        }
        12 => Op::Acl(AclRequest::AclDel { id: 1 + a as u32 % 8 }),
        13 => Op::Acl(AclRequest::AclDefault {
            port: vm(a).into(),
            action: if b.is_multiple_of(2) { AclAction::Deny } else { AclAction::Allow },
        }),
        14 => Op::Acl(AclRequest::AclLoad {
            rules: (0..a % 4)
                .map(|i| rule(Some(vm(b + i)), None, i.is_multiple_of(2).then_some(1 + i as u32), i as u32))
                .collect(),
        }),
        15 => Op::Qos(QosRequest::QosSet(QosSpec {
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
        16 => Op::Qos(QosRequest::QosClear { port: vm(a).into() }),
        17 => Op::Sflow(if a.is_multiple_of(3) {
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
        18 => Op::Xconnect(XconnectRequest::XconnectAdd {
            a: ["x1", "x2", "vm1"][a as usize % 3].into(),
            b: ["x2", "x1", "x3"][b as usize % 3].into(),
        }),
        19 => Op::Xconnect(XconnectRequest::XconnectDel { a: ["x1", "x2", "x3"][a as usize % 3].into() }),
        20 => Op::Endpoint(EndpointRequest::EndpointAdd(EndpointSpec {
            vni: vni(a),
            ip: [format!("10.0.0.{}", b % 3), format!("fd00::{}", b % 3)][a as usize % 2].parse().unwrap(),
            mac: mac(b),
            port: (!b.is_multiple_of(3)).then(|| vm(a).into()),
            vtep: b.is_multiple_of(3).then(|| ip(a)),
            container: None,
            netns: None,
        })),
        _ => Op::Endpoint(EndpointRequest::EndpointDel {
            vni: vni(a),
            ip: [format!("10.0.0.{}", b % 3), format!("fd00::{}", b % 3)][a as usize % 2].parse().unwrap(),
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn journal_records_replay_to_what_the_features_hold(ops in prop::collection::vec((0u8..22, 0u8..8, 0u8..8), 1..80)) {
        let ports = vec![
            port_ref("vm1", 0, PortRole::Vm, Some(100)),
            port_ref("vm2", 1, PortRole::Vm, Some(100)),
            port_ref("vm3", 2, PortRole::Vm, Some(300)),
            port_ref("up0", 3, PortRole::Uplink, None),
            PortRef { role: None, vni: None, ..port_ref("x1", 4, PortRole::Vm, None) },
            PortRef { role: None, vni: None, ..port_ref("x2", 5, PortRole::Vm, None) },
            PortRef { role: None, vni: None, ..port_ref("x3", 6, PortRole::Vm, None) },
        ];
        let mut f = Features {
            xconnects: Xconnects::default(),
            overlay: Overlay::default(),
            acl: Acl::default(),
            qos: Qos::default(),
            sflow: Sflow::default(),
            endpoints: Endpoints::default(),
        };
        // vm1..vm3 need their networks from the start (ports cannot be added here).
        f.overlay.restore(
            vec![NetworkSpec { vni: 100, name: None, max_macs: None, aging: None, flood_vteps: vec![], gateway: vec![], snat: false },
                 NetworkSpec { vni: 300, name: None, max_macs: None, aging: None, flood_vteps: vec![], gateway: vec![], snat: false }],
            None, vec![], vec![]);
        let start = f.desired();
        let mut image = Image::from_value(serde_json::to_value(&start).unwrap()).unwrap();
        for (kind, a, b) in ops {
            let op = op(kind, a, b);
            let before = canonical(f.desired());
            match f.handle(&op, &ports) {
                Ok(h) => {
                    for c in h.changes {
                        image.apply(c).unwrap();
                    }
                }
                Err(_) => prop_assert_eq!(canonical(f.desired()), before.clone(), "a refused {:?} changed the state", op),
            }
            let replayed: DesiredState = serde_json::from_value(image.to_value()).unwrap();
            prop_assert_eq!(canonical(replayed), canonical(f.desired()), "after {:?}", op);
        }
    }
}
