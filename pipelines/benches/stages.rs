//! Each stage on a batch of 32 packets of the benchmark traffic (BENCHMARKS.md: 64-byte
//! UDP frames from a VM, 1,024 flows). Figures are per batch; divide by 32 per packet.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pipelines::{
    acl::{AclCache, AclTables, Classifier, Direction, Family, PortAcl, Prefix, Rule, Verdict, ANY_PORT},
    conntrack::CtState,
    learn::{Clock, LearnEvent},
    parse::parse,
    qos::ColorAction::Pass,
    stages::{self, Ctx, PerCore},
    tables::{FibEntry, FibTarget, L2Tables, Network, Remote, Vtep},
    vxlan,
    wire::Mac,
    Action, Frame, Meta, VecFrame, BURST,
};
use std::{hint::black_box, sync::Arc};

const VM: Mac = Mac([2, 0, 0, 0, 1, 1]);
const DST: Mac = Mac([2, 0, 0, 0, 2, 1]);

fn frame(i: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&DST.0);
    f.extend_from_slice(&VM.0);
    let d = 2 + i as u32;
    f.extend_from_slice(&[
        0x08,
        0x00,
        0x45,
        0,
        0,
        46,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
        10,
        1,
        0,
        1,
        10,
        1,
        (d >> 8) as u8,
        d as u8,
    ]);
    f.extend_from_slice(&((1024 + i) as u16).to_be_bytes());
    f.extend_from_slice(&[0x13, 0x89, 0, 26, 0, 0]);
    f.resize(60, 0);
    f
}

fn vtep() -> Vtep {
    Vtep { ip: 0x0a000001, mac: Mac([2, 0, 0, 0, 0, 1]), uplink: 9, udp_port: 4789, ttl: 64, mtu: 1500 }
}

/// W2's rules: n-1 denies on 172.16/12 sources and ports, and the allow the traffic hits.
fn w2_rules(n: u32) -> Vec<Rule> {
    let mut rules: Vec<Rule> = (0..n.saturating_sub(1))
        .map(|i| Rule {
            id: i + 2,
            priority: 20000 + i,
            family: Family::V4,
            src: Prefix::v4(0xac000000 | ((16 + i / 250) << 16) | ((i % 250) << 8), 24),
            dst: Prefix::ANY,
            proto: Some(17),
            sport: ANY_PORT,
            dport: ((1000 + i % 60000) as u16, (1000 + i % 60000) as u16),
            icmp_type: None,
            verdict: Verdict::Deny,
            counter: i + 1,
        })
        .collect();
    rules.push(Rule {
        id: 1,
        priority: 1000,
        family: Family::V4,
        src: Prefix::ANY,
        dst: Prefix::v4(0x0a010000, 16),
        proto: Some(17),
        sport: ANY_PORT,
        dport: ANY_PORT,
        icmp_type: None,
        verdict: Verdict::Allow,
        counter: 0,
    });
    rules
}

fn tables(acl_rules: u32) -> L2Tables {
    tables_with(if acl_rules > 0 { w2_rules(acl_rules) } else { vec![] })
}

