use super::*;
use crate::learn::Clock;
use crate::{
    tables::{FibEntry, Network, Remote, Vtep},
    wire::Mac,
    VecFrame,
};

const VM1: PortId = 1;
const VM2: PortId = 2;
const VM3: PortId = 3; // in VNI 200
const UPLINK: PortId = 9;
const REMOTE: u32 = 0xc0a8_3202; // 192.168.50.2
const HZ: u64 = 1000;

fn mac(last: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, last])
}

fn vtep() -> Vtep {
    Vtep { ip: 0xc0a8_3201, mac: mac(0xf0), uplink: UPLINK, udp_port: 4789, ttl: 64, mtu: 1500 }
}

fn tables() -> L2Tables {
    let mut t = L2Tables::default();
    t.networks
        .insert(100, Network { vni: 100, ports: vec![VM1, VM2], flood_vteps: vec![REMOTE], ..Default::default() });
    t.networks.insert(200, Network { vni: 200, ports: vec![VM3], flood_vteps: vec![], ..Default::default() });
    t.vtep = Some(vtep());
    t.remotes.insert(REMOTE, Remote::new(&vtep(), REMOTE, mac(0xee)));
    t.fib_insert(100, mac(2), FibEntry { target: FibTarget::Port(VM2), is_static: false });
    t.fib_insert(100, mac(0x22), FibEntry { target: FibTarget::Vtep(REMOTE), is_static: true });
    t.fib_insert(100, mac(0x33), FibEntry { target: FibTarget::Vtep(0x0a0a_0a0a), is_static: true });
    // The same MAC in VNI 200 is another host.
    t.fib_insert(200, mac(2), FibEntry { target: FibTarget::Port(VM3), is_static: false });
    t.port_mtu = vec![1500; 16];
    t
}

fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 1, 10, 1, 0, 2]);
    f.extend_from_slice(&[0x30, 0x39, 0x13, 0x89, 0, 26, 0, 0]);
    f.resize(len, 0x5a);
    f
}

fn run_vm(t: &L2Tables, port: PortId, vni: u32, pkts: &[Vec<u8>]) -> (Vec<VecFrame>, Vec<Meta>, Vec<LearnEvent>) {
    let mut frames: Vec<VecFrame> = pkts.iter().map(|p| VecFrame::new(p)).collect();
    let mut meta = vec![Meta::default(); frames.len()];
    let mut events = Vec::new();
    parse_batch(&frames, &mut meta);
    let ctx = Ctx { tables: t, clock: Clock { now: 0, hz: HZ } };
    from_vm(&ctx, port, vni, &mut frames, &mut meta, &mut PerCore::default(), &mut events);
    (frames, meta, events)
}

fn run_uplink(t: &L2Tables, pkts: &[Vec<u8>]) -> (Vec<VecFrame>, Vec<Meta>, Vec<LearnEvent>) {
    let mut frames: Vec<VecFrame> = pkts.iter().map(|p| VecFrame::new(p)).collect();
    let mut meta = vec![Meta::default(); frames.len()];
    let mut events = Vec::new();
    parse_batch(&frames, &mut meta);
    let ctx = Ctx { tables: t, clock: Clock { now: 0, hz: HZ } };
    from_uplink(&ctx, UPLINK, &mut frames, &mut meta, &mut PerCore::default(), &mut events);
    (frames, meta, events)
}

#[test]
fn vm_to_vm_is_switched_locally_and_untouched() {
    let t = tables();
    let pkt = frame(mac(2), mac(1), 64);
    let (f, m, ev) = run_vm(&t, VM1, 100, std::slice::from_ref(&pkt));
    assert_eq!(m[0].action, Action::Tx(VM2));
    assert_eq!(f[0].bytes(), &pkt[..]);
    assert_eq!(ev, vec![LearnEvent::mac(100, mac(1), FibTarget::Port(VM1))]);
}

