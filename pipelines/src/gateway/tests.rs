//! The gateway through the VM port's stages, frames built byte by byte and answers
//! checked field by field (checksums summed over the whole answer, independently of how
//! the gateway updated them).
use super::*;
use crate::{
    learn::{Clock, LearnEvent},
    meta::ipv4_key,
    stages::{from_vm, parse_vm_batch, Ctx, PerCore},
    tables::{FibEntry, FibTarget, L2Tables},
    wire::{arp, ones_sum},
    VecFrame,
};
use std::sync::Arc;

const VM1: PortId = 1;
const VM2: PortId = 2;
const GW4: [u8; 4] = [10, 1, 0, 254];
const GW6: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_00fe;
const EP2: [u8; 4] = [10, 1, 0, 2];

fn mac(last: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, last])
}

fn tables(gateway: bool) -> L2Tables {
    let mut t = L2Tables::default();
    let gateway = if gateway {
        GatewayAddrs { v4: Some(u32::from_be_bytes(GW4)), v6: Some(GW6) }
    } else {
        GatewayAddrs::default()
    };
    t.networks.insert(
        100,
        Network { vni: 100, ports: vec![VM1, VM2], flood_vteps: vec![], gateway, snat: None, snat6: None },
    );
    t.fib_insert(100, mac(1), FibEntry { target: FibTarget::Port(VM1), is_static: false });
    t.fib_insert(100, mac(2), FibEntry { target: FibTarget::Port(VM2), is_static: false });
    let mut eps = Endpoints::default();
    eps.insert(100, ipv4_key(u32::from_be_bytes(EP2)), Endpoint { mac: mac(2) });
    eps.insert(100, 0xfd00_0000_0000_0000_0000_0000_0000_0002, Endpoint { mac: mac(2) });
    t.endpoints = Arc::new(eps);
    t.port_mtu = vec![1500; 4];
    t
}

/// The batch through VM1's stages, parsed as a VM port's batch is.
fn run(t: &L2Tables, pkts: &[Vec<u8>]) -> (Vec<VecFrame>, Vec<Meta>) {
    let (frames, meta, _) = run_events(t, pkts);
    (frames, meta)
}

/// `run`, with what the cores reported to the control plane.
fn run_events(t: &L2Tables, pkts: &[Vec<u8>]) -> (Vec<VecFrame>, Vec<Meta>, Vec<LearnEvent>) {
    let mut frames: Vec<VecFrame> = pkts.iter().map(|p| VecFrame::new(p)).collect();
    let mut meta = vec![Meta::default(); frames.len()];
    let mut events: Vec<LearnEvent> = Vec::new();
    parse_vm_batch(t, VM1, 100, &frames, &mut meta);
    let ctx = Ctx { tables: t, clock: Clock { now: 0, hz: 1000 } };
    from_vm(&ctx, VM1, 100, &mut frames, &mut meta, &mut PerCore::default(), &mut events);
    (frames, meta, events)
}

fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let a = arp::Arp {
        op: arp::OP_REQUEST,
        sender_mac: mac(1),
        sender_ip: u32::from_be_bytes(sender),
        target_mac: Mac::default(),
        target_ip: u32::from_be_bytes(target),
    };
    arp::frame(Mac::BROADCAST, mac(1), &a).to_vec()
}

fn ipv4(dst_mac: Mac, dst: [u8; 4], ttl: u8, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&mac(1).0);
    f.extend_from_slice(&[0x08, 0x00]);
    let len = (20 + l4.len()) as u16;
    let mut h = [0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, ttl, proto, 0, 0, 10, 1, 0, 1, 0, 0, 0, 0];
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h[16..20].copy_from_slice(&dst);
    let c = crate::wire::checksum(ones_sum(&h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(l4);
    f
}

fn echo_request() -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x77, 0x01, 0, 1];
    icmp.extend_from_slice(b"abcdefghijklmnopqrstuvwxyz");
    let c = crate::wire::checksum(ones_sum(&icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    icmp
}

fn udp() -> Vec<u8> {
    vec![0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4]
}

fn ipv6_sum(f: &[u8], l3: usize) -> u32 {
    let len = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) as usize;
    ones_sum(&f[l3 + 8..l3 + 40]) + len as u32 + f[l3 + 6] as u32 + ones_sum(&f[l3 + 40..l3 + 40 + len])
}

