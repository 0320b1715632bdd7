use super::*;
use crate::meta::ipv4_key;
use proptest::prelude::*;

fn pkt4(src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> Meta {
    Meta {
        ip_version: 4,
        ip_src: ipv4_key(src),
        ip_dst: ipv4_key(dst),
        proto,
        sport,
        dport,
        l4: 34,
        ..Default::default()
    }
}

fn rule(id: u32, priority: u32, src: Prefix, dst: Prefix, verdict: Verdict) -> Rule {
    Rule {
        id,
        priority,
        family: if src.len >= 96 || dst.len >= 96 { Family::V4 } else { Family::Any },
        src,
        dst,
        proto: None,
        sport: ANY_PORT,
        dport: ANY_PORT,
        icmp_type: None,
        verdict,
        counter: id,
    }
}

#[test]
fn priority_then_lower_id_wins() {
    let rules = vec![
        rule(1, 10, Prefix::v4(0x0a000000, 8), Prefix::ANY, Verdict::Allow),
        rule(2, 20, Prefix::v4(0x0a010000, 16), Prefix::ANY, Verdict::Deny),
        rule(3, 20, Prefix::v4(0x0a000000, 8), Prefix::ANY, Verdict::Allow),
    ];
    let c = Classifier::new(rules.clone());
    let m = pkt4(0x0a010203, 0x0b000001, 17, 1, 2);
    assert_eq!(c.classify(&m).map(|r| r.id), Some(2), "20 beats 10; at 20, id 2 beats id 3");
    assert_eq!(brute_force(&rules, &m).map(|r| r.id), Some(2));
    let other = pkt4(0x0a020203, 0x0b000001, 17, 1, 2);
    assert_eq!(c.classify(&other).map(|r| r.id), Some(3));
    assert_eq!(c.classify(&pkt4(0x0b000001, 0, 17, 1, 2)), None, "no match: the default applies");
    assert_eq!(c.classify(&Meta::default()), None, "non-IP never matches");
}

#[test]
fn ports_protocols_families_and_fragments() {
    let mut ssh = rule(1, 10, Prefix::ANY, Prefix::ANY, Verdict::Allow);
    ssh.proto = Some(6);
    ssh.dport = (22, 22);
    let mut icmp_echo = rule(2, 10, Prefix::ANY, Prefix::ANY, Verdict::Allow);
    icmp_echo.proto = Some(1);
    icmp_echo.icmp_type = Some(8);
    let v6 = rule(3, 5, Prefix::v6(0xfd00 << 112, 8), Prefix::ANY, Verdict::Deny);
    let v6 = Rule { family: Family::V6, ..v6 };
    let any6 = Rule { family: Family::V6, ..rule(4, 1, Prefix::ANY, Prefix::ANY, Verdict::Deny) };
    let c = Classifier::new(vec![ssh, icmp_echo, v6, any6]);
    assert_eq!(c.classify(&pkt4(1, 2, 6, 5000, 22)).map(|r| r.id), Some(1));
    assert_eq!(c.classify(&pkt4(1, 2, 6, 5000, 23)), None);
    assert_eq!(c.classify(&pkt4(1, 2, 17, 5000, 22)), None, "UDP/22 is not TCP/22");
    assert_eq!(c.classify(&pkt4(1, 2, 1, 8, 0)).map(|r| r.id), Some(2), "echo request");
    assert_eq!(c.classify(&pkt4(1, 2, 1, 0, 0)), None, "echo reply");
    let mut frag = pkt4(1, 2, 6, 0, 0);
    frag.l4 = 0;
    frag.fragment = true;
    assert_eq!(c.classify(&frag), None, "a fragment without ports matches no port rule");
    let mut p6 = pkt4(0, 0, 17, 1, 2);
    p6.ip_version = 6;
    p6.ip_src = 0xfd12 << 112;
    assert_eq!(c.classify(&p6).map(|r| r.id), Some(3));
    p6.ip_src = 0x2001 << 112;
    assert_eq!(c.classify(&p6).map(|r| r.id), Some(4), "::/0 for IPv6 only");
    assert_eq!(c.classify(&pkt4(0x0a000001, 2, 17, 1, 2)), None, "an IPv6 rule never matches IPv4");
}

/// Random rules with few distinct prefix lengths and values, so they overlap and nest.
fn arb_rule(id: u32) -> impl Strategy<Value = Rule> {
    let v4 = (0u32..4, prop::sample::select(vec![0u8, 8, 16, 24, 32]))
        .prop_map(|(a, l)| Prefix::v4(0x0a000000 | (a << 16) | a, l));
    let v6 = (0u128..4, prop::sample::select(vec![0u8, 16, 64, 128]))
        .prop_map(|(a, l)| Prefix::v6((0xfd00u128 << 112) | (a << 64) | a, l));
    let range =
        (0u16..8, 0u16..8)
            .prop_map(|(a, b)| if a == 0 && b == 7 { ANY_PORT } else { (a.min(b) * 10, a.max(b) * 10 + 5) });
    (
        prop::bool::ANY,
        v4.clone(),
        v4,
        v6.clone(),
        v6,
        prop::option::of(prop::sample::select(vec![1u8, 6, 17, 58])),
        range.clone(),
        range,
        0u32..6,
        prop::bool::ANY,
    )
        .prop_map(move |(is_v4, s4, d4, s6, d6, proto, sport, dport, priority, allow)| {
            let (src, dst, family) = if is_v4 { (s4, d4, Family::V4) } else { (s6, d6, Family::V6) };
            let l4 = matches!(proto, Some(6 | 17));
            Rule {
                id,
                priority,
                family,
                src,
                dst,
                proto,
                sport: if l4 { sport } else { ANY_PORT },
                dport: if l4 { dport } else { ANY_PORT },
                icmp_type: None, // set below, for ICMP rules
                verdict: if allow { Verdict::Allow } else { Verdict::Deny },
                counter: id,
            }
        })
        .prop_flat_map(move |r| {
            let icmp = matches!(r.proto, Some(1 | 58));
            (Just(r), prop::option::of(0u8..3)).prop_map(move |(mut r, t)| {
                r.icmp_type = if icmp { t } else { None };
                r
            })
        })
}

fn arb_packet() -> impl Strategy<Value = Meta> {
    (
        prop::bool::ANY,
        0u32..4,
        0u32..4,
        0u128..4,
        0u128..4,
        prop::sample::select(vec![1u8, 6, 17, 58, 47]),
        0u16..80,
        0u16..80,
        prop::bool::ANY,
    )
        .prop_map(|(v4, s4, d4, s6, d6, proto, sport, dport, frag)| {
            let mut m =
                Meta { proto, sport, dport, l4: if frag { 0 } else { 34 }, fragment: frag, ..Default::default() };
            if v4 {
                m.ip_version = 4;
                m.ip_src = ipv4_key(0x0a000000 | (s4 << 16) | s4);
                m.ip_dst = ipv4_key(0x0a000000 | (d4 << 16) | (d4 * 3));
            } else {
                m.ip_version = 6;
                m.ip_src = (0xfd00u128 << 112) | (s6 << 64) | s6;
                m.ip_dst = (0xfd00u128 << 112) | (d6 << 64) | (d6 * 5);
            }
            if matches!(proto, 1 | 58) {
                m.sport %= 3;
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_classifier_agrees_with_brute_force(
        rules in (1usize..60).prop_flat_map(|n| (0..n as u32).map(arb_rule).collect::<Vec<_>>()),
        packets in prop::collection::vec(arb_packet(), 1..40),
    ) {
        let c = Classifier::new(rules.clone());
        for m in &packets {
            let fast = c.classify(m).map(|r| r.id);
            let slow = brute_force(&rules, m).map(|r| r.id);
            prop_assert_eq!(fast, slow, "packet {:?}", m);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Packets with equal keys get the same answer, so answering a run of them from the
    /// first is exact; and the cached path agrees with brute force packet by packet.
    #[test]
    fn packets_with_equal_keys_get_the_same_answer(
        rules in (1usize..40).prop_flat_map(|n| (0..n as u32).map(arb_rule).collect::<Vec<_>>()),
        packets in prop::collection::vec(arb_packet(), 1..60),
    ) {
        let c = Classifier::new(rules.clone());
        for a in &packets {
            for b in &packets {
                if c.key(a) == c.key(b) {
                    prop_assert_eq!(c.classify(a).map(|r| r.id), c.classify(b).map(|r| r.id), "{:?} {:?}", a, b);
                }
            }
        }
        let mut ports: Vec<Option<std::sync::Arc<PortAcl>>> = (0..3).map(|_| None).collect();
        ports[2] = Some(std::sync::Arc::new(PortAcl { ingress: Classifier::new(rules.clone()), egress: Classifier::new(vec![]), default: Verdict::Deny }));
        let tables = AclTables { ports };
        // The last answer alone, a core's table, and a table of 4 (collisions on most).
        for mut cache in [AclCache::default(), AclCache::with_flows(), AclCache::sized(4)] {
            for _ in 0..2 {
                for m in &packets {
                    let want = brute_force(&rules, m).map_or((Verdict::Deny, None), |r| (r.verdict, Some(r.counter)));
                    prop_assert_eq!(tables.check_with(&mut cache, 2, Direction::In, m), want);
                    prop_assert_eq!(tables.check_with(&mut cache, 2, Direction::Out, m), (Verdict::Deny, None));
                }
            }
        }
    }

    /// A core's remembered answers never outlive the rules they came from: the same
    /// cache across a rule change answers as the new rules do.
    #[test]
    fn remembered_answers_follow_rule_changes(
        before in (1usize..30).prop_flat_map(|n| (0..n as u32).map(arb_rule).collect::<Vec<_>>()),
        after in (1usize..30).prop_flat_map(|n| (0..n as u32).map(arb_rule).collect::<Vec<_>>()),
        packets in prop::collection::vec(arb_packet(), 1..60),
    ) {
        let mut cache = AclCache::sized(16);
        for rules in [&before, &after, &before] {
            let acl = PortAcl { ingress: Classifier::new(rules.clone()), egress: Classifier::new(vec![]), default: Verdict::Allow };
            let tables = AclTables { ports: vec![Some(std::sync::Arc::new(acl))] };
            for m in &packets {
                let want = brute_force(rules, m).map_or((Verdict::Allow, None), |r| (r.verdict, Some(r.counter)));
                prop_assert_eq!(tables.check_with(&mut cache, 0, Direction::In, m), want);
            }
        }
    }
}

/// A core's table keeps an answer for each of 1,024 conversations that a group tells
/// apart by all five fields (W2-real's traffic): after the first round, nearly every
/// packet is answered from it, whatever id the classifier drew.
#[test]
fn a_core_remembers_a_thousand_conversations_a_group_tells_apart() {
    let flows: Vec<Meta> =
        (0..1024u32).map(|i| pkt4(0x0a01_0001, 0x0a01_0002 + i, 17, 1024 + i as u16, 5001)).collect();
    let mut worst = 0.0f64;
    for _ in 0..8 {
        let mut r = rule(1, 10, Prefix::v4(0xac10_0001, 32), Prefix::v4(0xc0a8_0001, 32), Verdict::Deny);
        (r.proto, r.sport, r.dport) = (Some(17), (7, 7), (9, 9));
        let c = Classifier::new(vec![r]);
        let mut cache = AclCache::with_flows();
        flows.iter().for_each(|m| assert_eq!(cache.rule(&c, m), None));
        let first = cache.misses();
        assert_eq!(first, 1024, "every conversation is new once");
        for _ in 0..10 {
            flows.iter().for_each(|m| assert_eq!(cache.rule(&c, m), None));
        }
        worst = worst.max((cache.misses() - first) as f64 / (10.0 * 1024.0));
    }
    assert!(worst < 0.02, "{:.1}% of packets missed after the first round", worst * 100.0);
}

#[test]
fn ten_thousand_rules_stay_in_few_tuples() {
    // The W2 shape: 9,999 denies on source /24 and a port, one allow of the lowest priority.
    let mut rules: Vec<Rule> = (0..9999u32)
        .map(|i| {
            let mut r = rule(
                i + 1,
                20000 + i,
                Prefix::v4(0xac100000 + ((16 + i / 250) << 16 | (i % 250) << 8) - (16 << 16), 24),
                Prefix::ANY,
                Verdict::Deny,
            );
            r.proto = Some(17);
            r.dport = (1000 + (i % 60000) as u16, 1000 + (i % 60000) as u16);
            r
        })
        .collect();
    rules.push(Rule { proto: Some(17), ..rule(10000, 1000, Prefix::ANY, Prefix::v4(0x0a010000, 16), Verdict::Allow) });
    let c = Classifier::new(rules.clone());
    assert_eq!(c.tuples.len(), 2);
    let m = pkt4(0x0a010001, 0x0a010002, 17, 1024, 5001);
    assert_eq!(c.classify(&m).map(|r| r.id), Some(10000));
    assert_eq!(brute_force(&rules, &m).map(|r| r.id), Some(10000));
}

#[test]
fn port_ranges_split_into_the_prefixes_that_cover_them() {
    assert_eq!(port_prefixes(ANY_PORT), vec![(0, 0)]);
    assert_eq!(port_prefixes((22, 22)), vec![(22, 16)]);
    assert_eq!(port_prefixes((1024, 65535)), vec![(1024, 6), (2048, 5), (4096, 4), (8192, 3), (16384, 2), (32768, 1)]);
    assert_eq!(port_prefixes((0x1000, 0x10ff)), vec![(0x1000, 8)]);
    // Every port of a range is in exactly one prefix, and no port outside it.
    for (lo, hi) in [(0, 0), (1, 65535), (10, 45), (65535, 65535), (1000, 2000)] {
        let ps = port_prefixes((lo, hi));
        for p in 0..=65535u16 {
            let n = ps.iter().filter(|(v, l)| p & port_mask(*l) == *v).count();
            assert_eq!(n, usize::from((lo..=hi).contains(&p)), "{lo}-{hi}: port {p}");
        }
    }
}

/// The anchors' W2-real shape: rules that each miss the traffic in one field (the
/// protocol, a port, a source-port block, other hosts) stay in a handful of tuples, so
/// the traffic probes a few buckets instead of walking the rules; answers agree with
/// brute force.
#[test]
fn near_miss_rules_do_not_make_a_linear_search() {
    let mut rules = Vec::new();
    for k in 0..10_000u32 {
        let mut r = rule(k + 1, 40000 - k, Prefix::v4(0x0a010000, 16), Prefix::ANY, Verdict::Deny);
        r.proto = Some(17);
        match k % 4 {
            0 => {
                r.src = Prefix::v4(0xac100000 | k, 32);
                r.dst = Prefix::v4(0xc0a80000 | k, 32);
                r.sport = (1024 + k as u16, 1024 + k as u16);
                r.dport = (k as u16 + 1, k as u16 + 1);
            }
            1 => {
                r.proto = Some(6);
                r.dst = Prefix::v4(0x0a010000 | (k % 256) << 8, 24);
                r.dport = (k as u16 + 1, k as u16 + 1);
            }
            2 => {
                r.src = Prefix::v4(0x0a010001, 32);
                r.dst = Prefix::v4(0x0a010000 | (2 + k % 1024), 32);
                r.dport = (6000 + k as u16, 6000 + k as u16);
            }
            _ => {
                let block = (0x10 + k % 240) as u16;
                r.sport = (block << 8, block << 8 | 0xff);
                r.dport = (5001, 5001);
            }
        }
        rules.push(r);
    }
    let mut hit = rule(20_000, 30_000, Prefix::v4(0x0a010000, 16), Prefix::v4(0x0a010000, 16), Verdict::Allow);
    hit.proto = Some(17);
    hit.dport = (5001, 5001);
    rules.push(hit);
    let c = Classifier::new(rules.clone());
    assert!(c.tuples.len() <= 6, "{} tuples", c.tuples.len());
    // The rules in every bucket a packet of the traffic probes (at most what it checks).
    let in_reach = |m: &Meta| -> usize {
        let rest = ports_proto(m.sport, m.dport, m.proto);
        c.tuples
            .iter()
            .filter_map(|t| t.table.get(&TupleKey(m.ip_src & t.src_mask, m.ip_dst & t.dst_mask, rest & t.rest_mask)))
            .map(Vec::len)
            .sum()
    };
    for i in 0..2000u32 {
        let m = pkt4(0x0a010001, 0x0a010002 + i % 1024, 17, 1024 + (i % 1024) as u16, 5001);
        assert!(in_reach(&m) <= 4, "{} rules in reach of {m:?}", in_reach(&m));
    }
    for i in 0..2000u32 {
        let m = pkt4(0x0a010001, 0x0a010002 + i % 1024, 17, 1024 + (i % 1024) as u16, 5001);
        assert_eq!(c.classify(&m).map(|r| r.id), Some(20_000));
        assert_eq!(brute_force(&rules, &m).map(|r| r.id), Some(20_000));
        let probe = pkt4(0x0a010001, 0x0a010002 + i % 1024, 17, 0x1000 + i as u16, 5001);
        assert_eq!(c.classify(&probe).map(|r| r.id), brute_force(&rules, &probe).map(|r| r.id));
    }
}