#[test]
fn a_batch_of_mixed_macs_gets_each_packet_its_own_answer() {
    // Runs of equal MACs share one lookup; a change of MAC must look up again.
    let t = tables();
    let pkts = [
        frame(mac(2), mac(1), 64),
        frame(mac(2), mac(1), 64),
        frame(mac(0x22), mac(1), 64),
        frame(mac(2), mac(5), 64),
        frame(mac(9), mac(5), 64),
        frame(mac(2), mac(1), 64),
    ];
    let (_, m, ev) = run_vm(&t, VM1, 100, &pkts);
    let actions: Vec<Action> = m.iter().map(|m| m.action).collect();
    assert_eq!(
        actions,
        [
            Action::Tx(VM2),
            Action::Tx(VM2),
            Action::Tx(UPLINK),
            Action::Tx(VM2),
            Action::Flood { vni: 100 },
            Action::Tx(VM2)
        ]
    );
    let learned: Vec<Mac> = ev.iter().map(|e| e.mac).collect();
    assert_eq!(learned, [mac(1), mac(5)], "each source reported once: {ev:?}");
}

/// A core keeps its FIB answers from batch to batch only while the tables are the same
/// published compile: a MAC that moved (a new compile, a new stamp) is sent where it is
/// now, from the uplink as from a VM, and tables never published keep nothing.
#[test]
fn a_core_keeps_fib_answers_only_for_the_compile_they_came_from() {
    let mut core = PerCore::default();
    let mut run = |t: &L2Tables, by_uplink: bool, pkt: Vec<u8>| {
        let mut frames = vec![VecFrame::new(&pkt)];
        let mut meta = vec![Meta::default()];
        parse_batch(&frames, &mut meta);
        let ctx = Ctx { tables: t, clock: Clock { now: 0, hz: HZ } };
        if by_uplink {
            from_uplink(&ctx, UPLINK, &mut frames, &mut meta, &mut core, &mut Vec::new());
        } else {
            from_vm(&ctx, VM1, 100, &mut frames, &mut meta, &mut core, &mut Vec::new());
        }
        meta[0].action
    };
    let to_vm2 = || frame(mac(2), mac(1), 64);
    let decapsulated = || vxlan::build(mac(0xee), vtep().mac, REMOTE, &vtep(), 100, &frame(mac(2), mac(0x22), 64));
    let moved =
        |t: &mut L2Tables| t.fib_insert(100, mac(2), FibEntry { target: FibTarget::Port(VM1), is_static: false });
    // Published: answered, then kept while the stamp holds.
    let mut t = tables();
    t.stamp();
    assert_eq!(run(&t, false, to_vm2()), Action::Tx(VM2));
    let mut next = t.clone();
    moved(&mut next);
    next.stamp();
    assert_eq!(run(&next, false, to_vm2()), Action::Drop(DropReason::SamePort), "a new compile: the MAC's new port");
    assert_eq!(run(&t, true, decapsulated()), Action::Tx(VM2), "the older compile again: its own answer");
    assert_eq!(run(&next, true, decapsulated()), Action::Tx(VM1));
    // Never published (stamp 0): nothing kept from one batch to the next.
    let mut t = tables();
    assert_eq!(run(&t, false, to_vm2()), Action::Tx(VM2));
    moved(&mut t);
    assert_eq!(run(&t, false, to_vm2()), Action::Drop(DropReason::SamePort));
}

#[test]
fn unknown_broadcast_and_multicast_flood_in_the_vni() {
    let t = tables();
    let (_, m, _) = run_vm(
        &t,
        VM1,
        100,
        &[
            frame(mac(0x77), mac(1), 64),
            frame(Mac::BROADCAST, mac(1), 64),
            frame(Mac([1, 0, 0x5e, 0, 0, 1]), mac(1), 64),
        ],
    );
    assert!(m.iter().all(|m| m.action == Action::Flood { vni: 100 }));
}

#[test]
fn vnis_are_isolated_even_with_the_same_macs() {
    let t = tables();
    let (_, m, ev) = run_vm(&t, VM3, 200, &[frame(mac(2), mac(1), 64), frame(mac(0x22), mac(1), 64)]);
    assert_eq!(m[0].action, Action::Drop(DropReason::SamePort), "mac 2 in VNI 200 is on VM3 itself");
    assert_eq!(m[1].action, Action::Flood { vni: 200 }, "VNI 100's remote MAC is unknown in VNI 200");
    assert!(ev.iter().all(|e| e.vni == 200));
}