/// W2-real's security group, shaped as bench/configs.py's `near_miss`: `n - 1` rules on
/// source prefix, protocol and ports, each a near miss of W2's traffic in one field,
/// the one allow it hits 4 rules above the bottom, and the port's default deny.
fn w2_real_rules(n: u32) -> Vec<Rule> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |below: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as u32
    };
    let any = |id: u32| Rule {
        id,
        priority: 40000 - id,
        family: Family::V4,
        src: Prefix::ANY,
        dst: Prefix::ANY,
        proto: Some(17),
        sport: ANY_PORT,
        dport: ANY_PORT,
        icmp_type: None,
        verdict: if id % 2 == 1 { Verdict::Deny } else { Verdict::Allow },
        counter: id,
    };
    (1..n)
        .map(|id| {
            let mut r = any(id);
            let k = id - 1;
            if k == n - 5 {
                (r.src, r.dst, r.dport, r.verdict) =
                    (Prefix::v4(0x0a01_0000, 16), Prefix::v4(0x0a01_0000, 16), (5001, 5001), Verdict::Allow);
            } else if k % 4 == 0 {
                let port = 1024 + next(64512) as u16;
                r.proto = Some(if next(2) == 0 { 17 } else { 6 });
                r.src = Prefix::v4(0xac10_0000 | next(1 << 20), 32);
                r.dst = Prefix::v4(0xc0a8_0000 | next(1 << 16), 32);
                (r.sport, r.dport) = ((port, port), (port ^ 1, port ^ 1));
            } else if k % 4 == 1 {
                let port = 1 + next(65535) as u16;
                r.proto = Some(6);
                (r.src, r.dst, r.dport) =
                    (Prefix::v4(0x0a01_0000, 16), Prefix::v4(0x0a01_0000 | next(256) << 8, 24), (port, port));
            } else if k % 4 == 2 {
                let port = match 1 + next(65535) as u16 {
                    5001 => 5002,
                    p => p,
                };
                (r.src, r.dst, r.dport) =
                    (Prefix::v4(0x0a01_0001, 32), Prefix::v4(0x0a01_0002 + next(1024), 32), (port, port));
            } else {
                let block = (0x10 + next(0xf0) as u16) << 8;
                (r.src, r.sport, r.dport) = (Prefix::v4(0x0a01_0000, 16), (block, block | 0xff), (5001, 5001));
            }
            r
        })
        .collect()
}

fn tables_with(rules: Vec<Rule>) -> L2Tables {
    let mut t = L2Tables::default();
    t.networks
        .insert(100, Network { vni: 100, ports: vec![1, 2], flood_vteps: vec![0x0a000002], ..Default::default() });
    t.vtep = Some(vtep());
    t.remotes.insert(0x0a000002, Remote::new(&vtep(), 0x0a000002, Mac([2, 0, 0, 0, 0, 2])));
    t.fib_insert(100, DST, FibEntry { target: FibTarget::Vtep(0x0a000002), is_static: true });
    t.fib_insert(100, VM, FibEntry { target: FibTarget::Port(1), is_static: false });
    t.port_mtu = vec![1500; 16];
    if !rules.is_empty() {
        let mut ports: Vec<Option<std::sync::Arc<PortAcl>>> = (0..16).map(|_| None).collect();
        ports[1] = Some(std::sync::Arc::new(PortAcl {
            ingress: Classifier::new(rules),
            egress: Classifier::new(vec![]),
            default: Verdict::Deny,
        }));
        t.acl = Arc::new(AclTables { ports });
    }
    // (As the control plane publishes them: a compile of their own.)
    t.stamp();
    t
}

fn batch() -> (Vec<VecFrame>, Vec<Meta>) {
    let frames: Vec<VecFrame> = (0..BURST).map(|i| VecFrame::new(&frame(i * 31))).collect();
    let mut meta = vec![Meta::default(); BURST];
    stages::parse_batch(&frames, &mut meta);
    (frames, meta)
}

