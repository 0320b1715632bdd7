//! Each stage on a batch of 32 packets of the benchmark traffic (BENCHMARKS.md: 64-byte
//! UDP frames from a VM, 1,024 flows). Figures are per batch; divide by 32 per packet.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pipelines::{
    acl::{AclTables, Classifier, Direction, Family, PortAcl, Prefix, Rule, Verdict, ANY_PORT},
    learn::Clock,
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
    let mut t = L2Tables::default();
    t.networks
        .insert(100, Network { vni: 100, ports: vec![1, 2], flood_vteps: vec![0x0a000002], ..Default::default() });
    t.vtep = Some(vtep());
    t.remotes.insert(0x0a000002, Remote::new(&vtep(), 0x0a000002, Mac([2, 0, 0, 0, 0, 2])));
    t.fib_insert(100, DST, FibEntry { target: FibTarget::Vtep(0x0a000002), is_static: true });
    t.fib_insert(100, VM, FibEntry { target: FibTarget::Port(1), is_static: false });
    t.port_mtu = vec![1500; 16];
    if acl_rules > 0 {
        let mut ports: Vec<Option<std::sync::Arc<PortAcl>>> = (0..16).map(|_| None).collect();
        ports[1] = Some(std::sync::Arc::new(PortAcl {
            ingress: Classifier::new(w2_rules(acl_rules)),
            egress: Classifier::new(vec![]),
            default: Verdict::Deny,
        }));
        t.acl = Arc::new(AclTables { ports });
    }
    t
}

fn batch() -> (Vec<VecFrame>, Vec<Meta>) {
    let frames: Vec<VecFrame> = (0..BURST).map(|i| VecFrame::new(&frame(i * 31))).collect();
    let mut meta = vec![Meta::default(); BURST];
    stages::parse_batch(&frames, &mut meta);
    (frames, meta)
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