#[test]
fn vm_to_remote_vtep_is_encapsulated_to_the_uplink() {
    let t = tables();
    let pkt = frame(mac(0x22), mac(1), 100);
    let (f, m, _) = run_vm(&t, VM1, 100, &[pkt.clone(), frame(mac(0x33), mac(1), 64)]);
    assert_eq!(m[0].action, Action::Tx(UPLINK));
    let b = f[0].bytes();
    assert_eq!(b.len(), 150);
    assert_eq!(&b[0..6], &mac(0xee).0);
    assert_eq!(&b[30..34], &REMOTE.to_be_bytes());
    assert_eq!(&b[46..49], &[0, 0, 100]);
    assert_eq!(&b[50..], &pkt[..]);
    assert_eq!(m[1].action, Action::Drop(DropReason::NexthopUnresolved));
}

#[test]
fn bad_source_macs_and_unknown_vnis_drop() {
    let t = tables();
    let (_, m, ev) = run_vm(&t, VM1, 100, &[frame(mac(2), Mac::BROADCAST, 64)]);
    assert_eq!(m[0].action, Action::Drop(DropReason::BadSrcMac));
    assert!(ev.is_empty(), "a group address is never learned");
    let (_, m, _) = run_vm(&t, VM1, 300, &[frame(mac(2), mac(1), 64)]);
    assert_eq!(m[0].action, Action::Drop(DropReason::VniUnknown));
}

#[test]
fn decap_delivers_the_inner_frame_and_learns_the_remote_vtep() {
    let t = tables();
    let inner = frame(mac(2), mac(0x44), 80);
    let outer = vxlan::build(mac(0xee), vtep().mac, REMOTE, &vtep(), 100, &inner);
    let (f, m, ev) = run_uplink(&t, &[outer]);
    assert_eq!(m[0].action, Action::Tx(VM2));
    assert_eq!(f[0].bytes(), &inner[..], "inner frame byte-identical");
    assert_eq!(ev, vec![LearnEvent::mac(100, mac(0x44), FibTarget::Vtep(REMOTE))]);
}

#[test]
fn decap_floods_locally_and_never_back_into_the_overlay() {
    let t = tables();
    let bcast = vxlan::build(mac(0xee), vtep().mac, REMOTE, &vtep(), 100, &frame(Mac::BROADCAST, mac(0x44), 64));
    let to_remote = vxlan::build(mac(0xee), vtep().mac, REMOTE, &vtep(), 100, &frame(mac(0x22), mac(0x44), 64));
    let (_, m, _) = run_uplink(&t, &[bcast, to_remote]);
    assert_eq!(m[0].action, Action::Flood { vni: 100 });
    assert_eq!(m[1].action, Action::Drop(DropReason::SplitHorizon));
}

#[test]
fn decap_respects_the_vm_port_mtu_and_strips_padding() {
    let mut t = tables();
    t.port_mtu[VM2 as usize] = 1000;
    let big = vxlan::build(
        mac(0xee),
        vtep().mac,
        REMOTE,
        &Vtep { mtu: 9000, ..vtep() },
        100,
        &frame(mac(2), mac(0x44), 1100),
    );
    let (_, m, _) = run_uplink(&t, &[big]);
    assert_eq!(m[0].action, Action::Drop(DropReason::MtuExceeded));
    // Outer frame padded past the IP length: the inner frame is cut at the UDP length.
    let inner = frame(mac(2), mac(0x44), 14);
    let mut padded = vxlan::build(mac(0xee), vtep().mac, REMOTE, &vtep(), 100, &inner);
    padded.resize(70, 0);
    let (f, m, _) = run_uplink(&tables(), &[padded]);
    assert_eq!(m[0].action, Action::Tx(VM2));
    assert_eq!(f[0].bytes(), &inner[..]);
}