/// W8's traffic: UDP from the VM 10.1.0.1, flow `i`'s source port, to the VIP
/// 10.96.0.10:80 through the gateway; or (`reply`) a backend's answer to it.
fn udp(dst: Mac, src: Mac, from: (u32, u16), to: (u32, u16)) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    let mut h = [0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    h[12..16].copy_from_slice(&from.0.to_be_bytes());
    h[16..20].copy_from_slice(&to.0.to_be_bytes());
    let c = pipelines::wire::checksum(pipelines::wire::ones_sum(&h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&h);
    f.extend_from_slice(&from.1.to_be_bytes());
    f.extend_from_slice(&to.1.to_be_bytes());
    // (No UDP checksum: 0 is allowed over IPv4, and the translation keeps it so.)
    f.extend_from_slice(&[0, 26, 0, 0]);
    f.resize(60, 0);
    f
}

const VIP: u32 = 0x0a60_000a;
const CLIENT: u32 = 0x0a01_0001;
const REMOTE: u32 = 0x0a00_0002;

fn backend(b: u8) -> (u32, Mac) {
    (0x0a01_0100 | b as u32, Mac([2, 0, 0, 0, 3, b]))
}

/// W8's switch: network 100 with a gateway, the VM on port 1, 16 backends behind the
/// remote VTEP, a service over them, and a session table small enough to stay in cache
/// (`VecFrame` prefetches nothing: what the PMD's prefetching hides would be counted).
fn w8_tables() -> L2Tables {
    use pipelines::{
        conntrack::{CtTable, CtTables},
        gateway::{Endpoint, Endpoints, GatewayAddrs},
        meta::ipv4_key,
        services::{counters::BackendCounters, maglev::Maglev, Backend, Service, ServiceTables},
    };
    let mut t = tables(0);
    let net = t.networks.get_mut(&100).expect("network 100");
    net.gateway = GatewayAddrs { v4: Some(0x0a01_00fe), v6: None };
    let mut eps = Endpoints::default();
    let mut list = Vec::new();
    for b in 1..=16 {
        let (ip, mac) = backend(b);
        t.fib_insert(100, mac, FibEntry { target: FibTarget::Vtep(REMOTE), is_static: true });
        eps.insert(100, ipv4_key(ip), Endpoint { mac });
        list.push(Backend { ip: ipv4_key(ip), port: 8080 });
    }
    t.endpoints = Arc::new(eps);
    let keys: Vec<String> = list.iter().map(|b| format!("{:x}:{}", b.ip, b.port)).collect();
    let weighted: Vec<(&[u8], u32)> = keys.iter().map(|k| (k.as_bytes(), 1)).collect();
    let svc = Service::new(1, 100, (ipv4_key(VIP), 80), 17, list, Maglev::build(16381, &weighted));
    let mut s = ServiceTables::default();
    s.insert(Arc::new(svc), &t.endpoints, Arc::new(BackendCounters::new(16, 1)), None);
    t.services = Arc::new(s);
    let table = CtTable::new(1 << 14, 1, 16);
    table.enable_nat(|_, _| 0);
    t.ct = Arc::new(CtTables { table: Some(Arc::new(table)), ports: vec![], dry: false });
    t.stamp();
    t
}

/// W8's 1,024 flows in batches of 32, their sessions made and answered (established).
fn w8_batches(t: &L2Tables, core: &mut PerCore) -> Vec<Vec<VecFrame>> {
    let gateway = pipelines::gateway::GATEWAY_MAC;
    let flows: Vec<Vec<u8>> = (0..1024).map(|i| udp(gateway, VM, (CLIENT, 1024 + i), (VIP, 80))).collect();
    let batches: Vec<Vec<VecFrame>> =
        flows.chunks(BURST).map(|c| c.iter().map(|p| VecFrame::new(p)).collect()).collect();
    let ctx = Ctx { tables: t, clock: Clock { now: 0, hz: 1 << 30 } };
    for b in &batches {
        let (fr, _) = through_vm(t, core, b.clone());
        // Each backend answers from where the translation sent it.
        let replies: Vec<VecFrame> = fr
            .iter()
            .map(|f| {
                let inner = &f.head()[pipelines::wire::vxlan::OUTER_LEN..];
                let ip = |at: usize| u32::from_be_bytes(inner[at..at + 4].try_into().expect("4 bytes"));
                let (backend_ip, client_ip) = (ip(30), ip(26));
                let port = |at: usize| u16::from_be_bytes([inner[at], inner[at + 1]]);
                let mac = Mac(inner[..6].try_into().expect("6 bytes"));
                let answer = udp(VM, mac, (backend_ip, port(36)), (client_ip, port(34)));
                VecFrame::new(&vxlan::build(Mac([2, 0, 0, 0, 0, 2]), vtep().mac, REMOTE, &vtep(), 100, &answer))
            })
            .collect();
        let (mut fr, mut meta) = (replies, vec![Meta::default(); BURST]);
        stages::parse_batch(&fr, &mut meta);
        stages::from_uplink(&ctx, 9, &mut fr, &mut meta, core, &mut Vec::new());
        assert!(meta.iter().all(|m| m.action == Action::Tx(1)), "every answer reaches the client");
    }
    batches
}

/// W6's switch: W2's with its one-rule security group stateful on the VM's port, and a
/// session table small enough to stay in cache (as for W8).
fn w6_tables() -> L2Tables {
    w6_tables_for(1 << 14)
}

/// W6's tables with room for `sessions`.
fn w6_tables_for(sessions: u32) -> L2Tables {
    use pipelines::conntrack::{CtPort, CtTable, CtTables};
    let mut t = tables(1);
    let table = CtTable::new(sessions, 1, 16);
    let mut ports = vec![None; 16];
    ports[1] = Some(CtPort { liberal: false, sticky: false, pickup: false, max_sessions: 0, epoch: 1 });
    t.ct = Arc::new(CtTables { table: Some(Arc::new(table)), ports, dry: false });
    t.stamp();
    t
}

/// W6's 1,024 flows in batches of 32, each session answered from the remote VTEP.
fn w6_batches(t: &L2Tables, core: &mut PerCore) -> Vec<Vec<VecFrame>> {
    w6_flows(t, core, 1024).0
}

/// The answers (encapsulated, from the remote VTEP) of W6's 1,024 sessions.
fn w6_answers(t: &L2Tables, core: &mut PerCore) -> Vec<Vec<VecFrame>> {
    w6_flows(t, core, 1024).1
}

/// The same with 65,536 sessions.
fn w6_answers_64k(t: &L2Tables, core: &mut PerCore) -> Vec<Vec<VecFrame>> {
    w6_flows(t, core, 65536).1
}

/// `n` of W6's flows in batches of 32, each session opened by the VM and answered from
/// the remote VTEP: the VM's batches and the answers'.
fn w6_flows(t: &L2Tables, core: &mut PerCore, n: usize) -> (Vec<Vec<VecFrame>>, Vec<Vec<VecFrame>>) {
    let batches: Vec<Vec<VecFrame>> = (0..n)
        .map(frame)
        .collect::<Vec<_>>()
        .chunks(BURST)
        .map(|c| c.iter().map(|p| VecFrame::new(p)).collect())
        .collect();
    let ctx = Ctx { tables: t, clock: Clock { now: 0, hz: 1 << 30 } };
    let mut answers = Vec::with_capacity(batches.len());
    for b in &batches {
        let replies: Vec<VecFrame> = b
            .iter()
            .map(|f| {
                let p = f.head();
                let ip = |at: usize| u32::from_be_bytes(p[at..at + 4].try_into().expect("4 bytes"));
                let port = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
                let answer = udp(VM, DST, (ip(30), port(36)), (ip(26), port(34)));
                VecFrame::new(&vxlan::build(Mac([2, 0, 0, 0, 0, 2]), vtep().mac, REMOTE, &vtep(), 100, &answer))
            })
            .collect();
        let (_, meta) = through_vm(t, core, b.clone());
        assert!(meta.iter().all(|m| m.action == Action::Tx(9)), "{:?}", meta[0].action);
        answers.push(replies.clone());
        let (mut fr, mut meta) = (replies, vec![Meta::default(); BURST]);
        stages::parse_batch(&fr, &mut meta);
        stages::from_uplink(&ctx, 9, &mut fr, &mut meta, core, &mut Vec::new());
        assert!(meta.iter().all(|m| m.action == Action::Tx(1)), "every answer reaches the VM: {:?}", meta[0].action);
    }
    (batches, answers)
}

/// A workload whose batches `make` prepares (and answers) on `t`, each batch through
/// `from_vm` (or, `from_uplink`, through `from_uplink`) in turn; every packet must
/// come out where it goes (encapsulated; or to the VM), of an established session.
fn established(
    g: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    name: &str,
    t: &L2Tables,
    make: fn(&L2Tables, &mut PerCore) -> Vec<Vec<VecFrame>>,
    from_uplink: bool,
) {
    let mut core = PerCore::default();
    let batches = make(t, &mut core);
    let to = if from_uplink { Action::Tx(1) } else { Action::Tx(9) };
    // (Parsed as the PMD parses them: a VM port's batch by `parse_vm_batch`.)
    let run = |fr: &mut Vec<VecFrame>, meta: &mut Vec<Meta>, ev: &mut Vec<_>, core: &mut PerCore| {
        let ctx = Ctx { tables: t, clock: Clock { now: 0, hz: 1 << 30 } };
        if from_uplink {
            stages::parse_batch(fr, meta);
            stages::from_uplink(&ctx, 9, fr, meta, core, ev);
        } else {
            stages::parse_vm_batch(t, 1, 100, fr, meta);
            stages::from_vm(&ctx, 1, 100, fr, meta, core, ev);
        }
    };
    let (mut fr, mut meta, mut ev) = (batches[0].clone(), vec![Meta::default(); BURST], Vec::new());
    run(&mut fr, &mut meta, &mut ev, &mut core);
    assert!(meta.iter().all(|m| m.action == to), "{name}: {:?}", meta[0].action);
    assert!(meta.iter().all(|m| m.ct.state == pipelines::conntrack::CtState::Established), "{name}: {:?}", meta[0].ct);
    in_turn(g, name, &batches, to, &mut core, run);
}

/// Benchmarks `run` over `batches` in turn, counting the frames it sends to `to`.
fn in_turn(
    g: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    name: &str,
    batches: &[Vec<VecFrame>],
    to: Action,
    core: &mut PerCore,
    run: impl Fn(&mut Vec<VecFrame>, &mut Vec<Meta>, &mut Vec<LearnEvent>, &mut PerCore),
) {
    g.bench_function(name, |b| {
        let mut k = 0;
        b.iter_batched(
            || {
                k = (k + 1) % batches.len();
                (batches[k].clone(), vec![Meta::default(); BURST], Vec::with_capacity(64))
            },
            |(mut fr, mut meta, mut ev)| {
                run(&mut fr, &mut meta, &mut ev, core);
                black_box(meta.iter().filter(|m| m.action == to).count())
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

/// W7's next batch: UDP from a VM address to one of 10.1/16 (the rule allows it), a
/// new flow in each frame (`next` counts them; none repeats for 2^48).
fn w7_batch(next: &mut u64) -> Vec<VecFrame> {
    let flow = |k: u64| {
        let src = 0x0a02_0000 | (k >> 32) as u32 & 0xffff;
        VecFrame::new(&udp(DST, VM, (src, (k >> 16) as u16), (0x0a01_0000 | k as u32 & 0xffff, 5001)))
    };
    let batch = (*next..*next + BURST as u64).map(flow).collect();
    *next += BURST as u64;
    batch
}

/// A VM's batch through `from_vm` at port 1 of VNI 100.
fn through_vm(t: &L2Tables, core: &mut PerCore, mut fr: Vec<VecFrame>) -> (Vec<VecFrame>, Vec<Meta>) {
    let mut meta = vec![Meta::default(); BURST];
    stages::parse_batch(&fr, &mut meta);
    let ctx = Ctx { tables: t, clock: Clock { now: 0, hz: 1 << 30 } };
    stages::from_vm(&ctx, 1, 100, &mut fr, &mut meta, core, &mut Vec::new());
    (fr, meta)
}

/// W7: a VM's every packet a new connection through its stateful port (the rules
/// allow it). With `room`, the table is made anew (outside the clock) each time a
/// quarter of it is taken, so new sessions take free ones; without, it is filled first
/// and every new session recycles a half-open one from its buckets (W7-full).
fn w7(g: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>, name: &str, capacity: u32, room: bool) {
    let t = std::cell::RefCell::new(w6_tables_for(capacity));
    let mut core = PerCore::default();
    let (mut next, mut made) = (0u64, 0u32);
    if !room {
        for _ in 0..capacity / BURST as u32 {
            through_vm(&t.borrow(), &mut core, w7_batch(&mut next));
        }
        let full = t.borrow().ct.table.as_deref().map_or(0, |c| c.sessions().count());
        // (A few new sessions find both their buckets full and are refused.)
        assert!(full >= capacity as usize * 99 / 100, "{name}: {full} sessions: the table is full");
    }
    // Each a new session (full: recycling a half-open one), or, full, refused where
    // neither of its buckets names a session to recycle.
    let (mut made_here, mut refused) = (0, 0);
    for _ in 0..64 {
        let (_, meta) = through_vm(&t.borrow(), &mut core, w7_batch(&mut next));
        for m in &meta {
            match (m.action, m.ct.state) {
                (Action::Tx(9), CtState::New) => made_here += 1,
                (Action::Drop(pipelines::DropReason::CtFull), _) if !room => refused += 1,
                _ => panic!("{name}: {m:?}"),
            }
        }
    }
    eprintln!("{name}: {made_here} new sessions, {refused} refused (ct_full)");
    assert!(made_here >= 64 * BURST * 9 / 10, "{name}: {refused} of {} refused", 64 * BURST);
    g.bench_function(name, |b| {
        b.iter_batched(
            || {
                if room && made >= capacity / 4 {
                    *t.borrow_mut() = w6_tables_for(capacity);
                    made = 0;
                }
                made += BURST as u32;
                w7_batch(&mut next)
            },
            |fr| {
                // (Returned, so dropped outside the clock: a PMD frees no frames of its own.)
                through_vm(&t.borrow(), &mut core, fr)
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch32");
    g.throughput(Throughput::Elements(BURST as u64));
    let (frames, _) = batch();
    g.bench_function("parse", |b| {
        let mut meta = vec![Meta::default(); BURST];
        b.iter(|| stages::parse_batch(black_box(&frames), &mut meta))
    });
    let t = tables(0);
    g.bench_function("fib_lookup", |b| {
        let (_, meta) = batch();
        b.iter(|| meta.iter().filter(|m| t.lookup(100, black_box(m.dst)).is_some()).count())
    });
    for n in [1u32, 1000, 10000] {
        let t = tables(n);
        g.bench_with_input(BenchmarkId::new("acl", n), &n, |b, _| {
            let (_, meta) = batch();
            b.iter(|| meta.iter().filter(|m| t.acl.check(1, Direction::In, black_box(m)).0 == Verdict::Allow).count())
        });
    }
    // The ingress stage as the pipeline runs it, with a core's remembered answers.
    for n in [1u32, 10000] {
        let t = tables(n);
        g.bench_with_input(BenchmarkId::new("acl_ingress_batch", n), &n, |b, _| {
            let (_, mut meta) = batch();
            let acl = t.acl.ports[1].as_ref().expect("port 1 has rules");
            let mut cache = pipelines::acl::AclCache::with_flows();
            b.iter(|| acl.ingress_batch(black_box(&mut meta), &mut cache))
        });
    }
    let t = tables(0);
    g.bench_function("encap", |b| {
        let (frames, meta) = batch();
        let remote = t.remotes[&0x0a000002];
        b.iter_batched(
            || frames.clone(),
            |mut fr| {
                // As the pipeline does: one encapsulator per batch.
                let mut e = vxlan::Encapsulator::default();
                for (f, m) in fr.iter_mut().zip(&meta) {
                    let _ = e.encap(f, m, 100, (0x0a000002, &remote), &vtep(), None);
                }
                fr
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let policer = pipelines::qos::PortQos {
        ingress: Some(pipelines::qos::MeterConfig {
            unit: pipelines::qos::Unit::Bytes,
            mode: pipelines::qos::Mode::SrTcm { cir: 50_000_000_000, cbs: 1 << 30, ebs: 1 << 30 },
            yellow: pipelines::qos::ColorAction::Pass,
            red: pipelines::qos::ColorAction::Drop,
        }),
        ..Default::default()
    };
    // A policer with room to spare: per packet, and the burst taken whole (what from_vm does).
    g.bench_function("meter_per_packet", |b| {
        let mut meters = pipelines::qos::Meters::default();
        let mut now = 0u64;
        b.iter(|| {
            now += 1000;
            let clock = Clock { now, hz: 1 << 30 };
            frames.iter().filter(|f| meters.act(&policer, 1, Direction::In, clock, f.len() as u64) == Pass).count()
        })
    });
    g.bench_function("meter_burst", |b| {
        let mut meters = pipelines::qos::Meters::default();
        let mut now = 0u64;
        b.iter(|| {
            now += 1000;
            let clock = Clock { now, hz: 1 << 30 };
            let bytes = frames.iter().map(|f| f.len() as u64).sum();
            meters.all_green(&policer, 1, Direction::In, clock, black_box(bytes), BURST as u64)
        })
    });
    let outer: Vec<VecFrame> = (0..BURST)
        .map(|i| VecFrame::new(&vxlan::build(Mac([2, 0, 0, 0, 0, 2]), vtep().mac, 0x0a000002, &vtep(), 100, &frame(i))))
        .collect();
    // The VXLAN checks and the strip alone.
    g.bench_function("decap", |b| {
        let mut meta = vec![Meta::default(); BURST];
        stages::parse_batch(&outer, &mut meta);
        let vt = vtep();
        b.iter_batched(
            || outer.clone(),
            |mut fr| {
                for (f, m) in fr.iter_mut().zip(&meta) {
                    if let Ok(d) = vxlan::check(f.head(), f.len(), m, &vt, |v| v == 100) {
                        f.strip(d.outer_len);
                    }
                }
                fr
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("uplink_decap", |b| {
        let mut core = PerCore::default();
        b.iter_batched(
            || (outer.clone(), vec![Meta::default(); BURST], Vec::new()),
            |(mut fr, mut meta, mut ev)| {
                stages::parse_batch(&fr, &mut meta);
                let ctx = Ctx { tables: &t, clock: Clock { now: 0, hz: 1 << 30 } };
                stages::from_uplink(&ctx, 9, &mut fr, &mut meta, &mut core, &mut ev);
                black_box(meta.iter().filter(|m| matches!(m.action, Action::Tx(_))).count())
            },
            criterion::BatchSize::SmallInput,
        )
    });
    for n in [0u32, 1, 10000] {
        let t = tables(n);
        g.bench_with_input(BenchmarkId::new("vm_ingress_full_w2", n), &n, |b, _| {
            let mut core = PerCore::default();
            b.iter_batched(
                || (frames.clone(), vec![Meta::default(); BURST], Vec::with_capacity(64)),
                |(mut fr, mut meta, mut ev)| {
                    stages::parse_batch(&fr, &mut meta);
                    let ctx = Ctx { tables: &t, clock: Clock { now: 0, hz: 1 << 30 } };
                    stages::from_vm(&ctx, 1, 100, &mut fr, &mut meta, &mut core, &mut ev);
                    black_box(fr.iter().map(Frame::len).sum::<usize>())
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    // W2-real: W2's 1,024 flows, 32 batches in turn, through the near-miss group.
    let real = tables_with(w2_real_rules(1000));
    let flows: Vec<Vec<VecFrame>> =
        (0..1024).map(|i| VecFrame::new(&frame(i))).collect::<Vec<_>>().chunks(BURST).map(<[_]>::to_vec).collect();
    let mut core = PerCore { acl: AclCache::with_flows(), ..PerCore::default() };
    let run = |fr: &mut Vec<VecFrame>, meta: &mut Vec<Meta>, ev: &mut Vec<_>, core: &mut PerCore| {
        stages::parse_batch(fr, meta);
        let ctx = Ctx { tables: &real, clock: Clock { now: 0, hz: 1 << 30 } };
        stages::from_vm(&ctx, 1, 100, fr, meta, core, ev);
    };
    for batch in &flows {
        let (mut fr, mut meta, mut ev) = (batch.clone(), vec![Meta::default(); BURST], Vec::new());
        run(&mut fr, &mut meta, &mut ev, &mut core);
        assert!(meta.iter().all(|m| m.action == Action::Tx(9)), "W2-real: {:?}", meta[0].action);
    }
    in_turn(&mut g, "vm_ingress_w2_real", &flows, Action::Tx(9), &mut core, run);
    // W6: W2's batch through a stateful port; W8: a VM's batch to a service VIP (DNAT,
    // routing to the backend, encapsulation toward its VTEP). Every session established,
    // from_vm whole as the PMD runs it.
    let w6 = w6_tables();
    established(&mut g, "vm_stateful_w6", &w6, w6_batches, false);
    let w8 = w8_tables();
    established(&mut g, "vm_to_vip_w8", &w8, w8_batches, false);
    // W6's answers, from the uplink to the stateful port, at 1,024 and 65,536 sessions.
    established(&mut g, "uplink_to_stateful_w6", &w6_tables(), w6_answers, true);
    established(&mut g, "uplink_to_stateful_w6_64k", &w6_tables_for(1 << 18), w6_answers_64k, true);
    // W7, with room in a table of 262,144 sessions, and with a full one of 65,536.
    w7(&mut g, "vm_new_sessions_w7", 1 << 18, true);
    w7(&mut g, "vm_new_sessions_w7_full", 1 << 16, false);
    for n in [0u32, 1024] {
        g.bench_with_input(BenchmarkId::new("sflow_sampler", n), &n, |b, &n| {
            let mut s = pipelines::sflow::Sampler::new(7);
            b.iter(|| {
                if n == 0 {
                    return 0; // sampling off: the loop is skipped
                }
                let mut k = 0;
                s.sample_burst(black_box(1), n, BURST, |_| k += 1);
                k
            })
        });
    }
    let _ = parse;
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
