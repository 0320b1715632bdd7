//! Maglev against the paper's population algorithm written out again here (its own
//! hash, its own loop), and the properties the paper promises: even or weighted
//! shares, and little disruption when a backend comes or goes.
use super::maglev::{is_prime, Maglev, DEFAULT_SIZE};

/// FNV-1a, 64 bits, over `seed` then `name`.
fn fnv(seed: u8, name: &str) -> u64 {
    let mut h: u64 = 14_695_981_039_346_656_037;
    for b in [seed].iter().chain(name.as_bytes()) {
        h = (h ^ *b as u64).wrapping_mul(1_099_511_628_211);
    }
    // MurmurHash3's fmix64.
    for (shift, mul) in [(33, 0xff51_afd7_ed55_8ccd_u64), (33, 0xc4ce_b9fe_1a85_ec53)] {
        h = (h ^ (h >> shift)).wrapping_mul(mul);
    }
    h ^ (h >> 33)
}

/// Pseudocode 1 of the paper (equal weights): each backend in turn takes the next slot
/// of its permutation that nobody holds yet, until the table is full.
fn paper(names: &[&str], m: u64) -> Vec<i64> {
    let n = names.len();
    let permutation: Vec<Vec<u64>> = names
        .iter()
        .map(|name| {
            let offset = fnv(0, name) % m;
            let skip = fnv(1, name) % (m - 1) + 1;
            (0..m).map(|j| (offset + j * skip) % m).collect()
        })
        .collect();
    let mut next = vec![0usize; n];
    let mut entry = vec![-1i64; m as usize];
    let mut filled = 0;
    loop {
        for i in 0..n {
            let mut c = permutation[i][next[i]];
            while entry[c as usize] >= 0 {
                next[i] += 1;
                c = permutation[i][next[i]];
            }
            entry[c as usize] = i as i64;
            next[i] += 1;
            filled += 1;
            if filled == m {
                return entry;
            }
        }
    }
}

fn build(names: &[String], weights: &[u32], m: u32) -> Maglev {
    let list: Vec<(&[u8], u32)> = names.iter().zip(weights).map(|(n, w)| (n.as_bytes(), *w)).collect();
    Maglev::build(m, &list)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.{}.{}:8080", i / 200, i % 200 + 1)).collect()
}

#[test]
fn equal_weights_fill_the_table_as_the_paper_does() {
    for (n, m) in [(3usize, 7u32), (5, 13), (16, 251), (10, 16_381)] {
        let names = names(n);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let want = paper(&refs, m as u64);
        let t = build(&names, &vec![1; n], m);
        let got: Vec<i64> = (0..m as u64).map(|h| t.pick(h).unwrap() as i64).collect();
        assert_eq!(got, want, "{n} backends, M = {m}");
        // And the same with any equal weight.
        assert_eq!(build(&names, &vec![7; n], m), t);
    }
}

/// Flows as their hashes: a fixed stream, so each run judges the same flows.
fn flows(count: usize) -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

fn assignment(t: &Maglev, names: &[String], flows: &[u64]) -> Vec<String> {
    flows.iter().map(|&h| names[t.pick(h).unwrap() as usize].clone()).collect()
}

#[test]
fn removing_or_adding_one_backend_moves_few_other_flows() {
    let flows = flows(100_000);
    // (At M = 16381 the bound holds to about 50 backends: Maglev's extra disruption grows
    // as N / M, 1.2% of flows at 100 backends and 1.6% at 163.)
    for n in [3usize, 10, 16, 50] {
        let all = names(n + 1);
        let before_names = all[..n].to_vec();
        let before = assignment(&build(&before_names, &vec![1; n], DEFAULT_SIZE), &before_names, &flows);
        // One of N removed: its own flows move, and at most 1% of the others.
        let gone = &before_names[n / 2];
        let rest: Vec<String> = before_names.iter().filter(|b| *b != gone).cloned().collect();
        let after = assignment(&build(&rest, &vec![1; n - 1], DEFAULT_SIZE), &rest, &flows);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count() as f64 / flows.len() as f64;
        let bound = 1.0 / n as f64 + 0.01;
        assert!(moved <= bound, "{n} backends, one removed: {moved:.4} of flows moved (bound {bound:.4})");
        let others = before.iter().zip(&after).filter(|(a, b)| *a != gone && a != b).count();
        assert!(others as f64 <= 0.01 * flows.len() as f64, "{n} backends: {others} flows of survivors moved");
        // One added: at most 1/(N+1) + 1% move.
        let after = assignment(&build(&all, &vec![1; n + 1], DEFAULT_SIZE), &all, &flows);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count() as f64 / flows.len() as f64;
        let bound = 1.0 / (n + 1) as f64 + 0.01;
        assert!(moved <= bound, "{n} backends, one added: {moved:.4} moved (bound {bound:.4})");
    }
}

#[test]
fn shares_follow_the_weights_and_a_zero_weight_gets_none() {
    let names = names(5);
    let t = build(&names, &[1, 2, 3, 4, 0], DEFAULT_SIZE);
    let shares = t.shares(5);
    assert_eq!(shares.iter().sum::<u32>(), DEFAULT_SIZE);
    assert_eq!(shares[4], 0, "draining");
    for (i, w) in [1u32, 2, 3, 4].iter().enumerate() {
        let want = DEFAULT_SIZE as f64 * *w as f64 / 10.0;
        assert!((shares[i] as f64 - want).abs() <= 0.005 * DEFAULT_SIZE as f64, "backend {i}: {shares:?}");
    }
    // Equal weights: within one slot of M/N each (the paper's round robin).
    let even = build(&names, &[1; 5], DEFAULT_SIZE).shares(5);
    assert!(even.iter().all(|&s| s.abs_diff(DEFAULT_SIZE / 5) <= 1), "{even:?}");
    // Nobody with weight: no table.
    assert_eq!(build(&names, &[0; 5], DEFAULT_SIZE).pick(1), None);
    assert!(is_prime(DEFAULT_SIZE) && is_prime(super::maglev::MAX_SIZE) && !is_prime(16_383));
}

#[test]
fn affinity_keeps_a_client_on_its_backend_across_changes_for_its_time() {
    use super::{
        affinity::{stable_id, Affinity, AffinityTable},
        Backend, Service,
    };
    use crate::meta::ipv4_key;
    use std::sync::Arc;
    let memory = Arc::new(AffinityTable::default());
    let build = |names: &[String]| {
        let list = names.iter().enumerate().map(|(i, _)| Backend { ip: ipv4_key(i as u32 + 1), port: 1 }).collect();
        let mut s = Service::new(1, 100, (ipv4_key(99), 80), 6, list, build(names, &vec![1; names.len()], 251));
        let ids: Box<[u32]> = names.iter().map(|n| stable_id(n.as_bytes())).collect();
        let members = ids.iter().enumerate().map(|(i, id)| (*id, i as u16)).collect();
        s.affinity = Some(Affinity { secs: 60, table: memory.clone(), members, ids });
        s
    };
    let all = names(10);
    let before = build(&all);
    let clients: Vec<u128> = (0..1000).map(|c| ipv4_key(0x0a00_0000 + c)).collect();
    // Every connection of a client, whatever its ports (its hash), goes to one backend.
    let picks: Vec<String> = clients
        .iter()
        .map(|&c| {
            let first = before.pick(c, 1, 10_000, 0, false).unwrap();
            assert_eq!(before.pick(c, 0xdead_beef, 11_000, 0, false), Some(first));
            all[first as usize].clone()
        })
        .collect();
    // Half the backends go and the rest come back in another order: remembered clients
    // of the survivors stay with them (all but those who shared a slot of the memory with
    // another client: the last one took it); the others are picked afresh.
    let mut rest: Vec<String> = all[5..].to_vec();
    rest.reverse();
    let after = build(&rest);
    let slot = |c: u128| super::affinity::client_tag(c, 1) as usize & (super::affinity::SLOTS - 1);
    let mut sharing = std::collections::HashMap::new();
    for &c in &clients {
        *sharing.entry(slot(c)).or_insert(0) += 1;
    }
    let mut stayed = 0;
    for (c, was) in clients.iter().zip(&picks) {
        let now = rest[after.pick(*c, 7, 20_000, 0, true).unwrap() as usize].clone();
        if rest.contains(was) && sharing[&slot(*c)] == 1 {
            assert_eq!(&now, was);
            stayed += 1;
        }
    }
    assert!(stayed > 400, "{stayed}");
    // 60 s after its last new connection a client is forgotten.
    let a = after.affinity.as_ref().unwrap();
    let tag = super::affinity::client_tag(clients[0], 1);
    assert!(a.recall(tag, 11 + 60).is_some() || !rest.contains(&picks[0]));
    assert_eq!(a.recall(tag, 11 + 61), None);
}

mod stage {
    //! The service stage through a VM port's stages, with checksums summed over the
    //! translated packets independently of how they were updated.
    use crate::{
        conntrack::{CtState, CtTable, CtTables},
        gateway::{Endpoint, Endpoints, GatewayAddrs, GATEWAY_MAC},
        learn::{Clock, LearnEvent},
        meta::{ipv4_key, Action, Meta},
        services::{counters::BackendCounters, maglev::Maglev, Backend, Service, ServiceTables},
        stages::{from_vm, parse_vm_batch, Ctx, PerCore},
        tables::{FibEntry, FibTarget, L2Tables, Network},
        wire::{ones_sum, Mac},
        PortId, VecFrame,
    };
    use std::sync::Arc;