#[test]
fn arp_for_our_vtep_is_answered_in_place_and_replies_and_announcements_are_punted() {
    let t = tables();
    let v = vtep();
    let asker = arp::Arp {
        op: arp::OP_REQUEST,
        sender_mac: mac(0xee),
        sender_ip: REMOTE,
        target_mac: Mac::default(),
        target_ip: v.ip,
    };
    let other = arp::Arp { target_ip: 0x01020304, ..asker };
    let reply = arp::Arp { op: arp::OP_REPLY, target_mac: v.mac, ..asker };
    let announce = arp::Arp { target_ip: REMOTE, ..asker };
    let spoof = arp::Arp { sender_ip: v.ip, target_ip: v.ip, ..asker };
    let (f, m, _) = run_uplink(
        &t,
        &[
            arp::frame(Mac::BROADCAST, mac(0xee), &asker).to_vec(),
            arp::frame(Mac::BROADCAST, mac(0xee), &other).to_vec(),
            arp::frame(v.mac, mac(0xee), &reply).to_vec(),
            arp::frame(Mac::BROADCAST, mac(0xee), &announce).to_vec(),
            arp::frame(Mac::BROADCAST, mac(0xee), &spoof).to_vec(),
        ],
    );
    assert_eq!(m[0].action, Action::Tx(UPLINK));
    let b = f[0].bytes();
    assert_eq!(&b[0..6], &mac(0xee).0);
    assert_eq!(&b[6..12], &v.mac.0);
    let a = arp::Arp::parse(&b[14..]).unwrap();
    assert_eq!(
        a,
        arp::Arp { op: arp::OP_REPLY, sender_mac: v.mac, sender_ip: v.ip, target_mac: mac(0xee), target_ip: REMOTE }
    );
    assert_eq!(m[1].action, Action::Drop(DropReason::ArpNotForUs));
    assert_eq!(m[2].action, Action::Punt);
    // A neighbour announcing itself is heard; one claiming our own address is not
    // taken as an announcement.
    assert_eq!(m[3].action, Action::Punt);
    assert_ne!(m[4].action, Action::Punt);
}

#[test]
fn uplink_without_a_vtep_drops_everything() {
    let mut t = tables();
    t.vtep = None;
    let (_, m, _) = run_uplink(&t, &[frame(mac(2), mac(1), 64)]);
    assert_eq!(m[0].action, Action::Drop(DropReason::NoVtep));
}

#[test]
fn vlan_tagged_frames_from_a_vm_are_switched_whole() {
    let t = tables();
    let mut tagged = frame(mac(2), mac(1), 68);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    let (f, m, _) = run_vm(&t, VM1, 100, &[tagged.clone()]);
    assert_eq!(m[0].action, Action::Tx(VM2));
    assert_eq!(m[0].vlan_tci, Some(10));
    assert_eq!(f[0].bytes(), &tagged[..]);
}

/// `parse_vm_batch` then `from_vm`, as the PMD cores run a VM port.
fn run_vm_repeats(t: &L2Tables, port: PortId, vni: u32, pkts: &[Vec<u8>]) -> (Vec<VecFrame>, Vec<Meta>) {
    let mut frames: Vec<VecFrame> = pkts.iter().map(|p| VecFrame::new(p)).collect();
    let mut meta = vec![Meta::default(); frames.len()];
    parse_vm_batch(t, port, vni, &frames, &mut meta);
    let ctx = Ctx { tables: t, clock: Clock { now: 0, hz: HZ } };
    from_vm(&ctx, port, vni, &mut frames, &mut meta, &mut PerCore::default(), &mut Vec::new());
    (frames, meta)
}

/// Frames with the same MACs to `dst`, differing in IP destination and UDP port.
fn same_macs(dst: Mac) -> Vec<Vec<u8>> {
    (0..8u8)
        .map(|i| {
            let mut f = frame(dst, mac(1), 64);
            f[33] = 2 + i;
            f[36..38].copy_from_slice(&(5001 + (i % 2) as u16).to_be_bytes());
            f
        })
        .collect()
}

