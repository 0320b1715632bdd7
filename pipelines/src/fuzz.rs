//! The bodies of the fuzz targets (`fuzz/fuzz_targets/`). They live here so that
//! `cargo test` replays every target's corpus and every crash a fuzzer found
//! (`tests/fuzz_corpus.rs`). Each takes any bytes, must not panic, and checks what it
//! decided against a reference where there is one.
use crate::{
    acl::{brute_force, AclCache, AclTables, Classifier, Direction, Family, PortAcl, Prefix, Rule, Verdict},
    meta::{ipv4_key, Meta},
    parse::{parse as parse_frame, parse_any},
    tables::Vtep,
    vxlan,
    wire::{ethernet, ipv4, Mac},
};
use std::sync::Arc;

/// Bytes read off the front of the input; zeros once it runs out.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What `meta` says about where headers are must lie inside the frame.
fn check_offsets(frame: &[u8], m: &Meta) {
    if m.ip_version != 0 {
        assert!((m.l3 as usize) < frame.len(), "l3 {} beyond a {}-byte frame", m.l3, frame.len());
    }
    if m.l4 != 0 {
        assert!(m.l4 > m.l3 && (m.l4 as usize) < frame.len(), "l4 {} outside a {}-byte frame", m.l4, frame.len());
    }
}

/// The frame parser: the fixed-offset path for common frames says exactly what the
/// general parser says, and offsets stay inside the frame.
pub fn parse(data: &[u8]) {
    let (mut fast, mut general) = (Meta::default(), Meta::default());
    parse_frame(data, &mut fast);
    parse_any(data, &mut general);
    assert_eq!(fast, general, "the two parsers disagree on {data:02x?}");
    check_offsets(data, &fast);
}