    const CLIENT: PortId = 1;
    const B1: PortId = 2;
    const B2: PortId = 3;
    const VIP: [u8; 4] = [10, 96, 0, 10];

    fn mac(last: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, last])
    }

    fn ip(last: u8) -> u32 {
        u32::from_be_bytes([10, 1, 0, last])
    }

    fn service(backends: &[u8]) -> Arc<Service> {
        service_at(backends, (80, 6), 8080)
    }

    /// The VIP's service on `port` and `proto`, over `backends` on `backend_port`.
    fn service_at(backends: &[u8], (port, proto): (u16, u8), backend_port: u16) -> Arc<Service> {
        let list: Vec<Backend> =
            backends.iter().map(|&b| Backend { ip: ipv4_key(ip(b)), port: backend_port }).collect();
        let keys: Vec<String> = list.iter().map(|b| format!("{:x}:{}", b.ip, b.port)).collect();
        let weighted: Vec<(&[u8], u32)> = keys.iter().map(|k| (k.as_bytes(), 1)).collect();
        let vip = ipv4_key(u32::from_be_bytes(VIP));
        Arc::new(Service::new(1, 100, (vip, port), proto, list, Maglev::build(251, &weighted)))
    }

    fn counters(n: usize) -> Arc<BackendCounters> {
        Arc::new(BackendCounters::new(n, 1))
    }

    fn tables(table: &Arc<CtTable>, backends: &[u8]) -> L2Tables {
        let mut t = L2Tables::default();
        let gateway = GatewayAddrs { v4: Some(ip(254)), v6: None };
        t.networks.insert(
            100,
            Network { vni: 100, ports: vec![CLIENT, B1, B2], flood_vteps: vec![], gateway, snat: None, snat6: None },
        );
        let mut eps = Endpoints::default();
        for (p, last) in [(CLIENT, 1), (B1, 2), (B2, 3)] {
            t.fib_insert(100, mac(last), FibEntry { target: FibTarget::Port(p), is_static: false });
            eps.insert(100, ipv4_key(ip(last)), Endpoint { mac: mac(last) });
        }
        t.endpoints = Arc::new(eps);
        let mut s = ServiceTables::default();
        s.insert(service(backends), &t.endpoints, counters(backends.len()), None);
        t.services = Arc::new(s);
        t.ct = Arc::new(CtTables { table: Some(table.clone()), ports: vec![], dry: false });
        t.port_mtu = vec![1500; 8];
        t
    }

    fn tcp(dst_mac: Mac, src_mac: Mac, src: (u32, u16), dst: (u32, u16), flags: u8, seq: u32, ack: u32) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac.0);
        f.extend_from_slice(&src_mac.0);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut h = [0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        h[12..16].copy_from_slice(&src.0.to_be_bytes());
        h[16..20].copy_from_slice(&dst.0.to_be_bytes());
        let c = crate::wire::checksum(ones_sum(&h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&src.1.to_be_bytes());
        t[2..4].copy_from_slice(&dst.1.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        t.extend_from_slice(b"ping");
        let c = crate::wire::checksum(pseudo(&h) + ones_sum(&t));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(&t);
        f
    }

    fn pseudo(h: &[u8]) -> u32 {
        let len = u16::from_be_bytes([h[2], h[3]]) as u32 - 20;
        ones_sum(&h[12..20]) + 6 + len
    }

    /// Both checksums of the frame are right.
    fn sums_ok(b: &[u8]) -> bool {
        let h = &b[14..34];
        crate::wire::ipv4::checksum_ok(h) && crate::wire::fold(pseudo(h) + ones_sum(&b[34..])) == 0xffff
    }

    fn run(t: &L2Tables, port: PortId, pkts: &[Vec<u8>]) -> (Vec<VecFrame>, Vec<Meta>) {
        run_at(t, port, pkts, 1000)
    }

    /// `run` at `ms` milliseconds on the table's clock.
    fn run_at(t: &L2Tables, port: PortId, pkts: &[Vec<u8>], ms: u64) -> (Vec<VecFrame>, Vec<Meta>) {
        let mut frames: Vec<VecFrame> = pkts.iter().map(|p| VecFrame::new(p)).collect();
        let mut meta = vec![Meta::default(); frames.len()];
        let mut events: Vec<LearnEvent> = Vec::new();
        parse_vm_batch(t, port, 100, &frames, &mut meta);
        let ctx = Ctx { tables: t, clock: Clock { now: ms, hz: 1000 } };
        from_vm(&ctx, port, 100, &mut frames, &mut meta, &mut PerCore::default(), &mut events);
        (frames, meta)
    }

    fn field(b: &[u8], at: usize, n: usize) -> u64 {
        b[at..at + n].iter().fold(0, |a, &x| a << 8 | x as u64)
    }

    /// A switch with backends 2 and 3 behind the VIP's port 80, and client 1:40000's SYN
    /// to it: the switch's table and tables, the SYN as it came out, and the port and
    /// backend it went to.
    fn a_syn_to_the_vip() -> (Arc<CtTable>, L2Tables, VecFrame, PortId, u8) {
        let table = Arc::new(CtTable::new(1024, 1, 16));
        table.enable_nat(|_, _| 0);
        let t = tables(&table, &[2, 3]);
        let syn = tcp(GATEWAY_MAC, mac(1), (ip(1), 40000), (u32::from_be_bytes(VIP), 80), 0x02, 1000, 0);
        let (mut f, m) = run(&t, CLIENT, std::slice::from_ref(&syn));
        let Action::Tx(to) = m[0].action else { panic!("{:?}", m[0].action) };
        let backend = if to == B1 { 2 } else { 3 };
        (table, t, f.remove(0), to, backend)
    }

    #[test]
    fn a_connection_to_a_vip_reaches_one_backend_and_its_replies_come_from_the_vip() {
        let (table, t, syn, to, backend) = a_syn_to_the_vip();
        let vip = u32::from_be_bytes(VIP);
        let client = (ip(1), 40000);
        let b = syn.bytes();
        assert_eq!(field(b, 30, 4) as u32, ip(backend), "DNAT to the backend the packet went to");
        assert_eq!(field(b, 36, 2), 8080);
        assert_eq!(&b[0..6], &mac(backend).0, "switched to the backend's MAC");
        assert_eq!(b[22], 63, "routed by the gateway");
        assert!(sums_ok(b));

        // The backend answers the client: the answer leaves from the VIP.
        let synack = tcp(mac(1), mac(backend), (ip(backend), 8080), client, 0x12, 5000, 1001);
        let (f, m) = run(&t, to, &[synack]);
        assert_eq!(m[0].action, Action::Tx(CLIENT));
        let b = f[0].bytes();
        assert_eq!((field(b, 26, 4) as u32, field(b, 34, 2)), (vip, 80));
        assert!(sums_ok(b));

        // Backends added: the connection keeps its backend (a new one may not).
        let other = if backend == 2 { 3 } else { 2 };
        let t2 = tables(&table, &[other, backend, 4, 5, 6, 7]);
        let ack = tcp(GATEWAY_MAC, mac(1), client, (vip, 80), 0x10, 1001, 5001);
        let (f, m) = run(&t2, CLIENT, std::slice::from_ref(&ack));
        assert_eq!(m[0].action, Action::Tx(to), "{:?}", m[0]);
        assert_eq!(field(f[0].bytes(), 30, 4) as u32, ip(backend));
        assert!(sums_ok(f[0].bytes()));
        // Again: now by the place the session noted in the new list (another place than
        // in the old one when it was backend 2).
        let (f, m) = run(&t2, CLIENT, std::slice::from_ref(&ack));
        assert_eq!(m[0].action, Action::Tx(to), "{:?}", m[0]);
        assert_eq!(field(f[0].bytes(), 30, 4) as u32, ip(backend));

        // Its backend removed: the connection ends at its next packet (mid-stream, no
        // other backend takes it).
        let t3 = tables(&table, &[other]);
        let (_, m) = run(&t3, CLIENT, &[ack]);
        assert_eq!(m[0].action, Action::Drop(crate::DropReason::CtInvalid), "{:?}", m[0]);
        let vip_key = crate::conntrack::Tuple {
            zone: 100,
            proto: 6,
            src: (ipv4_key(client.0), client.1),
            dst: (ipv4_key(vip), 80),
        }
        .key()
        .0;
        let found = table.lookup_nat(&vip_key, table.hash(&vip_key));
        assert!(found.is_none(), "the session to the removed backend is gone");
    }

    /// An established connection's packets to the VIP are tracked before they are
    /// translated, by the way the connection opened: counted in its session as the
    /// opener's and marked established with it. A segment out of the window still goes
    /// to the whole tracker, which drops it, counting nothing.
    #[test]
    fn an_established_connections_packets_to_the_vip_count_in_its_session_as_the_openers() {
        let (table, t, _, to, backend) = a_syn_to_the_vip();
        let vip = u32::from_be_bytes(VIP);
        let client = (ip(1), 40000);
        let synack = tcp(mac(1), mac(backend), (ip(backend), 8080), client, 0x12, 5000, 1001);
        let (_, m) = run(&t, to, &[synack]);
        assert_eq!(m[0].action, Action::Tx(CLIENT));
        let index = m[0].ct.session.checked_sub(1).expect("the answer found its session");
        let ack = tcp(GATEWAY_MAC, mac(1), client, (vip, 80), 0x10, 1001, 5001);
        let (f, m) = run(&t, CLIENT, &[ack.clone(), ack.clone(), ack]);
        for (f, m) in f.iter().zip(&m) {
            assert_eq!(m.action, Action::Tx(to), "{m:?}");
            assert_eq!((m.ct.state, m.ct.session, m.ct.reply), (CtState::Established, index + 1, false), "{m:?}");
            assert_eq!(field(f.bytes(), 30, 4) as u32, ip(backend), "translated after it was tracked");
            assert!(sums_ok(f.bytes()));
        }
        let view = table.view(index).unwrap();
        assert_eq!(view.packets, [4, 1], "the SYN and three ACKs the opener's, the SYN+ACK the answerer's");
        let wild = tcp(GATEWAY_MAC, mac(1), client, (vip, 80), 0x10, 1001 + (1 << 30), 5001);
        let (_, m) = run(&t, CLIENT, &[wild]);
        assert_eq!(m[0].action, Action::Drop(crate::DropReason::CtInvalid), "{:?}", m[0]);
        assert_eq!(table.view(index).unwrap().packets, [4, 1]);
    }

    /// A DNS-like service (VIP port 53 over backends 2 and 3 on 5353) and client 1:40000's
    /// question to it, sent: the table and tables, the question, the port and backend it
    /// went to, and that backend's answer (not sent).
    struct Dns {
        table: Arc<CtTable>,
        t: L2Tables,
        question: Vec<u8>,
        to: PortId,
        backend: u8,
        answer: Vec<u8>,
    }

    fn a_question_to_a_dns_vip() -> Dns {
        let table = Arc::new(CtTable::new(1024, 1, 16));
        table.enable_nat(|_, _| 0);
        let mut t = tables(&table, &[2, 3]);
        let mut s = ServiceTables::default();
        s.insert(service_at(&[2, 3], (53, 17), 5353), &t.endpoints, counters(2), None);
        t.services = Arc::new(s);
        let client = (ip(1), 40000);
        let question = udp4(GATEWAY_MAC, mac(1), client, (u32::from_be_bytes(VIP), 53));
        let (_, m) = run(&t, CLIENT, std::slice::from_ref(&question));
        let Action::Tx(to) = m[0].action else { panic!("{:?}", m[0].action) };
        let backend = if to == B1 { 2 } else { 3 };
        let answer = udp4(mac(1), mac(backend), (ip(backend), 5353), client);
        Dns { table, t, question, to, backend, answer }
    }

    /// The same for UDP, where the session's counts say which way the packets were
    /// taken: a DNS-like service, its answer seen, then three more questions.
    #[test]
    fn an_answered_udp_flows_packets_to_the_vip_count_as_the_openers() {
        let Dns { table, t, question, to, backend, answer } = a_question_to_a_dns_vip();
        let vip = u32::from_be_bytes(VIP);
        let (f, m) = run(&t, to, &[answer]);
        assert_eq!(m[0].action, Action::Tx(CLIENT));
        assert_eq!((field(f[0].bytes(), 26, 4) as u32, field(f[0].bytes(), 34, 2)), (vip, 53), "from the VIP");
        let index = m[0].ct.session.checked_sub(1).expect("the answer found its session");
        let (f, m) = run(&t, CLIENT, &[question.clone(), question.clone(), question]);
        for (f, m) in f.iter().zip(&m) {
            assert_eq!(m.action, Action::Tx(to), "{m:?}");
            assert_eq!((m.ct.state, m.ct.session, m.ct.reply), (CtState::Established, index + 1, false), "{m:?}");
            assert_eq!((field(f.bytes(), 30, 4) as u32, field(f.bytes(), 36, 2)), (ip(backend), 5353));
        }
        assert_eq!(table.view(index).unwrap().packets, [4, 1], "four questions, one answer");
    }

    /// Past its timeout (and before its core's wheel frees it) a flow to a VIP is gone,
    /// as netfilter's lookup takes an expired entry: the backend's late answer is not
    /// the VIP's, and the client's next question is a new connection.
    #[test]
    fn a_udp_flow_to_a_vip_past_its_timeout_is_gone_both_ways() {
        let Dns { table, t, question, to, backend, answer } = a_question_to_a_dns_vip();
        let vip = u32::from_be_bytes(VIP);
        let (_, m) = run(&t, to, std::slice::from_ref(&answer));
        let index = m[0].ct.session.checked_sub(1).expect("the answer found its session");
        // Answered: a millisecond short of 120 s unused it still stands; at 120 s it is gone.
        let (f, _) = run_at(&t, to, std::slice::from_ref(&answer), 1000 + 119_999);
        assert_eq!((field(f[0].bytes(), 26, 4) as u32, field(f[0].bytes(), 34, 2)), (vip, 53), "from the VIP");
        let late = 1000 + 119_999 + 120_000;
        let (f, _) = run_at(&t, to, std::slice::from_ref(&answer), late);
        assert_eq!((field(f[0].bytes(), 26, 4) as u32, field(f[0].bytes(), 34, 2)), (ip(backend), 5353));
        let (f, m) = run_at(&t, CLIENT, &[question], late);
        assert_eq!(m[0].ct.state, CtState::New, "{m:?}");
        assert_ne!(m[0].ct.session, index + 1, "a new session");
        assert_eq!(field(f[0].bytes(), 36, 2), 5353, "translated");
        assert!(table.view(index).is_none_or(|v| v.expired(late as u32)), "the old one is gone");
    }

    /// One batch to the VIP's port, to another port of its address, and to the VIP again:
    /// the stage keeps a batch's last VIP answer, and must not give it to the other port.
    #[test]
    fn in_one_batch_only_packets_to_the_vips_port_are_translated() {
        let (_, t) = switch(1024, &[2, 3]);
        let vip = u32::from_be_bytes(VIP);
        let to = |sport: u16, dport: u16| tcp(GATEWAY_MAC, mac(1), (ip(1), sport), (vip, dport), 0x02, 1000, 0);
        let (f, m) = run(&t, CLIENT, &[to(40000, 80), to(40001, 81), to(40002, 80), to(40003, 81)]);
        for i in [0, 2] {
            let b = f[i].bytes();
            assert!(matches!(m[i].action, Action::Tx(B1 | B2)), "packet {i}: {:?}", m[i].action);
            assert_eq!(field(b, 36, 2), 8080, "packet {i} goes to a backend");
        }
        for i in [1, 3] {
            let b = f[i].bytes();
            assert!(!matches!(m[i].action, Action::Tx(B1 | B2)), "packet {i}: {:?}", m[i].action);
            assert_eq!((field(b, 30, 4) as u32, field(b, 36, 2)), (vip, 81), "packet {i} is not translated");
        }
    }

    /// A switch with the service over `backends` and room for `sessions`.
    fn switch(sessions: u32, backends: &[u8]) -> (Arc<CtTable>, L2Tables) {
        let table = Arc::new(CtTable::new(sessions, 1, 16));
        table.enable_nat(|_, _| 0);
        let t = tables(&table, backends);
        (table, t)
    }

    #[test]
    fn a_syn_that_reopens_a_closed_connection_to_a_vip_is_answered_from_the_vip() {
        let (_table, t) = switch(1024, &[2]);
        let (vip, client) = (u32::from_be_bytes(VIP), (ip(1), 40000));
        let backend = (ip(2), 8080);
        let to_vip = |flags: u8, seq: u32, ack: u32| tcp(GATEWAY_MAC, mac(1), client, (vip, 80), flags, seq, ack);
        let answer = |flags: u8, seq: u32, ack: u32| tcp(mac(1), mac(2), backend, client, flags, seq, ack);
        // A whole connection, closed by the client: its session is left in TIME_WAIT.
        for (from_client, pkt) in [
            (true, to_vip(0x02, 1000, 0)),
            (false, answer(0x12, 5000, 1001)),
            (true, to_vip(0x10, 1001, 5001)),
            (true, to_vip(0x11, 1001, 5001)),
            (false, answer(0x11, 5001, 1002)),
            (true, to_vip(0x10, 1002, 5002)),
        ] {
            let (_, m) = run(&t, if from_client { CLIENT } else { B1 }, &[pkt]);
            assert!(matches!(m[0].action, Action::Tx(_)), "{:?}", m[0]);
        }
        // The client's stack reuses the port: the SYN reopens the session, and the new
        // one is the VIP's too, so its answer leaves from the VIP.
        let (f, m) = run(&t, CLIENT, &[to_vip(0x02, 90_000, 0)]);
        assert_eq!(m[0].action, Action::Tx(B1), "{:?}", m[0]);
        assert_eq!(field(f[0].bytes(), 30, 4) as u32, backend.0);
        let (f, m) = run(&t, B1, &[answer(0x12, 70_000, 90_001)]);
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        assert_eq!((field(f[0].bytes(), 26, 4) as u32, field(f[0].bytes(), 34, 2)), (vip, 80));
        assert!(sums_ok(f[0].bytes()));
    }

    #[test]
    fn connections_to_a_vip_count_against_the_ports_session_limit() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        table.enable_nat(|_, _| 0);
        let mut t = tables(&table, &[2, 3]);
        let limited =
            crate::conntrack::CtPort { liberal: false, sticky: true, pickup: false, max_sessions: 1, epoch: 0 };
        let mut ports = vec![None; 8];
        ports[CLIENT as usize] = Some(limited);
        t.ct = Arc::new(CtTables { table: Some(table.clone()), ports, dry: false });
        let vip = u32::from_be_bytes(VIP);
        let (_, m) = run(&t, CLIENT, &[tcp(GATEWAY_MAC, mac(1), (ip(1), 40000), (vip, 80), 0x02, 1, 0)]);
        assert!(matches!(m[0].action, Action::Tx(_)), "{:?}", m[0]);
        let (_, m) = run(&t, CLIENT, &[tcp(GATEWAY_MAC, mac(1), (ip(1), 40001), (vip, 80), 0x02, 1, 0)]);
        assert_eq!(m[0].action, Action::Drop(crate::DropReason::CtPortLimit));
    }

    #[test]
    fn a_service_without_backends_refuses_new_connections() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        table.enable_nat(|_, _| 0);
        let t = tables(&table, &[]);
        let syn = tcp(GATEWAY_MAC, mac(1), (ip(1), 40000), (u32::from_be_bytes(VIP), 80), 0x02, 1, 0);
        let (_, m) = run(&t, CLIENT, &[syn]);
        assert_eq!(m[0].action, Action::Drop(crate::DropReason::NoBackend));
    }

    #[test]
    fn a_backend_calling_its_own_service_is_called_from_the_vip() {
        let (table, t) = switch(64, &[2]);
        let vip = u32::from_be_bytes(VIP);
        let me = (ip(2), 40000);
        let syn = tcp(GATEWAY_MAC, mac(2), me, (vip, 80), 0x02, 1000, 0);
        let (f, m) = run(&t, B1, &[syn]);
        assert_eq!(m[0].action, Action::Tx(B1), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((field(b, 26, 4) as u32, field(b, 34, 2)), (vip, 40000), "from the VIP, same port");
        assert_eq!((field(b, 30, 4) as u32, field(b, 36, 2)), (ip(2), 8080));
        assert_eq!((&b[0..6], &b[6..12]), (&mac(2).0[..], &GATEWAY_MAC.0[..]));
        assert!(sums_ok(b));
        // Its answer goes to the VIP (off-subnet: to the gateway) and comes back to it
        // from the VIP's port.
        let synack = tcp(GATEWAY_MAC, mac(2), (ip(2), 8080), (vip, 40000), 0x12, 5000, 1001);
        let (f, m) = run(&t, B1, &[synack]);
        assert_eq!(m[0].action, Action::Tx(B1), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((field(b, 26, 4) as u32, field(b, 34, 2)), (vip, 80));
        assert_eq!((field(b, 30, 4) as u32, field(b, 36, 2) as u16), me);
        assert_eq!(&b[0..6], &mac(2).0, "routed back to itself");
        assert!(sums_ok(b));
        // And the connection goes on the same way.
        let ack = tcp(GATEWAY_MAC, mac(2), me, (vip, 80), 0x10, 1001, 5001);
        let (f, m) = run(&t, B1, &[ack]);
        assert_eq!(m[0].action, Action::Tx(B1), "{:?}", m[0]);
        assert_eq!(field(f[0].bytes(), 26, 4) as u32, vip);
        assert_eq!(table.sessions().count(), 1);
    }

    #[test]
    fn a_hairpin_connections_two_ends_in_one_batch_are_tracked_in_their_order() {
        let (_table, t) = switch(64, &[2]);
        let vip = u32::from_be_bytes(VIP);
        let me = (ip(2), 40000);
        let (server, from_vip) = ((ip(2), 8080), (vip, 40000));
        for pkt in [
            tcp(GATEWAY_MAC, mac(2), me, (vip, 80), 0x02, 1000, 0),
            tcp(GATEWAY_MAC, mac(2), server, from_vip, 0x12, 5000, 1001),
            tcp(GATEWAY_MAC, mac(2), me, (vip, 80), 0x10, 1001, 5001),
        ] {
            let (_, m) = run(&t, B1, &[pkt]);
            assert_eq!(m[0].action, Action::Tx(B1), "{:?}", m[0]);
        }
        // The server's data, then the client's ACK of it, in one batch: the ACK is fine
        // only after the data (an ACK of data not seen yet is out of window).
        let data = tcp(GATEWAY_MAC, mac(2), server, from_vip, 0x18, 5005, 1005);
        let ack = tcp(GATEWAY_MAC, mac(2), me, (vip, 80), 0x10, 1005, 5009);
        let (_, m) = run(&t, B1, &[data, ack]);
        assert_eq!((m[0].action, m[1].action), (Action::Tx(B1), Action::Tx(B1)), "{m:?}");
    }

    /// An IPv4 frame carrying `l4` (its checksums are the caller's).
    fn ipv4_frame(dst_mac: Mac, src_mac: Mac, src: u32, dst: u32, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut b = tcp(dst_mac, src_mac, (src, 0), (dst, 0), 0, 0, 0);
        b.truncate(34);
        b[23] = proto;
        b[16..18].copy_from_slice(&(20 + l4.len() as u16).to_be_bytes());
        b[24..26].copy_from_slice(&[0, 0]);
        let c = crate::wire::checksum(ones_sum(&b[14..34]));
        b[24..26].copy_from_slice(&c.to_be_bytes());
        b.extend_from_slice(l4);
        b
    }

    /// ICMP message `icmp` (type, code, checksum left 0, the rest) with its checksum.
    fn icmp_frame(dst_mac: Mac, src_mac: Mac, src: u32, dst: u32, mut icmp: Vec<u8>) -> Vec<u8> {
        let c = crate::wire::checksum(ones_sum(&icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        ipv4_frame(dst_mac, src_mac, src, dst, 1, &icmp)
    }

    /// UDP over IPv4, checksummed.
    fn udp4(dst_mac: Mac, src_mac: Mac, src: (u32, u16), dst: (u32, u16)) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&src.1.to_be_bytes());
        u.extend_from_slice(&dst.1.to_be_bytes());
        u.extend_from_slice(&[0, 12, 0, 0]);
        u.extend_from_slice(b"dig?");
        let p = ones_sum(&src.0.to_be_bytes()) + ones_sum(&dst.0.to_be_bytes()) + 17 + 12;
        let c = crate::wire::checksum(p + ones_sum(&u));
        u[6..8].copy_from_slice(&c.to_be_bytes());
        ipv4_frame(dst_mac, src_mac, src.0, dst.0, 17, &u)
    }

    /// Checksums that mean the same: equal, or the two zeros of one's complement.
    fn same_sum(a: &[u8], b: &[u8]) -> bool {
        a == b
            || (a.iter().all(|&x| x == 0) && b.iter().all(|&x| x == 0xff))
            || (a.iter().all(|&x| x == 0xff) && b.iter().all(|&x| x == 0))
    }

    proptest::proptest! {
        /// The translation worked out when the tables are built writes what the
        /// packet-by-packet one (and the gateway's TTL and MACs) would: TCP, UDP with and
        /// without a checksum, a checksum owed to the NIC.
        #[test]
        fn a_fixed_translation_writes_what_the_per_packet_one_does(
            vip in proptest::prelude::any::<u32>(),
            to in proptest::prelude::any::<(u32, u16)>(),
            client in proptest::prelude::any::<(u32, u16)>(),
            ttl in 2u8..,
            kind in 0..4u8,
        ) {
            use crate::{gateway::{set_macs, spend_hop}, offload::{L4Csum, Offload}, parse::parse, Frame};
            use super::super::{rewrite, End, Fixed};
            let mut pkt = if kind == 0 {
                tcp(GATEWAY_MAC, mac(1), client, (vip, 80), 0x10, 7, 9)
            } else {
                udp4(GATEWAY_MAC, mac(1), client, (vip, 80))
            };
            if kind == 2 {
                pkt[40..42].copy_from_slice(&[0, 0]);
            }
            pkt[22] = ttl;
            let sum = crate::wire::checksum(ones_sum(&{ let mut h = pkt[14..34].to_vec(); h[10] = 0; h[11] = 0; h }));
            pkt[24..26].copy_from_slice(&sum.to_be_bytes());
            let mut m = Meta::default();
            parse(&pkt, &mut m);
            let (mut a, mut b) = (VecFrame::new(&pkt), VecFrame::new(&pkt));
            if kind == 3 {
                let owed = Offload { l2: 0, l3: 14, l4: 34, csum: L4Csum::Udp, ..Offload::NONE };
                a.set_offload(owed);
                b.set_offload(owed);
            }
            let (mut ma, mut mb) = (m, m);
            let fixed = Fixed::new((ipv4_key(vip), 80), (ipv4_key(to.0), to.1)).expect("IPv4");
            fixed.route(&mut a, &mut ma, mac(9), GATEWAY_MAC).expect("routed");
            assert!(rewrite(&mut b, &mut mb, End::Dst, ipv4_key(to.0), to.1) && spend_hop(&mut b, &mb));
            set_macs(&mut b, &mut mb, mac(9), GATEWAY_MAC);
            let (x, y) = (a.bytes(), b.bytes());
            let l4_sum = if kind == 0 { 50 } else { 40 };
            for (at, n) in [(0, 24), (26, l4_sum - 26), (l4_sum + 2, x.len() - l4_sum - 2)] {
                proptest::prop_assert_eq!(&x[at..at + n], &y[at..at + n]);
            }
            proptest::prop_assert!(same_sum(&x[24..26], &y[24..26]));
            proptest::prop_assert!(same_sum(&x[l4_sum..l4_sum + 2], &y[l4_sum..l4_sum + 2]));
            proptest::prop_assert_eq!((ma.ip_dst, ma.dport, ma.dst, ma.src), (mb.ip_dst, mb.dport, mb.dst, mb.src));
        }
    }

    /// An ICMP port unreachable from `from` to `to` quoting `quoted` (a whole frame's IP
    /// packet), as a Linux host sends it.
    fn unreachable(dst_mac: Mac, src_mac: Mac, from: u32, to: u32, quoted: &[u8]) -> Vec<u8> {
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted[14..]);
        icmp_frame(dst_mac, src_mac, from, to, icmp)
    }

    #[test]
    fn a_backends_icmp_error_reaches_the_client_about_the_vip() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        table.enable_nat(|_, _| 0);
        let mut t = tables(&table, &[]);
        let vip = u32::from_be_bytes(VIP);
        let list = vec![Backend { ip: ipv4_key(ip(2)), port: 8080 }];
        let mut s = ServiceTables::default();
        s.insert(
            Arc::new(Service::new(3, 100, (ipv4_key(vip), 53), 17, list, Maglev::build(7, &[(b"b".as_slice(), 1)]))),
            &t.endpoints,
            counters(1),
            None,
        );
        t.services = Arc::new(s);
        let client = (ip(1), 40000);
        let query = udp4(GATEWAY_MAC, mac(1), client, (vip, 53));
        let (f, m) = run(&t, CLIENT, std::slice::from_ref(&query));
        assert_eq!(m[0].action, Action::Tx(B1));
        // Nobody listens on the backend: it says so, quoting what it got.
        let error = unreachable(mac(1), mac(2), ip(2), ip(1), f[0].bytes());
        let (f, m) = run(&t, B1, &[error]);
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!(field(b, 26, 4) as u32, vip, "from the VIP");
        assert!(crate::wire::ipv4::checksum_ok(&b[14..34]));
        assert_eq!(crate::wire::fold(ones_sum(&b[34..])), 0xffff, "ICMP checksum");
        // The quote is the client's query as the client sent it (but for the TTL the
        // gateway spent): addresses, ports and both its checksums.
        let quote = &b[42..];
        let mut sent = query[14..].to_vec();
        sent[8] -= 1;
        sent[10..12].copy_from_slice(&[0, 0]);
        let c = crate::wire::checksum(ones_sum(&sent[..20]));
        sent[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(quote, &sent[..], "quoted as sent");
        // An error about nothing translated passes as it is.
        let stray = unreachable(mac(1), mac(2), ip(2), ip(1), &udp4(mac(2), mac(1), (ip(1), 1), (ip(2), 9)));
        let (f, m) = run(&t, B1, std::slice::from_ref(&stray));
        assert_eq!(m[0].action, Action::Tx(CLIENT));
        assert_eq!(f[0].bytes(), &stray[..]);
    }

    const HOST: u32 = 0xc0a8_3201;
    const OUT: u32 = 0xc0a8_3202;
    const UPLINK: PortId = 7;
    const HOST_MAC: Mac = Mac([2, 0, 0, 0, 0x50, 1]);
    const OUT_MAC: Mac = Mac([2, 0, 0, 0, 0x50, 2]);

    /// `tables` with a VTEP on the uplink (the host's address HOST), OUT resolved on-link,
    /// the network masquerading, and a NodePort 30080 to the service.
    fn north_south(table: &Arc<CtTable>, backends: &[u8]) -> L2Tables {
        let mut t = tables(table, backends);
        t.vtep =
            Some(crate::tables::Vtep { ip: HOST, mac: HOST_MAC, uplink: UPLINK, udp_port: 4789, ttl: 64, mtu: 1500 });
        let mut u = crate::tables::Underlay { net: HOST, mask: 0xffff_ff00, router: None, ..Default::default() };
        u.neighbours.insert(OUT, OUT_MAC);
        t.underlay = Arc::new(u);
        if let Some(n) = t.networks.get_mut(&100) {
            n.snat = Some(0xffff_ff00);
        }
        let mut s = ServiceTables::default();
        let svc = service(backends);
        s.insert(svc, &t.endpoints, counters(backends.len()), Some((30080, None)));
        s.add_network(100);
        t.services = Arc::new(s);
        t
    }

    /// `north_south` with backend 2, over a small table that translates.
    fn north_south_tracked() -> L2Tables {
        let table = Arc::new(CtTable::new(64, 1, 16));
        table.enable_nat(|_, _| 0);
        north_south(&table, &[2])
    }

    fn run_uplink(t: &L2Tables, pkts: &[Vec<u8>]) -> (Vec<VecFrame>, Vec<Meta>) {
        run_uplink_at(t, pkts, 1000)
    }

    /// `run_uplink` at `ms` milliseconds on the table's clock.
    fn run_uplink_at(t: &L2Tables, pkts: &[Vec<u8>], ms: u64) -> (Vec<VecFrame>, Vec<Meta>) {
        let mut frames: Vec<VecFrame> = pkts.iter().map(|p| VecFrame::new(p)).collect();
        let mut meta = vec![Meta::default(); frames.len()];
        crate::stages::parse_batch(&frames, &mut meta);
        let ctx = Ctx { tables: t, clock: Clock { now: ms, hz: 1000 } };
        crate::stages::from_uplink(&ctx, UPLINK, &mut frames, &mut meta, &mut PerCore::default(), &mut Vec::new());
        (frames, meta)
    }

    #[test]
    fn a_vm_reaches_outside_from_the_host_address_and_the_answers_come_back() {
        let t = north_south_tracked();
        let me = (ip(1), 40000);
        let (f, m) = run(&t, CLIENT, &[tcp(GATEWAY_MAC, mac(1), me, (OUT, 9000), 0x02, 1000, 0)]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((field(b, 26, 4) as u32, field(b, 34, 2) as u16), (HOST, 40000), "from the host, its own port");
        assert_eq!((&b[0..6], &b[6..12]), (&OUT_MAC.0[..], &HOST_MAC.0[..]));
        assert!(sums_ok(b));
        let (f, m) = run_uplink(&t, &[tcp(HOST_MAC, OUT_MAC, (OUT, 9000), (HOST, 40000), 0x12, 5000, 1001)]);
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((field(b, 30, 4) as u32, field(b, 36, 2) as u16), me);
        assert_eq!((&b[0..6], &b[6..12]), (&mac(1).0[..], &GATEWAY_MAC.0[..]));
        assert!(sums_ok(b));
        let (_, m) = run(&t, CLIENT, &[tcp(GATEWAY_MAC, mac(1), me, (OUT, 9000), 0x10, 1001, 5001)]);
        assert_eq!(m[0].action, Action::Tx(UPLINK));
    }

    /// An answer from outside after its masqueraded flow timed out (before its core's
    /// wheel frees it) is not the VM's: it is not translated back.
    #[test]
    fn an_answer_from_outside_past_the_flows_timeout_is_not_translated_back() {
        let t = north_south_tracked();
        let me = (ip(1), 40000);
        let (_, m) = run(&t, CLIENT, &[udp4(GATEWAY_MAC, mac(1), me, (OUT, 53))]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let answer = udp4(HOST_MAC, OUT_MAC, (OUT, 53), (HOST, 40000));
        let (f, m) = run_uplink(&t, std::slice::from_ref(&answer));
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        assert_eq!((field(f[0].bytes(), 30, 4) as u32, field(f[0].bytes(), 36, 2) as u16), me);
        // Answered: a millisecond short of 120 s unused (udp_stream), then 120 s.
        let (f, m) = run_uplink_at(&t, std::slice::from_ref(&answer), 1000 + 119_999);
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        assert_eq!(field(f[0].bytes(), 30, 4) as u32, ip(1));
        let (f, m) = run_uplink_at(&t, &[answer], 1000 + 119_999 + 120_000);
        assert_ne!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        assert_eq!(field(f[0].bytes(), 30, 4) as u32, HOST, "left as it came");
    }

    /// An ICMP echo (type 8 request, 0 reply) with identifier `id`.
    fn echo(dst_mac: Mac, src_mac: Mac, src: u32, dst: u32, ty: u8, id: u16) -> Vec<u8> {
        let mut icmp = vec![ty, 0, 0, 0, 0, 0, 0, 1, b'p', b'i', b'n', b'g'];
        icmp[4..6].copy_from_slice(&id.to_be_bytes());
        icmp_frame(dst_mac, src_mac, src, dst, icmp)
    }

    fn icmp_ok(b: &[u8]) -> bool {
        crate::wire::ipv4::checksum_ok(&b[14..34]) && crate::wire::fold(ones_sum(&b[34..])) == 0xffff
    }

    #[test]
    fn a_vms_ping_outside_is_masqueraded_by_its_identifier() {
        let t = north_south_tracked();
        let (f, m) = run(&t, CLIENT, &[echo(GATEWAY_MAC, mac(1), ip(1), OUT, 8, 0x4242)]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((field(b, 26, 4) as u32, field(b, 38, 2)), (HOST, 0x4242), "from the host, its own identifier");
        assert!(icmp_ok(b));
        let (f, m) = run_uplink(&t, &[echo(HOST_MAC, OUT_MAC, OUT, HOST, 0, 0x4242)]);
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((field(b, 30, 4) as u32, field(b, 38, 2)), (ip(1), 0x4242));
        assert!(icmp_ok(b));
        // Another VM's ping with the same identifier to the same address gets another.
        let mut other = echo(GATEWAY_MAC, mac(2), ip(2), OUT, 8, 0x4242);
        other[6..12].copy_from_slice(&mac(2).0);
        let (f, m) = run(&t, B1, &[other]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let id = field(f[0].bytes(), 38, 2);
        assert_ne!(id, 0x4242);
        let (f, m) = run_uplink(&t, &[echo(HOST_MAC, OUT_MAC, OUT, HOST, 0, id as u16)]);
        assert_eq!(m[0].action, Action::Tx(B1));
        assert_eq!(field(f[0].bytes(), 38, 2), 0x4242, "its own identifier back");
        assert!(icmp_ok(f[0].bytes()));
    }

    #[test]
    fn an_icmp_error_from_outside_reaches_the_masqueraded_vm() {
        let t = north_south_tracked();
        let sent = udp4(GATEWAY_MAC, mac(1), (ip(1), 1234), (OUT, 9001));
        let (f, m) = run(&t, CLIENT, &[sent]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let port = field(f[0].bytes(), 34, 2) as u16;
        assert!(port >= 32768, "a masquerade port: {port}");
        // Nobody listens there: host OUT says so about what the host sent.
        let error = unreachable(HOST_MAC, OUT_MAC, OUT, HOST, f[0].bytes());
        let (f, m) = run_uplink(&t, &[error]);
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!(field(b, 30, 4) as u32, ip(1), "to the VM");
        assert!(crate::wire::ipv4::checksum_ok(&b[14..34]));
        assert_eq!(crate::wire::fold(ones_sum(&b[34..])), 0xffff, "ICMP checksum");
        let quote = &b[42..];
        assert_eq!((u32::from_be_bytes(quote[12..16].try_into().unwrap()), field(quote, 20, 2) as u16), (ip(1), 1234));
        assert!(crate::wire::ipv4::checksum_ok(&quote[..20]), "the quoted header's checksum");
        let udp = &quote[20..];
        let pseudo = ones_sum(&quote[12..20]) + 17 + udp.len() as u32;
        assert_eq!(crate::wire::fold(pseudo + ones_sum(udp)), 0xffff, "the quoted UDP checksum");
    }

    #[test]
    fn the_outside_reaches_a_node_port_and_the_backend_answers_from_it() {
        let t = north_south_tracked();
        let client = (OUT, 50000);
        let (f, m) = run_uplink(&t, &[tcp(HOST_MAC, OUT_MAC, client, (HOST, 30080), 0x02, 1000, 0)]);
        assert_eq!(m[0].action, Action::Tx(B1), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((field(b, 30, 4) as u32, field(b, 36, 2) as u16), (ip(2), 8080));
        assert!(sums_ok(b));
        let (f, m) = run(&t, B1, &[tcp(GATEWAY_MAC, mac(2), (ip(2), 8080), client, 0x12, 5000, 1001)]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((field(b, 26, 4) as u32, field(b, 34, 2) as u16), (HOST, 30080));
        assert_eq!(&b[0..6], &OUT_MAC.0);
        assert!(sums_ok(b));
        let (_, m) = run_uplink(&t, &[tcp(HOST_MAC, OUT_MAC, client, (HOST, 30080), 0x10, 1001, 5001)]);
        assert_eq!(m[0].action, Action::Tx(B1), "{:?}", m[0]);
    }

    /// Another switch's VTEP (192.168.50.3), on-link, and its MAC.
    const PEER: u32 = 0xc0a8_3203;
    const PEER_MAC: Mac = Mac([2, 0, 0, 0, 0x50, 3]);

    /// `north_south` with backend 4 (10.1.0.4) behind the switch at PEER, which is a VTEP
    /// of the network; the service's backends are `backends`, its node port's policy
    /// local if `local` says which are.
    fn with_a_peer(table: &Arc<CtTable>, backends: &[u8], local: Option<Box<[bool]>>) -> L2Tables {
        let mut t = north_south(table, &[]);
        let vtep = t.vtep.unwrap();
        t.remotes.insert(PEER, crate::tables::Remote::new(&vtep, PEER, PEER_MAC));
        let mut u = (*t.underlay).clone();
        u.neighbours.insert(PEER, PEER_MAC);
        t.underlay = Arc::new(u);
        t.fib_insert(100, mac(4), FibEntry { target: FibTarget::Vtep(PEER), is_static: false });
        let mut eps = (*t.endpoints).clone();
        eps.insert(100, ipv4_key(ip(4)), Endpoint { mac: mac(4) });
        t.endpoints = Arc::new(eps);
        if let Some(n) = t.networks.get_mut(&100) {
            n.flood_vteps.push(PEER);
        }
        let mut s = ServiceTables::default();
        s.insert(service(backends), &t.endpoints, counters(backends.len()), Some((30080, local)));
        s.add_network(100);
        t.services = Arc::new(s);
        t
    }

    /// `inner`, encapsulated by the switch at PEER toward HOST in VNI 100.
    fn from_peer(inner: Vec<u8>) -> Vec<u8> {
        let peer = crate::tables::Vtep { ip: PEER, mac: PEER_MAC, uplink: 0, udp_port: 4789, ttl: 64, mtu: 1500 };
        let remote = crate::tables::Remote::new(&peer, HOST, HOST_MAC);
        let mut f = VecFrame::new(&inner);
        let mut m = Meta::default();
        crate::parse::parse(crate::Frame::head(&f), &mut m);
        crate::vxlan::encap(&mut f, &m, 100, &remote, &peer, None).unwrap();
        f.bytes().to_vec()
    }

    /// The inner frame of a frame this switch encapsulated toward PEER.
    fn to_peer_inner(b: &[u8]) -> &[u8] {
        assert_eq!((&b[0..6], field(b, 30, 4) as u32), (&PEER_MAC.0[..], PEER), "toward the peer's VTEP");
        assert_eq!(field(b, 36, 2), 4789, "VXLAN");
        assert_eq!(field(b, 46, 3), 100, "in VNI 100");
        &b[50..]
    }

    /// Kubernetes' `externalTrafficPolicy: Cluster`: a NodePort's backend behind another
    /// switch is called from the host's address, through the tunnel; its answers come
    /// back through the tunnel to the host's address and leave from the node port.
    #[test]
    fn a_node_port_reaches_a_backend_behind_another_switch_from_the_host_address() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        table.enable_nat(|_, _| 0);
        let t = with_a_peer(&table, &[4], None);
        let client = (OUT, 50000);
        let (f, m) = run_uplink(&t, &[tcp(HOST_MAC, OUT_MAC, client, (HOST, 30080), 0x02, 1000, 0)]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = to_peer_inner(f[0].bytes());
        assert_eq!((&b[0..6], &b[6..12]), (&mac(4).0[..], &GATEWAY_MAC.0[..]), "routed by the gateway");
        assert_eq!((field(b, 30, 4) as u32, field(b, 36, 2) as u16), (ip(4), 8080), "DNAT");
        let called_from = (field(b, 26, 4) as u32, field(b, 34, 2) as u16);
        assert_eq!(called_from.0, HOST, "SNAT to the host's address");
        assert!(called_from.1 >= 32768, "a port of the masquerade's: {}", called_from.1);
        assert!(sums_ok(b));
        // The answer, through the peer's gateway and the tunnel.
        let answer = tcp(GATEWAY_MAC, GATEWAY_MAC, (ip(4), 8080), called_from, 0x12, 5000, 1001);
        let (f, m) = run_uplink(&t, &[from_peer(answer)]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!(field(b, 12, 2), 0x0800, "not encapsulated: to the client beyond the uplink");
        assert_eq!((&b[0..6], &b[6..12]), (&OUT_MAC.0[..], &HOST_MAC.0[..]));
        assert_eq!((field(b, 26, 4) as u32, field(b, 34, 2) as u16), (HOST, 30080), "from the node port");
        assert_eq!((field(b, 30, 4) as u32, field(b, 36, 2) as u16), client, "to the client");
        assert!(sums_ok(b));
        // The connection keeps its port at the host.
        let (f, m) = run_uplink(&t, &[tcp(HOST_MAC, OUT_MAC, client, (HOST, 30080), 0x10, 1001, 5001)]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = to_peer_inner(f[0].bytes());
        assert_eq!((field(b, 26, 4) as u32, field(b, 34, 2) as u16), called_from);
        // Another client's connection gets a port of its own at the host.
        let other = (OUT, 50001);
        let (f, _) = run_uplink(&t, &[tcp(HOST_MAC, OUT_MAC, other, (HOST, 30080), 0x02, 7000, 0)]);
        let b = to_peer_inner(f[0].bytes());
        assert_ne!(field(b, 34, 2) as u16, called_from.1);
    }

    /// A local backend of a NodePort still sees the client's own address, whichever
    /// backends the service has elsewhere.
    #[test]
    fn a_node_ports_local_backend_sees_the_client() {
        let table = Arc::new(CtTable::new(256, 1, 16));
        table.enable_nat(|_, _| 0);
        let t = with_a_peer(&table, &[2, 4], None);
        let (mut local, mut remote) = (0, 0);
        for port in 50000..50040 {
            let client = (OUT, port);
            let (f, m) = run_uplink(&t, &[tcp(HOST_MAC, OUT_MAC, client, (HOST, 30080), 0x02, 1000, 0)]);
            match m[0].action {
                Action::Tx(B1) => {
                    let b = f[0].bytes();
                    assert_eq!((field(b, 26, 4) as u32, field(b, 34, 2) as u16), client, "the client's own address");
                    local += 1;
                }
                Action::Tx(UPLINK) => {
                    assert_eq!(field(to_peer_inner(f[0].bytes()), 26, 4) as u32, HOST);
                    remote += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(local > 5 && remote > 5, "both backends picked: {local} here, {remote} there");
    }

    /// The local policy (Kubernetes' `externalTrafficPolicy: Local`): only the backend
    /// here is picked, and it sees every client's own address.
    #[test]
    fn a_node_port_with_the_local_policy_picks_only_backends_here() {
        let table = Arc::new(CtTable::new(256, 1, 16));
        table.enable_nat(|_, _| 0);
        let t = with_a_peer(&table, &[2, 4], Some(vec![true, false].into_boxed_slice()));
        for port in 50000..50040 {
            let client = (OUT, port);
            let (f, m) = run_uplink(&t, &[tcp(HOST_MAC, OUT_MAC, client, (HOST, 30080), 0x02, 1000, 0)]);
            assert_eq!(m[0].action, Action::Tx(B1), "{:?}", m[0]);
            assert_eq!((field(f[0].bytes(), 26, 4) as u32, field(f[0].bytes(), 34, 2) as u16), client);
        }
    }

    /// The other side: a backend's answer to a NodePort connection that the switch at
    /// PEER called it in goes back to that switch through the tunnel (it holds the
    /// connection), not out by the uplink as a masqueraded connection would.
    #[test]
    fn a_backends_answer_to_another_switchs_address_goes_back_through_the_tunnel() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        table.enable_nat(|_, _| 0);
        let t = with_a_peer(&table, &[2], None);
        let (f, m) = run(&t, B1, &[tcp(GATEWAY_MAC, mac(2), (ip(2), 8080), (PEER, 40000), 0x12, 5000, 1001)]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = to_peer_inner(f[0].bytes());
        assert_eq!((field(b, 26, 4) as u32, field(b, 34, 2) as u16), (ip(2), 8080), "untranslated");
        assert_eq!((field(b, 30, 4) as u32, field(b, 36, 2) as u16), (PEER, 40000));
        assert_eq!(b[22], 63, "a hop spent by the gateway");
        assert!(sums_ok(b));
        // From another port than the service's, it is the VM's own connection: masqueraded.
        let (f, m) = run(&t, B1, &[tcp(GATEWAY_MAC, mac(2), (ip(2), 8081), (PEER, 40000), 0x02, 5000, 0)]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        assert_eq!(field(f[0].bytes(), 12, 2), 0x0800, "not through the tunnel");
    }

    /// A frame another host sends through the tunnel to the gateway MAC is routed to the
    /// endpoint on this switch, or dropped with a reason: never flooded.
    #[test]
    fn a_frame_to_the_gateway_from_the_tunnel_is_routed_or_dropped_never_flooded() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        table.enable_nat(|_, _| 0);
        let t = with_a_peer(&table, &[2], None);
        let to = |dst: u32| from_peer(udp4(GATEWAY_MAC, mac(4), (ip(4), 1234), (dst, 53)));
        let (f, m) = run_uplink(&t, &[to(ip(1)), to(ip(9)), to(ip(254)), to(ip(4))]);
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((&b[0..6], &b[6..12]), (&mac(1).0[..], &GATEWAY_MAC.0[..]));
        assert_eq!(b[22], 63, "a hop spent");
        assert!(crate::wire::ipv4::checksum_ok(&b[14..34]));
        assert_eq!(m[1].action, Action::Drop(crate::DropReason::NoEndpoint), "nobody holds it");
        assert_eq!(m[2].action, Action::Drop(crate::DropReason::ToGateway));
        assert_eq!(m[3].action, Action::Drop(crate::DropReason::SplitHorizon), "behind the tunnel itself");
    }

    fn v6(last: u8) -> u128 {
        0xfd00_0000_0000_0000_0000_0000_0000_0000 | last as u128
    }

    /// UDP over IPv6 from `src` to `dst`, its checksum over the pseudo-header.
    fn udp6(dst_mac: Mac, src_mac: Mac, src: (u128, u16), dst: (u128, u16)) -> Vec<u8> {
        let payload = b"who";
        let mut u = Vec::new();
        u.extend_from_slice(&src.1.to_be_bytes());
        u.extend_from_slice(&dst.1.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac.0);
        f.extend_from_slice(&src_mac.0);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(u.len() as u16).to_be_bytes());
        f.extend_from_slice(&[17, 64]);
        f.extend_from_slice(&src.0.to_be_bytes());
        f.extend_from_slice(&dst.0.to_be_bytes());
        let c = crate::wire::checksum(sum6(&f[14..54], &u));
        u[6..8].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&u);
        f
    }

    fn sum6(ip: &[u8], l4: &[u8]) -> u32 {
        ones_sum(&ip[8..40]) + l4.len() as u32 + ip[6] as u32 + ones_sum(l4)
    }

    /// The host's IPv6 address on the uplink (fd00:50::1/64) and a server beyond it.
    const HOST6: u128 = 0xfd00_0050_0000_0000_0000_0000_0000_0001;
    const OUT6: u128 = 0xfd00_0050_0000_0000_0000_0000_0000_0002;

    /// `north_south` over IPv6 too: the host's address HOST6, OUT6 resolved on-link, the
    /// network's IPv6 gateway fd00::fe/64 masquerading.
    fn north_south6(table: &Arc<CtTable>) -> L2Tables {
        let mut t = north_south(table, &[2]);
        let mut u = (*t.underlay).clone();
        (u.host6, u.mask6) = (Some(HOST6), u128::MAX << 64);
        u.neighbours6.insert(OUT6, OUT_MAC);
        t.underlay = Arc::new(u);
        if let Some(n) = t.networks.get_mut(&100) {
            (n.gateway.v6, n.snat6) = (Some(v6(0xfe)), Some(u128::MAX << 64));
        }
        let mut eps = (*t.endpoints).clone();
        eps.insert(100, v6(1), Endpoint { mac: mac(1) });
        t.endpoints = Arc::new(eps);
        t
    }

    #[test]
    fn a_vm_reaches_outside_over_ipv6_from_the_host_address_and_the_answers_come_back() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        table.enable_nat(|_, _| 0);
        let t = north_south6(&table);
        let me = (v6(1), 40000);
        let (f, m) = run(&t, CLIENT, &[udp6(GATEWAY_MAC, mac(1), me, (OUT6, 9000))]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((&b[0..6], &b[6..12]), (&OUT_MAC.0[..], &HOST_MAC.0[..]));
        assert_eq!((u128::from_be_bytes(b[22..38].try_into().unwrap()), field(b, 54, 2)), (HOST6, 40000));
        assert_eq!(b[21], 63, "a hop spent");
        assert_eq!(sum6(&b[14..54], &b[54..]), 0xffff, "UDP checksum");
        let (f, m) = run_uplink(&t, &[udp6(HOST_MAC, OUT_MAC, (OUT6, 9000), (HOST6, 40000))]);
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((u128::from_be_bytes(b[38..54].try_into().unwrap()), field(b, 56, 2)), (v6(1), 40000));
        assert_eq!(sum6(&b[14..54], &b[54..]), 0xffff);
        // Inside the network's own prefix: not masqueraded.
        let (_, m) = run(&t, CLIENT, &[udp6(GATEWAY_MAC, mac(1), me, (v6(9), 9000))]);
        assert_eq!(m[0].action, Action::Drop(crate::DropReason::NoEndpoint));
    }

    /// An ICMPv6 message `icmp` from `src` to `dst`, its checksum over the pseudo-header.
    fn icmp6(dst_mac: Mac, src_mac: Mac, src: u128, dst: u128, mut icmp: Vec<u8>) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac.0);
        f.extend_from_slice(&src_mac.0);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[58, 64]);
        f.extend_from_slice(&src.to_be_bytes());
        f.extend_from_slice(&dst.to_be_bytes());
        icmp[2..4].fill(0);
        let c = crate::wire::checksum(sum6(&f[14..54], &icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&icmp);
        f
    }

    #[test]
    fn a_vms_ping6_is_masqueraded_and_an_icmpv6_error_comes_back_to_it() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        table.enable_nat(|_, _| 0);
        let t = north_south6(&table);
        let echo = |ty: u8, id: u16| {
            let mut e = vec![ty, 0, 0, 0, 0, 0, 0, 1, b'p', b'i', b'n', b'g'];
            e[4..6].copy_from_slice(&id.to_be_bytes());
            e
        };
        let (f, m) = run(&t, CLIENT, &[icmp6(GATEWAY_MAC, mac(1), v6(1), OUT6, echo(128, 0x4242))]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((u128::from_be_bytes(b[22..38].try_into().unwrap()), field(b, 58, 2)), (HOST6, 0x4242));
        assert_eq!(sum6(&b[14..54], &b[54..]), 0xffff, "ICMPv6 checksum, addresses included");
        let (f, m) = run_uplink(&t, &[icmp6(HOST_MAC, OUT_MAC, OUT6, HOST6, echo(129, 0x4242))]);
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((u128::from_be_bytes(b[38..54].try_into().unwrap()), field(b, 58, 2)), (v6(1), 0x4242));
        assert_eq!(sum6(&b[14..54], &b[54..]), 0xffff);
        // A UDP datagram out, and the port unreachable OUT6 sends about it (what it got,
        // quoted), back to the VM about its own addresses.
        let (f, m) = run(&t, CLIENT, &[udp6(GATEWAY_MAC, mac(1), (v6(1), 1234), (OUT6, 9001))]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let mut error = vec![1, 4, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&f[0].bytes()[14..]);
        let (f, m) = run_uplink(&t, &[icmp6(HOST_MAC, OUT_MAC, OUT6, HOST6, error)]);
        assert_eq!(m[0].action, Action::Tx(CLIENT), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!(u128::from_be_bytes(b[38..54].try_into().unwrap()), v6(1), "to the VM");
        let quote = &b[62..];
        assert_eq!((u128::from_be_bytes(quote[8..24].try_into().unwrap()), field(quote, 40, 2)), (v6(1), 1234));
        assert_eq!(sum6(&b[14..54], &b[54..]), 0xffff, "the error's checksum");
        assert_eq!(sum6(quote, &quote[40..]), 0xffff, "the quoted UDP checksum");
    }

    /// A neighbour solicitation from OUT6 for `target`, to its solicited-node group.
    fn solicitation(target: u128) -> Vec<u8> {
        let mut f = crate::gateway::ask::solicitation(OUT6, target).to_vec();
        f[6..12].copy_from_slice(&OUT_MAC.0);
        f[54 + 26..54 + 32].copy_from_slice(&OUT_MAC.0);
        f[56..58].fill(0);
        let c = crate::wire::checksum(sum6(&f[14..54], &f[54..]));
        f[56..58].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn the_uplink_answers_neighbour_solicitations_for_the_host_ipv6_address() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        let t = north_south6(&table);
        let (f, m) = run_uplink(&t, &[solicitation(HOST6), solicitation(OUT6 + 7)]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((&b[0..6], &b[6..12]), (&OUT_MAC.0[..], &HOST_MAC.0[..]));
        assert_eq!(b[54], 136, "an advertisement");
        assert_eq!(u128::from_be_bytes(b[62..78].try_into().unwrap()), HOST6);
        assert_eq!(&b[80..86], &HOST_MAC.0, "the host's MAC");
        assert_eq!(sum6(&b[14..54], &b[54..]), 0xffff);
        assert_eq!(m[1].action, Action::Drop(crate::DropReason::ArpNotForUs), "not ours");
    }

    #[test]
    fn the_uplink_defends_the_host_ipv6_address_against_a_host_that_would_take_it() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        let t = north_south6(&table);
        // Duplicate address detection: from the unspecified address, no link-layer option.
        let mut probe = crate::gateway::ask::solicitation_by(0, OUT_MAC, HOST6).to_vec();
        probe.truncate(54 + 24);
        probe[18..20].copy_from_slice(&24u16.to_be_bytes());
        probe[56..58].fill(0);
        let c = crate::wire::checksum(sum6(&probe[14..54], &probe[54..]));
        probe[56..58].copy_from_slice(&c.to_be_bytes());
        let (f, m) = run_uplink(&t, &[probe]);
        assert_eq!(m[0].action, Action::Tx(UPLINK), "{:?}", m[0]);
        let b = f[0].bytes();
        assert_eq!((&b[0..6], &b[6..12]), (&[0x33, 0x33, 0, 0, 0, 1][..], &HOST_MAC.0[..]), "to all nodes' MAC");
        assert_eq!(u128::from_be_bytes(b[38..54].try_into().unwrap()), 0xff02 << 112 | 1, "to all nodes");
        assert_eq!((b[54], b[58]), (136, 0x20), "an advertisement, overriding, unsolicited, not a router's");
        assert_eq!(u128::from_be_bytes(b[62..78].try_into().unwrap()), HOST6);
        assert_eq!(&b[80..86], &HOST_MAC.0, "the host's MAC");
        assert_eq!(sum6(&b[14..54], &b[54..]), 0xffff);
    }

    #[test]
    fn ipv6_services_translate_both_ways_with_checksums_right() {
        let table = Arc::new(CtTable::new(64, 1, 16));
        table.enable_nat(|_, _| 0);
        let mut t = tables(&table, &[]);
        let vip = v6(0x10);
        let mut eps = Endpoints::default();
        for (last, m) in [(1, mac(1)), (2, mac(2))] {
            eps.insert(100, v6(last), Endpoint { mac: m });
        }
        t.endpoints = Arc::new(eps);
        if let Some(n) = t.networks.get_mut(&100) {
            n.gateway.v6 = Some(v6(0xfe));
        }
        let backends = vec![Backend { ip: v6(2), port: 5353 }];
        let key = format!("{:x}", v6(2));
        let mut s = ServiceTables::default();
        s.insert(
            Arc::new(Service::new(2, 100, (vip, 53), 17, backends, Maglev::build(7, &[(key.as_bytes(), 1)]))),
            &t.endpoints,
            counters(1),
            None,
        );
        t.services = Arc::new(s);
        let client = (v6(1), 40000);
        let (f, m) = run(&t, CLIENT, &[udp6(GATEWAY_MAC, mac(1), client, (vip, 53))]);
        assert_eq!(m[0].action, Action::Tx(B1));
        let b = f[0].bytes();
        assert_eq!(u128::from_be_bytes(b[38..54].try_into().unwrap()), v6(2), "DNAT");
        assert_eq!(field(b, 56, 2), 5353);
        assert_eq!(b[21], 63, "hop limit spent by the gateway");
        assert_eq!(sum6(&b[14..54], &b[54..]), 0xffff, "UDP checksum over IPv6");
        let (f, m) = run(&t, B1, &[udp6(mac(1), mac(2), (v6(2), 5353), client)]);
        assert_eq!(m[0].action, Action::Tx(CLIENT));
        let b = f[0].bytes();
        assert_eq!((u128::from_be_bytes(b[22..38].try_into().unwrap()), field(b, 54, 2)), (vip, 53));
        assert_eq!(sum6(&b[14..54], &b[54..]), 0xffff);
    }
}

#[test]
fn an_offloaded_checksum_keeps_owing_with_its_pseudo_header_sum_moved() {
    use crate::{
        meta::{ipv4_key, Meta},
        offload::{L4Csum, Offload},
        parse::parse,
        services::{rewrite, End},
        wire::{fold, ones_sum},
        Frame, VecFrame,
    };
    // TCP over IPv4 as a kernel hands it over with CHECKSUM_PARTIAL: the field holds the
    // pseudo-header's folded sum, not complemented.
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 1, 0, 1, 10, 96, 0, 10];
    let c = crate::wire::checksum(ones_sum(&ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = vec![0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3, 4];
    let pseudo = |ip: &[u8]| fold(ones_sum(&ip[12..20]) + 6 + 24) as u16;
    tcp[16..18].copy_from_slice(&pseudo(&ip).to_be_bytes());
    f.extend_from_slice(&tcp);
    let mut frame = VecFrame::new(&f);
    frame.offload = Offload { csum: L4Csum::Tcp, l2: 0, l3: 14, l4: 34, ..Offload::NONE };
    let mut m = Meta::default();
    parse(frame.head(), &mut m);
    assert!(rewrite(&mut frame, &mut m, End::Dst, ipv4_key(0x0a01_0102), 8080));
    let b = frame.bytes();
    assert!(crate::wire::ipv4::checksum_ok(&b[14..34]));
    assert_eq!(u16::from_be_bytes([b[50], b[51]]), pseudo(&b[14..34]), "the new pseudo-header's sum");
    assert_eq!(u16::from_be_bytes([b[36], b[37]]), 8080);
    assert_eq!(frame.offload.csum, L4Csum::Tcp, "still owed");
}