#[test]
fn repeated_headers_get_the_decision_each_frame_would_get() {
    let plain = tables();
    let mut egress_acl = tables();
    let mut ports: Vec<Option<std::sync::Arc<crate::acl::PortAcl>>> = (0..16).map(|_| None).collect();
    let allow_5001 = crate::acl::Rule {
        id: 1,
        priority: 1,
        family: crate::acl::Family::V4,
        src: crate::acl::Prefix::ANY,
        dst: crate::acl::Prefix::ANY,
        proto: Some(17),
        sport: crate::acl::ANY_PORT,
        dport: (5001, 5001),
        icmp_type: None,
        verdict: crate::acl::Verdict::Allow,
        counter: 0,
    };
    ports[VM2 as usize] = Some(std::sync::Arc::new(crate::acl::PortAcl {
        ingress: crate::acl::Classifier::new(vec![]),
        egress: crate::acl::Classifier::new(vec![allow_5001]),
        default: crate::acl::Verdict::Deny,
    }));
    egress_acl.acl = std::sync::Arc::new(crate::acl::AclTables { ports });
    // Local delivery on plain ports, local delivery through an egress ACL that tells the
    // frames apart, and encapsulation (whose UDP source port follows each flow).
    for (t, dst) in [(&plain, mac(2)), (&egress_acl, mac(2)), (&plain, mac(0x22))] {
        let pkts = same_macs(dst);
        let (want_f, want_m, _) = run_vm(t, VM1, 100, &pkts);
        let (got_f, got_m) = run_vm_repeats(t, VM1, 100, &pkts);
        for i in 0..pkts.len() {
            assert_eq!(got_m[i].action, want_m[i].action, "frame {i} to {dst:?}");
            assert_eq!(got_f[i].bytes(), want_f[i].bytes(), "frame {i} to {dst:?}");
        }
    }
    // The plain case took the shortcut: frames after the first were never parsed.
    let (_, m) = run_vm_repeats(&plain, VM1, 100, &same_macs(mac(2)));
    // (each frame has its own IP destination; every meta holds the first frame's)
    let first = crate::meta::ipv4_key(0x0a01_0002);
    assert!(m.iter().all(|m| m.ip_dst == first && m.action == Action::Tx(VM2)), "{m:?}");
    let (_, m) = run_vm_repeats(&egress_acl, VM1, 100, &same_macs(mac(2)));
    assert_eq!(m[1].action, Action::Drop(DropReason::AclDenyOut), "parsed and classified on its own");
}

/// A rule on UDP to `dst` port `dport`, from anywhere.
fn udp_rule(
    id: u32,
    priority: u32,
    dst: crate::acl::Prefix,
    dport: u16,
    verdict: crate::acl::Verdict,
    counter: u32,
) -> crate::acl::Rule {
    use crate::acl::{Family, Prefix, Rule, ANY_PORT};
    Rule {
        id,
        priority,
        family: Family::V4,
        src: Prefix::ANY,
        dst,
        proto: Some(17),
        sport: ANY_PORT,
        dport: (dport, dport),
        icmp_type: None,
        verdict,
        counter,
    }
}

mod acl {
    use super::*;
    use crate::acl::{AclTables, Classifier, PortAcl, Prefix, Rule, Verdict};
    use std::sync::Arc;

    fn rule(id: u32, priority: u32, dst: Prefix, verdict: Verdict) -> Rule {
        udp_rule(id, priority, dst, 5001, verdict, id * 10)
    }

    /// VM1: in = deny UDP/5001 to 10.1.0.2 (rule 1), default allow.
    /// VM2: out = allow UDP/5001 (rule 2), default deny.
    fn with_acl() -> L2Tables {
        let mut t = tables();
        let mut ports: Vec<Option<std::sync::Arc<PortAcl>>> = (0..16).map(|_| None).collect();
        ports[VM1 as usize] = Some(std::sync::Arc::new(PortAcl {
            ingress: Classifier::new(vec![rule(1, 10, Prefix::v4(0x0a010002, 32), Verdict::Deny)]),
            egress: Classifier::new(vec![]),
            default: Verdict::Allow,
        }));
        ports[VM2 as usize] = Some(std::sync::Arc::new(PortAcl {
            ingress: Classifier::new(vec![]),
            egress: Classifier::new(vec![rule(2, 10, Prefix::ANY, Verdict::Allow)]),
            default: Verdict::Deny,
        }));
        t.acl = Arc::new(AclTables { ports });
        t
    }