/// VXLAN from the uplink, as the decap stage checks it. The first input byte can make
/// the frame address our VTEP (MAC, IP with a good header checksum, UDP port), so
/// the fuzzer reaches the VXLAN and inner headers instead of stopping at the outer
/// ones; a decapsulated frame is then parsed like any other.
pub fn vxlan_decap(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let vtep = Vtep {
        ip: 0x0a00_0001,
        mac: Mac([2, 0, 0, 0, 0, 1]),
        uplink: 0,
        udp_port: crate::wire::vxlan::DEFAULT_UDP_PORT,
        ttl: 64,
        mtu: 1500,
    };
    let mut frame = rest.to_vec();
    let l3 = ethernet::HEADER_LEN;
    if ctl & 1 != 0 && frame.len() >= l3 {
        frame[..6].copy_from_slice(&vtep.mac.0);
        frame[12..14].copy_from_slice(&ethernet::ETHERTYPE_IPV4.to_be_bytes());
    }
    if ctl & 2 != 0 {
        if let Some(ihl) = frame.get(l3..).and_then(ipv4::header_len) {
            if frame.len() >= l3 + ihl {
                frame[l3 + ipv4::DST..l3 + ipv4::DST + 4].copy_from_slice(&vtep.ip.to_be_bytes());
                frame[l3 + ipv4::PROTO] = ipv4::PROTO_UDP;
                frame[l3 + 10..l3 + 12].fill(0);
                let sum = crate::wire::checksum(crate::wire::ones_sum(&frame[l3..l3 + ihl]));
                frame[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
                if ctl & 4 != 0 && frame.len() >= l3 + ihl + 4 {
                    frame[l3 + ihl + 2..l3 + ihl + 4].copy_from_slice(&vtep.udp_port.to_be_bytes());
                }
            }
        }
    }
    let mut m = Meta::default();
    parse_frame(&frame, &mut m);
    // The VNIs we serve: a few, so that both answers are reachable.
    let serves = |vni: u32| vni % 3 == ctl as u32 % 3;
    if let Ok(d) = vxlan::check(&frame, frame.len(), &m, &vtep, serves) {
        assert!(serves(d.vni));
        assert!(d.inner_len >= ethernet::HEADER_LEN);
        let inner = frame.get(d.outer_len..d.outer_len + d.inner_len).expect("the inner frame is inside the frame");
        parse(inner);
    }
}

/// A rule from the input: any family, prefixes, protocol, port ranges, ICMP type.
fn rule(input: &mut Input, id: u32) -> Rule {
    let flags = input.u8();
    let family = match flags % 3 {
        0 => Family::Any,
        1 => Family::V4,
        _ => Family::V6,
    };
    let prefix = |input: &mut Input| {
        let len = input.u8();
        match family {
            Family::V6 => Prefix::v6((input.u32() as u128) << 96 | input.u32() as u128, len % 129),
            _ if len & 0x80 != 0 => Prefix::ANY,
            _ => Prefix::v4(input.u32(), len % 33),
        }
    };
    let src = prefix(input);
    let dst = prefix(input);
    let proto = (flags & 4 != 0).then(|| [6, 17, 1, 58, 0][input.u8() as usize % 5]);
    let range = |input: &mut Input| {
        let (a, b) = (input.u16(), input.u16());
        (a.min(b), a.max(b))
    };
    let l4 = matches!(proto, Some(6 | 17));
    let sport = if l4 && flags & 8 != 0 { range(input) } else { crate::acl::ANY_PORT };
    let dport = if l4 && flags & 16 != 0 { range(input) } else { crate::acl::ANY_PORT };
    let icmp_type = (matches!(proto, Some(1 | 58)) && flags & 32 != 0).then(|| input.u8());
    Rule {
        id,
        priority: input.u8() as u32 % 8,
        family,
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type,
        verdict: if flags & 64 != 0 { Verdict::Deny } else { Verdict::Allow },
        counter: id,
    }
}

/// A packet's metadata from the input: addresses near the rules', so they meet.
fn packet(input: &mut Input) -> Meta {
    let flags = input.u8();
    let v6 = flags & 1 != 0;
    let addr = |input: &mut Input| {
        if v6 {
            (input.u32() as u128) << 96 | input.u32() as u128
        } else {
            ipv4_key(input.u32())
        }
    };
    Meta {
        ip_version: if flags & 2 != 0 {
            0
        } else if v6 {
            6
        } else {
            4
        },
        ip_src: addr(input),
        ip_dst: addr(input),
        proto: [6, 17, 1, 58, 0][input.u8() as usize % 5],
        sport: input.u16(),
        dport: input.u16(),
        l4: if flags & 4 != 0 { 0 } else { 34 },
        fragment: flags & 4 != 0,
        ..Meta::default()
    }
}

/// The ACL classifier (tuple space search) against the brute-force reference, and a
/// core's remembered answers against asking afresh: any disagreement is a crash. The
/// answers are checked in a table of one entry (the trace's) and of four, where
/// conversations share sets and evict each other; a rule change between packets (the
/// first rule's verdict turned) makes a new classifier, whose packets an answer of the
/// old one must never decide.
pub fn acl_differential(data: &[u8]) {
    let mut input = Input(data);
    let n = input.u8() % 24;
    let mut rules: Vec<Rule> = (0..n as u32).map(|i| rule(&mut input, i + 1)).collect();
    let compile = |rules: &[Rule]| {
        let acl = PortAcl {
            ingress: Classifier::new(rules.to_vec()),
            egress: Classifier::new(vec![]),
            default: Verdict::Deny,
        };
        AclTables { ports: vec![Some(Arc::new(acl))] }
    };
    let mut tables = compile(&rules);
    let mut caches = [AclCache::default(), AclCache::sized(4)];
    while !input.is_empty() {
        if input.u8() == 0xff {
            if let Some(first) = rules.first_mut() {
                first.verdict = if first.verdict == Verdict::Allow { Verdict::Deny } else { Verdict::Allow };
                tables = compile(&rules);
            }
        }
        let m = packet(&mut input);
        let want = brute_force(&rules, &m);
        let fast = tables.ports[0].as_ref().and_then(|a| a.ingress.classify(&m));
        assert_eq!(fast.map(|r| r.id), want.map(|r| r.id), "classifier vs brute force on {m:?}");
        let want = if crate::acl::finds_neighbours(&m) {
            (Verdict::Allow, None)
        } else {
            (want.map_or(Verdict::Deny, |r| r.verdict), want.map(|r| r.counter))
        };
        for cache in &mut caches {
            assert_eq!(tables.check_with(cache, 0, Direction::In, &m), want, "remembered answer on {m:?}");
        }
    }
}

/// The ports of the pipeline target: two VM ports in VNI 100, one in VNI 200, the uplink.
pub const VM_PORTS: [(crate::PortId, u32); 3] = [(1, 100), (2, 100), (3, 200)];
pub const UPLINK: crate::PortId = 9;
const REMOTE: u32 = 0x0a00_0002;

/// Tables from the input: the networks above, a VTEP, FIB entries for a few MACs (to a
/// local port or a remote VTEP) and security groups on the VM ports.
pub fn tables(input: &mut Input) -> crate::tables::L2Tables {
    use crate::tables::{FibEntry, FibTarget, L2Tables, Network, Remote};
    let mut t = L2Tables::default();
    t.networks.insert(100, Network { vni: 100, ports: vec![1, 2], flood_vteps: vec![REMOTE], ..Default::default() });
    t.networks.insert(200, Network { vni: 200, ports: vec![3], flood_vteps: vec![], ..Default::default() });
    let vtep =
        Vtep { ip: 0x0a00_0001, mac: Mac([2, 0, 0, 0, 0, 0xf0]), uplink: UPLINK, udp_port: 4789, ttl: 64, mtu: 1500 };
    t.vtep = Some(vtep);
    t.remotes.insert(REMOTE, Remote::new(&vtep, REMOTE, Mac([2, 0, 0, 0, 0, 0xee])));
    t.port_mtu = vec![1500; 16];
    // A gateway on network 100, and endpoints at 10.0.0.x / fd00::x (the addresses a
    // small input names).
    let gw = input.u8();
    if gw & 1 != 0 {
        if let Some(n) = t.networks.get_mut(&100) {
            n.gateway = crate::gateway::GatewayAddrs {
                v4: Some(0x0a00_0000 | (gw >> 4) as u32),
                v6: Some(0xfd00 << 112 | (gw >> 4) as u128),
            };
        }
    }
    let mut eps = crate::gateway::Endpoints::default();
    for _ in 0..input.u8() % 4 {
        let (vni, host, m) = ([100, 200][input.u8() as usize % 2], input.u8() % 8, input.u8() % 8);
        let ip =
            if m & 4 != 0 { 0xfd00 << 112 | host as u128 } else { crate::meta::ipv4_key(0x0a00_0000 | host as u32) };
        eps.insert(vni, ip, crate::gateway::Endpoint { mac: Mac([2, 0, 0, 0, 0, m]) });
    }
    t.endpoints = Arc::new(eps);
    // As the control plane builds them: a FIB entry names a VM port of its own network
    // (or a remote VTEP).
    for _ in 0..input.u8() % 8 {
        let (vni, mac, to) = ([100, 200][input.u8() as usize % 2], Mac([2, 0, 0, 0, 0, input.u8() % 8]), input.u8());
        let local: Vec<crate::PortId> = VM_PORTS.iter().filter(|&&(_, v)| v == vni).map(|&(p, _)| p).collect();
        let target = match to as usize % (local.len() + 1) {
            i if i < local.len() => FibTarget::Port(local[i]),
            _ => FibTarget::Vtep(REMOTE),
        };
        t.fib_insert(vni, mac, FibEntry { target, is_static: to & 8 != 0 });
    }
    let mut ports: Vec<Option<Arc<PortAcl>>> = vec![None; 16];
    for (port, _) in VM_PORTS {
        let n = input.u8() % 6;
        if n == 0 {
            continue;
        }
        let rules: Vec<Rule> = (0..n as u32).map(|i| rule(input, i + 1)).collect();
        let (ingress, egress) = rules.split_at(rules.len() / 2);
        let default = if input.u8() & 1 != 0 { Verdict::Deny } else { Verdict::Allow };
        ports[port as usize] = Some(Arc::new(PortAcl {
            ingress: Classifier::new(ingress.to_vec()),
            egress: Classifier::new(egress.to_vec()),
            default,
        }));
    }
    t.acl = Arc::new(AclTables { ports });
    t
}

/// The pipeline target's tables, plus connection tracking on the VM ports the input
/// makes stateful and, maybe, a service on network 100 (VIP 10.0.0.100:80, TCP or UDP,
/// backends among the endpoints' addresses, also at node port 30080 of the VTEP's
/// address): what `trace` is checked against.
pub fn stateful_tables(input: &mut Input) -> crate::tables::L2Tables {
    use crate::{
        conntrack::{CtPort, CtTable, CtTables},
        services::{counters::BackendCounters, maglev::Maglev, Backend, Service, ServiceTables},
    };
    let mut t = tables(input);
    let mut ports = vec![None; 16];
    for (p, _) in VM_PORTS {
        let c = input.u8();
        if c & 1 != 0 {
            let max_sessions = if c & 16 != 0 { 2 } else { 0 };
            ports[p as usize] =
                Some(CtPort { liberal: c & 2 != 0, sticky: c & 4 != 0, pickup: c & 8 != 0, max_sessions, epoch: 1 });
        }
    }
    // A ring of 16 events: a batch fills it (the default ring is 300 KB to clear per input).
    // (A fixed hash key: an input meets the same buckets every run.)
    let table = CtTable::with_memory(64, 1, 16, 16, |_, _| 0).keyed(crate::conntrack::table::HashKey::FIXED);
    t.ct = Arc::new(CtTables { table: Some(Arc::new(table)), ports, dry: false });
    let n = input.u8() % 4;
    if n > 0 {
        let proto = if input.u8() & 1 != 0 { 17 } else { 6 };
        let backends: Vec<Backend> =
            (0..n).map(|_| Backend { ip: ipv4_key(0x0a00_0000 | (input.u8() % 8) as u32), port: 8080 }).collect();
        let keys: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
        let weighted: Vec<(&[u8], u32)> = keys.iter().map(|k| (k.as_bytes(), 1)).collect();
        let vip = (ipv4_key(0x0a00_0064), 80);
        let service = Arc::new(Service::new(1, 100, vip, proto, backends, Maglev::build(251, &weighted)));
        let mut s = ServiceTables::default();
        s.insert(service, &t.endpoints, Arc::new(BackendCounters::new(n as usize, 1)), Some((30080, None)));
        t.services = Arc::new(s);
    }
    t
}

/// The ports a batch comes from: a VM port (and its VNI), or the uplink (None).
pub fn source(ctl: u8) -> Option<(crate::PortId, u32)> {
    (ctl % 4 != 3).then(|| VM_PORTS[ctl as usize % 4])
}

/// A frame of the input as it arrives at `from`: from the uplink, wrapped in VXLAN from
/// the remote VTEP when `wrap` (`len` picks the VNI: ours, the other, or none we serve).
pub fn arriving(
    t: &crate::tables::L2Tables,
    from: Option<(crate::PortId, u32)>,
    wrap: bool,
    len: usize,
    frame: &[u8],
) -> Vec<u8> {
    match (from, wrap, t.vtep) {
        (None, true, Some(vtep)) => {
            vxlan::build(Mac([2, 0, 0, 0, 0, 0xee]), vtep.mac, REMOTE, &vtep, [100, 200, 7][len % 3], frame)
        }
        _ => frame.to_vec(),
    }
}

/// One batch through the VM or uplink stages, as the PMD loop runs them (a VM port's
/// parse marks frames that repeat the one before, as there), on a core whose state
/// (meters, learning, the rules' answer cache) is `core`.
pub fn run_batch(
    t: &crate::tables::L2Tables,
    from: Option<(crate::PortId, u32)>,
    pkts: &[Vec<u8>],
    core: &mut crate::stages::PerCore,
) -> Vec<(Meta, Vec<u8>)> {
    use crate::stages::{from_uplink, from_vm, parse_batch, parse_vm_batch, Ctx};
    let mut frames: Vec<crate::VecFrame> = pkts.iter().map(|p| crate::VecFrame::new(p)).collect();
    let mut meta = vec![Meta::default(); frames.len()];
    let mut events = Vec::new();
    let ctx = Ctx { tables: t, clock: crate::clock::Clock { now: 0, hz: 1000 } };
    match from {
        Some((port, vni)) => {
            parse_vm_batch(t, port, vni, &frames, &mut meta);
            from_vm(&ctx, port, vni, &mut frames, &mut meta, core, &mut events)
        }
        None => {
            parse_batch(&frames, &mut meta);
            from_uplink(&ctx, UPLINK, &mut frames, &mut meta, core, &mut events)
        }
    }
    meta.into_iter().zip(frames.iter().map(|f| f.bytes().to_vec())).collect()
}

/// Meters on the VM ports and the uplink from the input: srTCM or trTCM, in bytes or
/// packets, with buckets a few packets deep so a batch runs them dry, and yellow and
/// red passed, remarked or dropped; maybe an outer DSCP. The clock stands still, so
/// what a meter decides depends only on the packets before.
fn meters(input: &mut Input) -> crate::qos::QosTables {
    use crate::qos::{ColorAction, MeterConfig, Mode, PortQos, QosTables, Unit};
    let meter = |input: &mut Input| {
        let c = input.u8();
        (c & 1 != 0).then(|| {
            let unit = if c & 2 != 0 { Unit::Packets } else { Unit::Bytes };
            let scale = if unit == Unit::Packets { 1 } else { 100 };
            let (a, b) = (input.u8() as u64 % 8 * scale, input.u8() as u64 % 8 * scale);
            let mode = if c & 4 != 0 {
                Mode::TrTcm { cir: 1, cbs: a, pir: 2, pbs: a + b }
            } else {
                Mode::SrTcm { cir: 1, cbs: a, ebs: b }
            };
            let action = |x: u8| match x % 3 {
                0 => ColorAction::Pass,
                1 => ColorAction::Remark(x >> 2 & 63),
                _ => ColorAction::Drop,
            };
            MeterConfig { unit, mode, yellow: action(c >> 3), red: action(input.u8()) }
        })
    };
    let mut ports = vec![PortQos::default(); 16];
    for p in VM_PORTS.iter().map(|&(p, _)| p).chain([UPLINK]) {
        let (ingress, egress) = (meter(input), meter(input));
        let outer_dscp = input.u8().checked_sub(192).map(|d| d & 63);
        ports[p as usize] = PortQos { ingress, egress, outer_dscp, version: 1 };
    }
    QosTables { ports }
}

/// The pipeline target's tables: the stateful ones (security groups, connection
/// tracking, a service) with meters.
fn metered_tables(input: &mut Input) -> crate::tables::L2Tables {
    let mut t = stateful_tables(input);
    t.qos = Arc::new(meters(input));
    t
}

/// The whole VM and uplink pipelines on a random batch against random tables (security
/// groups, FIB, gateway, connection tracking, a service, meters): every packet is
/// decided (sent to a port that exists, flooded, punted or dropped with a reason), and
/// a batch gets exactly what its packets get one after another, each a batch of its
/// own, on a second copy of the same tables and core state (sessions, meter buckets
/// and learning carried from one to the next, as between a core's bursts). From the
/// uplink, the input's frames can be wrapped in VXLAN from the remote VTEP, so decap
/// and what follows it are reached.
pub fn pipeline(data: &[u8]) {
    use crate::{meta::Action, stages::PerCore};
    let mut input = Input(data);
    let t = metered_tables(&mut input);
    let ctl = input.u8();
    let from = source(ctl);
    let mut pkts = Vec::new();
    while !input.is_empty() && pkts.len() < crate::BURST {
        let len = input.u8() as usize;
        let take = len.min(input.0.len());
        let (frame, rest) = input.0.split_at(take);
        input.0 = rest;
        pkts.push(arriving(&t, from, ctl & 4 != 0, len, frame));
    }
    let batch = run_batch(&t, from, &pkts, &mut PerCore::default());
    for (i, (m, _)) in batch.iter().enumerate() {
        match m.action {
            Action::Tx(p) => assert!(p == UPLINK || VM_PORTS.iter().any(|&(v, _)| v == p), "packet {i} to port {p}"),
            Action::Continue => panic!("packet {i} left undecided"),
            Action::Drop(_) | Action::Flood { .. } | Action::Punt => {}
        }
    }
    let again = metered_tables(&mut Input(data));
    let mut core = PerCore::default();
    for (i, p) in pkts.iter().enumerate() {
        let alone = &run_batch(&again, from, std::slice::from_ref(p), &mut core)[0];
        // A frame that repeats the one before it (its first bytes) may keep that one's
        // metadata, not its own: only what happens to it must be the same.
        let repeats = i > 0 && p.get(..crate::stages::REPEAT_BYTES).is_some_and(|h| pkts[i - 1].starts_with(h));
        if repeats {
            assert_eq!(
                (alone.0.action, &alone.1),
                (batch[i].0.action, &batch[i].1),
                "packet {i} on its own and in its batch"
            );
        } else {
            assert_eq!(*alone, batch[i], "packet {i} on its own and in its batch");
        }
    }
}

/// A virtio-net header (10 bytes, or the tunnel header's 24 when the first byte is odd)
/// and a frame, as a kernel port reads them: the header is decoded against the frame,
/// and what it asks for is done (segmentation into at most 64 frames, or the checksum
/// completed). Nothing may panic; segments must hold the payload exactly once, with a
/// good IPv4 header checksum; a decoded header must encode back to itself.
pub fn offload(data: &[u8]) {
    use crate::offload::{self, vnet, SegmentSink};
    use crate::{Frame, VecFrame};
    let Some((&ctl, rest)) = data.split_first() else { return };
    let hlen = if ctl & 1 != 0 { vnet::TUNNEL_LEN } else { vnet::LEN };
    if rest.len() < hlen {
        return;
    }
    let (hdr, frame) = rest.split_at(hlen);
    let h = vnet::Header::parse(hdr);
    // Bit 1: the frame's offsets read from its headers, as a driver's partial or
    // coalesced mark (bit 2) asks; else from the virtio-net header.
    let o = if ctl & 2 != 0 { offload::partial(frame, (ctl & 4 != 0).then_some(h.gso_size)) } else { h.offload(frame) };
    let Ok(o) = o else { return };
    if o.gso.is_none() {
        let back = vnet::Header::of(&o, frame.len(), false).expect("a decoded header encodes");
        assert_eq!(back.offload(frame), Ok(o), "{h:?} decodes to {o:?}, encodes to {back:?}");
    }
    let _ = o.decapsulated(crate::wire::vxlan::OUTER_LEN, 14);
    let mut f = VecFrame::new(frame);
    f.set_offload(o);
    if o.gso.is_none() {
        let _ = offload::complete_checksum(&mut f, &o);
        return;
    }
    struct Out(Vec<VecFrame>);
    impl SegmentSink for Out {
        type Out = VecFrame;
        fn alloc(&mut self) -> Option<VecFrame> {
            (self.0.len() < 64).then(|| VecFrame::new(&[]))
        }
        fn emit(&mut self, f: VecFrame) {
            self.0.push(f);
        }
        fn discard(&mut self, _: VecFrame) {}
    }
    let mut out = Out(Vec::new());
    let Ok(done) = offload::segment(&f, &o, &mut out) else { return };
    let hl = o.header_len();
    let payload: Vec<u8> = out.0.iter().flat_map(|s| s.bytes()[hl..].to_vec()).collect();
    if done.short.is_none() {
        assert_eq!(payload, frame[hl..], "the segments carry the payload exactly once");
    }
    let ip = (o.outer + o.l2) as usize;
    for s in &out.0 {
        let b = s.bytes();
        if b[ip] >> 4 == 4 {
            let ihl = o.l3 as usize;
            assert_eq!(crate::wire::checksum(crate::wire::ones_sum(&b[ip..ip + ihl])), 0, "IPv4 header checksum");
        }
    }
    if o.outer == 0 && done.short.is_none() {
        coalesced_back(out.0, ctl, frame);
    }
}

/// Coalescing (GRO) the segments `segment` made, after losing, corrupting or swapping
/// one as bits 3-4 of `ctl` say, gives frames that segment back into exactly the
/// segments it was given, in their order.
fn coalesced_back(mut segs: Vec<crate::VecFrame>, ctl: u8, frame: &[u8]) {
    use crate::offload::{self, GroTarget, SegmentSink};
    use crate::{Frame, VecFrame};
    let pick = frame.last().map_or(0, |&b| b as usize) % segs.len();
    match (ctl >> 3) & 3 {
        1 => {
            segs.remove(pick);
        }
        2 => {
            let f = &mut segs[pick];
            let at = frame.first().map_or(0, |&b| b as usize) % f.len();
            f.head_mut()[at] ^= 0x20;
        }
        3 => {
            let other = (pick + 1) % segs.len();
            segs.swap(pick, other);
        }
        _ => {}
    }
    let want: Vec<Vec<u8>> = segs.iter().map(|s| s.bytes().to_vec()).collect();
    let t = GroTarget { tso4: true, tso6: true, max_segs: 64, max_len: u16::MAX as usize + 14 };
    let n = offload::coalesce(&mut segs, &t);
    struct Out(Vec<Vec<u8>>);
    impl SegmentSink for Out {
        type Out = VecFrame;
        fn alloc(&mut self) -> Option<VecFrame> {
            Some(VecFrame::new(&[]))
        }
        fn emit(&mut self, f: VecFrame) {
            self.0.push(f.bytes().to_vec());
        }
        fn discard(&mut self, _: VecFrame) {}
    }
    let mut got = Out(Vec::new());
    for f in &segs[..n] {
        let o = f.offload();
        if o.gso.is_some() {
            let done = offload::segment(f, &o, &mut got).expect("a coalesced frame segments");
            assert_eq!(done.short, None);
        } else {
            got.0.push(f.bytes().to_vec());
        }
    }
    assert_eq!(got.0, want, "coalesced, then segmented again");
}