fn solicitation(target: u128, with_option: bool) -> Vec<u8> {
    let src: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_0001;
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.to_be_bytes());
    if with_option {
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&mac(1).0);
    }
    let mut f = Vec::new();
    f.extend_from_slice(&[0x33, 0x33, 0xff, 0, 0, target as u8]);
    f.extend_from_slice(&mac(1).0);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src.to_be_bytes());
    let dst: u128 = 0xff02_0000_0000_0000_0000_0001_ff00_0000 | (target & 0xff_ffff);
    f.extend_from_slice(&dst.to_be_bytes());
    f.extend_from_slice(&icmp);
    let c = crate::wire::checksum(ipv6_sum(&f, 14));
    f[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn arp_for_the_gateway_and_known_endpoints_is_answered_back() {
    let t = tables(true);
    let pkts = [
        arp_request([10, 1, 0, 1], GW4),
        arp_request([10, 1, 0, 1], EP2),
        arp_request([10, 1, 0, 1], [10, 1, 0, 3]),
        // Gratuitous: the sender announces its own address.
        arp_request([10, 1, 0, 1], [10, 1, 0, 1]),
    ];
    let (f, m) = run(&t, &pkts);
    for (i, owner) in [(0, GATEWAY_MAC), (1, mac(2))] {
        assert_eq!(m[i].action, Action::Tx(VM1), "answered back to the asker");
        let b = f[i].bytes();
        assert_eq!(&b[0..6], &mac(1).0);
        assert_eq!(&b[6..12], &owner.0);
        let a = arp::Arp::parse(&b[14..]).unwrap();
        assert_eq!(a.op, arp::OP_REPLY);
        assert_eq!((a.sender_mac, a.target_mac, a.target_ip), (owner, mac(1), 0x0a01_0001));
        assert_eq!(a.sender_ip, u32::from_be_bytes(if i == 0 { GW4 } else { EP2 }));
    }
    assert_eq!(m[2].action, Action::Flood { vni: 100 }, "an unknown address is asked of everyone");
    assert_eq!(m[3].action, Action::Flood { vni: 100 });
}

#[test]
fn an_endpoint_probing_its_own_address_is_not_answered_for_itself() {
    let t = tables(true);
    let mut probe = arp_request([0, 0, 0, 0], EP2);
    probe[6..12].copy_from_slice(&mac(2).0);
    probe[14 + arp::SHA..14 + arp::SHA + 6].copy_from_slice(&mac(2).0);
    let mut frames = vec![VecFrame::new(&probe)];
    let mut meta = vec![Meta::default()];
    parse_vm_batch(&t, VM2, 100, &frames, &mut meta);
    let ctx = Ctx { tables: &t, clock: Clock { now: 0, hz: 1000 } };
    from_vm(&ctx, VM2, 100, &mut frames, &mut meta, &mut PerCore::default(), &mut Vec::new());
    assert_eq!(meta[0].action, Action::Flood { vni: 100 });
}

#[test]
fn repeated_frames_to_the_gateway_are_each_answered_or_routed() {
    // Same first 16 bytes, so a plain port marks the later ones `repeat`: they must not
    // take the first one's answer.
    let t = tables(true);
    let pkts = [
        arp_request([10, 1, 0, 1], GW4),
        arp_request([10, 1, 0, 1], [10, 1, 0, 9]),
        ipv4(GATEWAY_MAC, EP2, 64, 17, &udp()),
        ipv4(GATEWAY_MAC, [10, 1, 0, 9], 64, 17, &udp()),
    ];
    let (_, m) = run(&t, &pkts);
    assert!(m[1].repeat || m[1].ethertype == 0x0806);
    assert_eq!(m[0].action, Action::Tx(VM1));
    assert_eq!(m[1].action, Action::Flood { vni: 100 });
    assert_eq!(m[2].action, Action::Tx(VM2));
    assert_eq!(m[3].action, Action::Drop(DropReason::NoEndpoint));
}

#[test]
fn frames_to_the_gateway_are_routed_to_the_endpoint_with_one_hop_spent() {
    let t = tables(true);
    let pkts = [
        ipv4(GATEWAY_MAC, EP2, 64, 17, &udp()),
        ipv4(GATEWAY_MAC, [10, 1, 0, 9], 64, 17, &udp()),
        ipv4(GATEWAY_MAC, EP2, 1, 17, &udp()),
    ];
    let (f, m) = run(&t, &pkts);
    assert_eq!(m[0].action, Action::Tx(VM2));
    let b = f[0].bytes();
    assert_eq!((&b[0..6], &b[6..12]), (&mac(2).0[..], &GATEWAY_MAC.0[..]));
    assert_eq!(b[14 + 8], 63);
    assert!(ipv4::checksum_ok(&b[14..34]));
    assert_eq!(&b[34..], &udp()[..], "the payload is untouched");
    assert_eq!(m[1].action, Action::Drop(DropReason::NoEndpoint));
    assert_eq!(m[2].action, Action::Drop(DropReason::TtlExceeded));
}

#[test]
fn the_gateway_answers_pings_to_itself_and_nothing_else() {
    let t = tables(true);
    let pkts = [ipv4(GATEWAY_MAC, GW4, 64, 1, &echo_request()), ipv4(GATEWAY_MAC, GW4, 64, 17, &udp())];
    let (f, m) = run(&t, &pkts);
    assert_eq!(m[0].action, Action::Tx(VM1));
    let b = f[0].bytes();
    assert_eq!((&b[0..6], &b[6..12]), (&mac(1).0[..], &GATEWAY_MAC.0[..]));
    assert!(ipv4::checksum_ok(&b[14..34]));
    assert_eq!((&b[26..30], &b[30..34]), (&GW4[..], &[10, 1, 0, 1][..]));
    assert_eq!(b[34], 0, "echo reply");
    assert_eq!(ones_sum(&b[34..]), 0xffff, "ICMP checksum");
    assert_eq!(&b[38..], &echo_request()[4..], "id, sequence and data echoed");
    assert_eq!(m[1].action, Action::Drop(DropReason::ToGateway));
}

#[test]
fn without_a_gateway_frames_to_its_mac_are_dropped_and_arp_still_suppressed() {
    let t = tables(false);
    let (_, m) = run(
        &t,
        &[ipv4(GATEWAY_MAC, EP2, 64, 17, &udp()), arp_request([10, 1, 0, 1], GW4), arp_request([10, 1, 0, 1], EP2)],
    );
    assert_eq!(m[0].action, Action::Drop(DropReason::NoGateway));
    assert_eq!(m[1].action, Action::Flood { vni: 100 });
    assert_eq!(m[2].action, Action::Tx(VM1));
}

#[test]
fn non_ip_to_the_gateway_and_the_gateway_mac_as_a_source_are_dropped() {
    let t = tables(true);
    let mut lldp = ipv4(GATEWAY_MAC, EP2, 64, 17, &udp());
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    let mut spoof = ipv4(mac(2), EP2, 64, 17, &udp());
    spoof[6..12].copy_from_slice(&GATEWAY_MAC.0);
    let (_, m) = run(&t, &[lldp, spoof]);
    assert_eq!(m[0].action, Action::Drop(DropReason::GatewayNotIp));
    assert_eq!(m[1].action, Action::Drop(DropReason::BadSrcMac));
}

#[test]
fn neighbour_solicitations_for_the_gateway_and_endpoints_are_advertised_back() {
    let t = tables(true);
    let ep6 = 0xfd00_0000_0000_0000_0000_0000_0000_0002u128;
    let pkts = [solicitation(GW6, true), solicitation(ep6, false), solicitation(0xfd00 << 112 | 9, true)];
    let (f, m) = run(&t, &pkts);
    for (i, target, owner, router) in [(0, GW6, GATEWAY_MAC, 0x80), (1, ep6, mac(2), 0)] {
        assert_eq!(m[i].action, Action::Tx(VM1));
        let b = f[i].bytes();
        assert_eq!(b.len(), 14 + 40 + 32);
        assert_eq!((&b[0..6], &b[6..12]), (&mac(1).0[..], &owner.0[..]));
        assert_eq!(u128::from_be_bytes(b[22..38].try_into().unwrap()), target, "from the target address");
        assert_eq!(b[38..54], pkts[0][22..38], "to the asker");
        assert_eq!(b[21], 255);
        assert_eq!(b[54], 136);
        assert_eq!(b[58], 0x60 | router, "solicited, override, router for the gateway");
        assert_eq!(u128::from_be_bytes(b[62..78].try_into().unwrap()), target);
        assert_eq!((&b[78..80], &b[80..86]), (&[2u8, 1][..], &owner.0[..]));
        assert_eq!(ipv6_sum(b, 14), 0xffff, "ICMPv6 checksum");
    }
    assert_eq!(m[2].action, Action::Flood { vni: 100 });
}

/// A duplicate address detection probe for `target`: a solicitation from the
/// unspecified address, without a link-layer address option (RFC 4862 5.4.2).
fn dad_probe(target: u128) -> Vec<u8> {
    let mut f = solicitation(target, false);
    f[22..38].fill(0);
    f[56..58].fill(0);
    let c = crate::wire::checksum(ipv6_sum(&f, 14));
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn a_vm_checking_whether_the_gateway_address_is_free_is_told_it_is_taken() {
    let t = tables(true);
    let ep6 = 0xfd00_0000_0000_0000_0000_0000_0000_0002u128;
    let (f, m) = run(&t, &[dad_probe(GW6), dad_probe(ep6)]);
    assert_eq!(m[0].action, Action::Tx(VM1));
    let b = f[0].bytes();
    assert_eq!((&b[0..6], &b[6..12]), (&[0x33, 0x33, 0, 0, 0, 1][..], &GATEWAY_MAC.0[..]), "to all nodes' MAC");
    assert_eq!(u128::from_be_bytes(b[22..38].try_into().unwrap()), GW6);
    assert_eq!(u128::from_be_bytes(b[38..54].try_into().unwrap()), 0xff02 << 112 | 1, "to all nodes");
    assert_eq!((b[21], b[54]), (255, 136));
    assert_eq!(b[58], 0x80 | 0x20, "a router's, overriding, not solicited (RFC 4861 7.2.4)");
    assert_eq!(u128::from_be_bytes(b[62..78].try_into().unwrap()), GW6);
    assert_eq!((&b[78..80], &b[80..86]), (&[2u8, 1][..], &GATEWAY_MAC.0[..]));
    assert_eq!(ipv6_sum(b, 14), 0xffff, "ICMPv6 checksum");
    // An endpoint's address is its owner's to defend, wherever it is: the probe goes on.
    assert_eq!(m[1].action, Action::Flood { vni: 100 });
}

#[test]
fn addresses_vms_speak_for_are_reported_for_the_endpoint_table() {
    let t = tables(true);
    let mut spoofed = arp_request([10, 1, 0, 7], GW4);
    spoofed[14 + arp::SHA + 5] = 0x99; // the ARP sender is not the frame's source
    let pkts =
        [arp_request([10, 1, 0, 1], GW4), spoofed, arp_request([0, 0, 0, 0], [10, 1, 0, 1]), solicitation(GW6, true)];
    let (_, _, events) = run_events(&t, &pkts);
    let ips: Vec<u128> = events.iter().filter(|e| e.ip != 0).map(|e| e.ip).collect();
    assert_eq!(ips, vec![ipv4_key(0x0a01_0001), 0xfd00_0000_0000_0000_0000_0000_0000_0001]);
    assert!(events.iter().filter(|e| e.ip != 0).all(|e| e.mac == mac(1) && e.target == FibTarget::Port(VM1)));
    // Without a gateway, nothing is learned.
    let (_, _, events) = run_events(&tables(false), &pkts[..1]);
    assert!(events.iter().all(|e| e.ip == 0));
}

#[test]
fn an_unknown_address_is_asked_about_and_answers_to_the_gateway_end_there() {
    let t = tables(true);
    let unknown = [10, 1, 0, 9];
    // A unicast ARP request to the gateway's MAC (a VM checking its cached entry) is
    // answered; an ARP reply to it (an answer to the gateway's own question) is learned
    // and goes no further.
    let mut probe = arp_request([10, 1, 0, 1], GW4);
    probe[0..6].copy_from_slice(&GATEWAY_MAC.0);
    let mut reply = arp_request([10, 1, 0, 1], GW4);
    reply[0..6].copy_from_slice(&GATEWAY_MAC.0);
    reply[14 + arp::OPER + 1] = arp::OP_REPLY as u8;
    let pkts = [ipv4(GATEWAY_MAC, unknown, 64, 17, &udp()), ipv4(GATEWAY_MAC, unknown, 64, 17, &udp()), probe, reply];
    let (_, meta, events) = run_events(&t, &pkts);
    let actions: Vec<Action> = meta.iter().map(|m| m.action).collect();
    let none = Action::Drop(DropReason::NoEndpoint);
    assert_eq!(actions, vec![none, none, Action::Tx(VM1), Action::Drop(DropReason::ToGateway)]);
    let asked: Vec<&LearnEvent> = events.iter().filter(|e| e.unknown).collect();
    assert_eq!(asked, vec![&LearnEvent::unknown(100, ipv4_key(u32::from_be_bytes(unknown)), VM1)], "once");
    let learned = events.iter().filter(|e| !e.unknown && e.ip == ipv4_key(0x0a01_0001)).count();
    assert_eq!(learned, 2, "the sender of the probe and of the reply: {events:?}");
}

#[test]
fn the_gateways_questions_are_well_formed() {
    let target = ipv4_key(0x0a01_0009);
    let q = ask::arp_request(u32::from_be_bytes(GW4), 0x0a01_0009);
    let a = arp::Arp::parse(&q[14..]).unwrap();
    assert_eq!(
        (a.op, a.sender_mac, a.sender_ip, a.target_ip as u128 | 0xffff << 32),
        (arp::OP_REQUEST, GATEWAY_MAC, u32::from_be_bytes(GW4), target)
    );
    assert_eq!(&q[0..6], &Mac::BROADCAST.0);
    let t6: u128 = 0xfd00_0000_0000_0000_0000_0000_0012_3456;
    let ns = ask::solicitation(GW6, t6);
    assert_eq!(ipv6_sum(&ns, 14), 0xffff, "ICMPv6 checksum");
    assert_eq!(&ns[0..6], &[0x33, 0x33, 0xff, 0x12, 0x34, 0x56], "solicited-node group's MAC");
    assert_eq!(u128::from_be_bytes(ns[38..54].try_into().unwrap()), 0xff02_0000_0000_0000_0000_0001_ff12_3456);
    assert_eq!((ns[21], ns[54], u128::from_be_bytes(ns[62..78].try_into().unwrap())), (255, 135, t6));
    assert_eq!(&ns[78..86], &[1, 1, 2, 0x76, 0x73, 0x67, 0x77, 1], "source link-layer option: the gateway MAC");
}