    fn udp(dst_mac: Mac, src_mac: Mac, dst_ip: [u8; 4], dport: u16) -> Vec<u8> {
        let mut f = frame(dst_mac, src_mac, 64);
        f[30..34].copy_from_slice(&dst_ip);
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn ingress_deny_drops_before_learning_and_names_the_rule() {
        let t = with_acl();
        let (_, m, ev) = run_vm(&t, VM1, 100, &[udp(mac(2), mac(1), [10, 1, 0, 2], 5001)]);
        assert_eq!(m[0].action, Action::Drop(DropReason::AclDenyIn));
        assert_eq!(m[0].acl_in, 11, "rule 1's counter slot (10) + 1");
        assert!(ev.is_empty(), "a denied frame is not learned");
        // Allowed in by VM1's default; VM2's allow rule lets UDP/5001 out to it...
        let (_, m, _) = run_vm(&t, VM1, 100, &[udp(mac(2), mac(1), [10, 1, 0, 3], 5001)]);
        assert_eq!(m[0].action, Action::Tx(VM2));
        assert_eq!((m[0].acl_in, m[0].acl_out), (0, 21));
        // ...and VM2's default denies anything else.
        let (_, m, _) = run_vm(&t, VM1, 100, &[udp(mac(2), mac(1), [10, 1, 0, 3], 5002)]);
        assert_eq!(m[0].action, Action::Drop(DropReason::AclDenyOut));
        assert_eq!(m[0].acl_out, 0, "the default decided");
    }

    #[test]
    fn egress_rules_apply_to_decapsulated_frames_and_non_ip_but_arp_follows_the_default() {
        let t = with_acl();
        let ok =
            vxlan::build(mac(0xee), vtep().mac, REMOTE, &vtep(), 100, &udp(mac(2), mac(0x44), [10, 1, 0, 3], 5001));
        let no = vxlan::build(mac(0xee), vtep().mac, REMOTE, &vtep(), 100, &udp(mac(2), mac(0x44), [10, 1, 0, 3], 80));
        let mut lldp = frame(mac(2), mac(0x44), 64);
        lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
        let lldp = vxlan::build(mac(0xee), vtep().mac, REMOTE, &vtep(), 100, &lldp);
        let mut arp = frame(mac(2), mac(0x44), 64);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let arp = vxlan::build(mac(0xee), vtep().mac, REMOTE, &vtep(), 100, &arp);
        let (_, m, _) = run_uplink(&t, &[ok, no, lldp, arp]);
        assert_eq!(m[0].action, Action::Tx(VM2));
        assert_eq!(m[0].acl_out, 21);
        assert_eq!(m[1].action, Action::Drop(DropReason::AclDenyOut));
        assert_eq!(m[2].action, Action::Drop(DropReason::AclDenyOut), "non-IP: VM2's default (deny)");
        assert_eq!(m[3].action, Action::Tx(VM2), "ARP passes every security group");
    }
}

mod staged {
    //! `from_vm` runs stage by stage over a batch; its answers must be those of each
    //! packet sent through on its own, in order, with the same meters.
    use super::*;
    use crate::acl::{AclTables, Classifier, PortAcl, Prefix, Rule, Verdict};
    use crate::qos::{ColorAction, MeterConfig, Mode, PortQos, QosTables, Unit};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn rule(id: u32, priority: u32, dst: Prefix, dport: u16, verdict: Verdict) -> Rule {
        udp_rule(id, priority, dst, dport, verdict, id)
    }

    fn ingress_rules() -> Vec<Rule> {
        vec![
            rule(1, 30, Prefix::v4(0x0a010003, 32), 5001, Verdict::Deny),
            rule(2, 20, Prefix::v4(0x0a010000, 16), 5002, Verdict::Deny),
            rule(3, 10, Prefix::v4(0x0a010000, 16), 5001, Verdict::Allow),
        ]
    }

    /// Rules toward VM1 and VM2 that look at the same bits but answer differently, so an
    /// answer reused across ports shows.
    fn egress_rules(port: PortId) -> Vec<Rule> {
        if port == VM1 {
            vec![
                rule(5, 10, Prefix::v4(0x0a010004, 32), 5001, Verdict::Allow),
                rule(6, 5, Prefix::v4(0x0a010000, 16), 5002, Verdict::Deny),
            ]
        } else {
            vec![rule(4, 10, Prefix::v4(0x0a010004, 32), 5001, Verdict::Deny)]
        }
    }

    /// VM1: a policer that colours a burst of 64-byte frames partly yellow (remarked) and
    /// red (dropped), and ingress rules; VM2: egress rules and a rate limit that does the
    /// same; encapsulation with an outer DSCP.
    fn policed(outer_dscp: Option<u8>) -> L2Tables {
        let mut t = tables();
        t.fib_insert(100, mac(1), FibEntry { target: FibTarget::Port(VM1), is_static: true });
        let mut ports: Vec<Option<std::sync::Arc<PortAcl>>> = (0..16).map(|_| None).collect();
        ports[VM1 as usize] = Some(std::sync::Arc::new(PortAcl {
            ingress: Classifier::new(ingress_rules()),
            egress: Classifier::new(egress_rules(VM1)),
            default: Verdict::Allow,
        }));
        ports[VM2 as usize] = Some(std::sync::Arc::new(PortAcl {
            ingress: Classifier::new(vec![]),
            egress: Classifier::new(egress_rules(VM2)),
            default: Verdict::Allow,
        }));
        t.acl = Arc::new(AclTables { ports });
        let mut qos = vec![PortQos::default(); 16];
        // 8 kB/s with a few frames of burst: a batch of 60-100 byte frames turns yellow
        // (remarked), then red (dropped).
        let meter = |bucket, dscp| MeterConfig {
            unit: Unit::Bytes,
            mode: Mode::SrTcm { cir: 8_000, cbs: bucket, ebs: bucket },
            yellow: ColorAction::Remark(dscp),
            red: ColorAction::Drop,
        };
        qos[VM1 as usize] = PortQos { ingress: Some(meter(400, 10)), outer_dscp, ..PortQos::default() };
        qos[VM2 as usize] = PortQos { egress: Some(meter(300, 12)), ..PortQos::default() };
        t.qos = Arc::new(QosTables { ports: qos });
        t
    }

    /// A frame from VM1: to a VM (mac 2), across VXLAN (0x22), unknown (0x99) or
    /// broadcast; sometimes from a multicast source; to one of a few IPs and ports.
    fn frame_of((dst, src_mc, ip, dport, len): (u8, bool, u8, u16, usize)) -> Vec<u8> {
        let dst = match dst {
            0 => mac(2),
            1 => mac(0x22),
            2 => mac(0x99),
            _ => Mac([0xff; 6]),
        };
        let src = if src_mc { Mac([1, 0, 0x5e, 0, 0, 1]) } else { mac(1) };
        udp_to(dst, src, ip, dport, len)
    }

    /// A UDP frame to 10.1.0.`ip`, port `dport`.
    fn udp_to(dst: Mac, src: Mac, ip: u8, dport: u16, len: usize) -> Vec<u8> {
        let mut f = frame(dst, src, len);
        f[33] = ip;
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    proptest! {
        #[test]
        fn a_batch_gets_what_each_packet_gets_alone(
            pkts in proptest::collection::vec((0..4u8, proptest::bool::weighted(0.1), 2..6u8, 5001..5003u16, 60..100usize), 1..33),
            dscp in proptest::option::of(0..64u8),
        ) {
            let t = policed(dscp);
            let pkts: Vec<Vec<u8>> = pkts.into_iter().map(frame_of).collect();
            let ctx = Ctx { tables: &t, clock: Clock { now: 5, hz: HZ } };
            let mut frames: Vec<VecFrame> = pkts.iter().map(|p| VecFrame::new(p)).collect();
            let mut meta = vec![Meta::default(); frames.len()];
            parse_vm_batch(&t, VM1, 100, &frames, &mut meta);
            from_vm(&ctx, VM1, 100, &mut frames, &mut meta, &mut PerCore::default(), &mut Vec::new());
            let mut alone = PerCore::default();
            for (i, p) in pkts.iter().enumerate() {
                let mut f = [VecFrame::new(p)];
                let mut m = [Meta::default()];
                parse_batch(&f, &mut m);
                from_vm(&ctx, VM1, 100, &mut f, &mut m, &mut alone, &mut Vec::new());
                prop_assert_eq!(meta[i], m[0], "packet {}", i);
                prop_assert_eq!(frames[i].bytes(), f[0].bytes(), "packet {}", i);
                // And the security group answered what the brute-force reference does.
                let got = &meta[i];
                let classified = !matches!(got.action, Action::Drop(DropReason::BadSrcMac | DropReason::Policed));
                let want = if classified {
                    crate::acl::brute_force(&ingress_rules(), got).map_or((Verdict::Allow, 0), |r| (r.verdict, r.counter + 1))
                } else {
                    (Verdict::Allow, 0)
                };
                let denied = got.action == Action::Drop(DropReason::AclDenyIn);
                prop_assert_eq!((denied, got.acl_in), (want.0 == Verdict::Deny, want.1), "packet {}: {:?}", i, got);
            }
        }
    }

    /// Where `vxlan_of`'s inner frames go: VM2 and VM1 (each with egress rules, VM2 with
    /// a rate limit), a MAC behind a remote VTEP (split horizon), an unknown MAC and
    /// broadcast (flood).
    const UPLINK_DSTS: [(u8, PortId); 5] = [(2, VM2), (1, VM1), (0x22, 0), (0x99, 0), (0xff, 0)];

    /// A frame from the remote VTEP, to `UPLINK_DSTS[dst]`; now and then one from a
    /// multicast source, or in an unknown VNI.
    fn vxlan_of((dst, src_mc, ip, dport, len): (u8, bool, u8, u16, usize), vni_known: bool) -> Vec<u8> {
        let dst = match UPLINK_DSTS[dst as usize].0 {
            0xff => Mac([0xff; 6]),
            last => mac(last),
        };
        let src = if src_mc { Mac([1, 0, 0x5e, 0, 0, 1]) } else { mac(0x44) };
        let inner = udp_to(dst, src, ip, dport, len);
        vxlan::build(mac(0xee), vtep().mac, REMOTE, &vtep(), if vni_known { 100 } else { 300 }, &inner)
    }

    proptest! {
        #[test]
        fn an_uplink_batch_gets_what_each_packet_gets_alone(
            pkts in proptest::collection::vec(
                ((0..5u8, proptest::bool::weighted(0.1), 2..6u8, 5001..5003u16, 60..100usize), proptest::bool::weighted(0.95)),
                1..33,
            ),
        ) {
            let t = policed(None);
            let to: Vec<PortId> = pkts.iter().map(|((dst, ..), _)| UPLINK_DSTS[*dst as usize].1).collect();
            let pkts: Vec<Vec<u8>> = pkts.into_iter().map(|(p, known)| vxlan_of(p, known)).collect();
            let ctx = Ctx { tables: &t, clock: Clock { now: 5, hz: HZ } };
            let mut frames: Vec<VecFrame> = pkts.iter().map(|p| VecFrame::new(p)).collect();
            let mut meta = vec![Meta::default(); frames.len()];
            let mut events = Vec::new();
            parse_batch(&frames, &mut meta);
            from_uplink(&ctx, UPLINK, &mut frames, &mut meta, &mut PerCore::default(), &mut events);
            let mut alone = PerCore::default();
            let mut alone_events = Vec::new();
            for (i, p) in pkts.iter().enumerate() {
                let mut f = [VecFrame::new(p)];
                let mut m = [Meta::default()];
                parse_batch(&f, &mut m);
                from_uplink(&ctx, UPLINK, &mut f, &mut m, &mut alone, &mut alone_events);
                prop_assert_eq!(meta[i], m[0], "packet {}", i);
                prop_assert_eq!(frames[i].bytes(), f[0].bytes(), "packet {}", i);
                // The destination's egress rules against the brute-force answer.
                let got = &meta[i];
                if got.action == Action::Tx(to[i]) || got.action == Action::Drop(DropReason::AclDenyOut) {
                    let want = crate::acl::brute_force(&egress_rules(to[i]), got).map_or((Verdict::Allow, 0), |r| (r.verdict, r.counter + 1));
                    let denied = got.action == Action::Drop(DropReason::AclDenyOut);
                    prop_assert_eq!((denied, got.acl_out), (want.0 == Verdict::Deny, want.1), "packet {}: {:?}", i, got);
                }
            }
            // One learn event per run of one source, in both; the batch sends no more.
            prop_assert!(events.len() <= alone_events.len());
        }
    }
}
