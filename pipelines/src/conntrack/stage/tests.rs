use super::*;
use crate::{acl::Verdict, parse::parse, VecFrame};

thread_local! {
    /// Packets `held_here` took, on this test's thread.
    pub(super) static HELD_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

const VM1: [u8; 4] = [10, 0, 0, 1];
const VM2: [u8; 4] = [10, 0, 0, 2];

/// An Ethernet + IPv4 frame around `l4`.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

#[allow(clippy::too_many_arguments)]
fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, seq: u32, ack: u32, len: usize) -> Vec<u8> {
    let mut h = vec![0u8; 20 + len];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[8..12].copy_from_slice(&ack.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&65535u16.to_be_bytes());
    ipv4(src, dst, 6, &h)
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut h = vec![0u8; 8 + 10];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&18u16.to_be_bytes());
    ipv4(src, dst, 17, &h)
}

fn icmp(src: [u8; 4], dst: [u8; 4], ty: u8, id: u16, quoted: &[u8]) -> Vec<u8> {
    let mut h = vec![ty, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
    h.extend_from_slice(quoted);
    ipv4(src, dst, 1, &h)
}

struct Rig {
    table: CtTable,
    cfg: CtPort,
    /// The port's rules: allow what leaves the VM, deny what comes to it.
    rules: fn(Direction, &Meta) -> AclAnswer,
    now: u32,
}

fn outbound_only(d: Direction, _: &Meta) -> AclAnswer {
    match d {
        Direction::In => (Verdict::Allow, Some(7)),
        Direction::Out => (Verdict::Deny, None),
    }
}

impl Rig {
    fn new() -> Rig {
        Rig {
            table: CtTable::new(1024, 2, 8),
            cfg: CtPort { epoch: 1, ..CtPort::default() },
            rules: outbound_only,
            now: 1000,
        }
    }

    /// Packet `bytes` at VM2's port (stateful) in `dir`, on `core`.
    fn at(&self, dir: Direction, core: usize, bytes: Vec<u8>) -> Result<Option<u32>, DropReason> {
        let f = VecFrame::new(&bytes);
        let mut m = Meta::default();
        parse(&bytes, &mut m);
        m.vni = 100;
        let cp = Checkpoint {
            table: &self.table,
            port: 2,
            cfg: &self.cfg,
            dir,
            core,
            now: self.now,
            dry: false,
            nat: None,
            found: None,
        };
        let (hit, pass) = decide(&cp, &f, &mut m, self.rules);
        pass.map(|()| hit)
    }

    fn out(&self, bytes: Vec<u8>) -> Result<Option<u32>, DropReason> {
        self.at(Direction::In, 0, bytes)
    }

    fn back(&self, bytes: Vec<u8>) -> Result<Option<u32>, DropReason> {
        self.at(Direction::Out, 1, bytes)
    }
}

#[test]
fn outbound_connections_get_their_replies_and_inbound_ones_are_refused() {
    let r = Rig::new();
    use super::super::tcp::{ACK, FIN, RST, SYN};
    // VM2 connects out: the rule decides its SYN; replies pass with no rule asked.
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, SYN, 100, 0, 0)), Ok(Some(7)));
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, SYN | ACK, 900, 101, 0)), Ok(None));
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, ACK, 101, 901, 0)), Ok(None));
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, ACK, 901, 101, 1000)), Ok(None));
    // Out of window: invalid, whichever way.
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, ACK, 901 + 10_000_000, 101, 10)), Err(DropReason::CtInvalid));
    // VM1 connecting in: its SYN meets the rules (deny); a stray ACK or SYN+ACK is invalid.
    assert_eq!(r.back(tcp(VM1, 5555, VM2, 22, SYN, 1, 0, 0)), Err(DropReason::AclDenyOut));
    assert_eq!(r.back(tcp(VM1, 5556, VM2, 22, ACK, 1, 1, 0)), Err(DropReason::CtInvalid));
    assert_eq!(r.back(tcp(VM1, 5557, VM2, 22, SYN | ACK, 1, 1, 0)), Err(DropReason::CtInvalid));
    // Close.
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, FIN | ACK, 101, 1901, 0)), Ok(None));
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, FIN | ACK, 1901, 102, 0)), Ok(None));
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, ACK, 102, 1902, 0)), Ok(None));
    let v = r.table.sessions().next().unwrap();
    assert_eq!(v.tcp, TcpState::TimeWait);
    assert_eq!(v.packets, [4, 3]);
    // Once closing, any RST ends it, as in netfilter: the numbers are not checked.
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, RST, 5, 0, 0)), Ok(None));
    assert_eq!(r.table.sessions().next().unwrap().tcp, TcpState::Close);
    // Before that, a RST far outside the window ends nothing (here on a new connection).
    assert_eq!(r.out(tcp(VM2, 40001, VM1, 80, SYN, 100, 0, 0)), Ok(Some(7)));
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40001, SYN | ACK, 900, 101, 0)), Ok(None));
    assert_eq!(r.out(tcp(VM2, 40001, VM1, 80, ACK, 101, 901, 0)), Ok(None));
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40001, RST, 901 + 10_000_000, 0, 0)), Err(DropReason::CtInvalid));
}

#[test]
fn a_reset_off_the_edge_keeps_the_connection_until_the_close_timeout() {
    use super::super::tcp::{ACK, RST, SYN};
    let mut r = Rig::new();
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, SYN, 100, 0, 0)), Ok(Some(7)));
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, SYN | ACK, 900, 101, 0)), Ok(None));
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, ACK, 101, 901, 0)), Ok(None));
    // In the window, not where VM2 acknowledged (901): it passes, the connection stays,
    // and VM2's challenge ACK puts it back on the established timeout.
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, RST, 2000, 0, 0)), Ok(None));
    assert_eq!(r.table.sessions().next().unwrap().tcp, TcpState::Established);
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, ACK, 101, 901, 0)), Ok(None));
    r.now += 3_600_000;
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, ACK | super::super::tcp::PSH, 101, 901, 10)), Ok(None));
    // Another, unanswered: past the close timeout (10 s) the connection is gone, though
    // its owner's wheel has not come round to it.
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, RST, 3000, 0, 0)), Ok(None));
    r.now += 9_000;
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, ACK, 900 + 1, 111, 0)), Ok(None));
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, RST, 4000, 0, 0)), Ok(None));
    r.now += 11_000;
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, ACK, 111, 901, 0)), Err(DropReason::CtInvalid));
    assert_eq!(r.table.sessions().count(), 0);
}

#[test]
fn an_answered_udp_flow_past_its_timeout_is_gone_before_its_wheel_frees_it() {
    let mut r = Rig::new();
    assert_eq!(r.out(udp(VM2, 5353, VM1, 53)), Ok(Some(7)));
    assert_eq!(r.back(udp(VM1, 53, VM2, 5353)), Ok(None));
    // Answered: a millisecond short of 120 s unused (udp_stream) still passes...
    r.now += 119_999;
    assert_eq!(r.back(udp(VM1, 53, VM2, 5353)), Ok(None));
    // ...120 s does not: from its deadline on, the answer is a new connection the rules
    // refuse, as the kernel's lookup skips an expired entry (no wheel has run here).
    r.now += 120_000;
    assert_eq!(r.back(udp(VM1, 53, VM2, 5353)), Err(DropReason::AclDenyOut));
    // An error about it is related to nothing; VM2's next datagram opens a new one.
    let quoted = &udp(VM2, 5353, VM1, 53)[14..14 + 28];
    assert_eq!(r.back(icmp(VM1, VM2, 3, 0, quoted)), Err(DropReason::CtInvalid));
    assert_eq!(r.out(udp(VM2, 5353, VM1, 53)), Ok(Some(7)));
    assert_eq!(r.back(udp(VM1, 53, VM2, 5353)), Ok(None));
    assert_eq!(r.table.sessions().filter(|v| !v.expired(r.now)).count(), 1);
}

#[test]
fn an_established_tcp_connection_past_its_timeout_is_gone_on_the_fast_path() {
    use super::super::tcp::{ACK, PSH, SYN};
    let mut r = Rig::new();
    r.table.timeouts.set("tcp_established", 60);
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, SYN, 100, 0, 0)), Ok(Some(7)));
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, SYN | ACK, 900, 101, 0)), Ok(None));
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, ACK, 101, 901, 0)), Ok(None));
    r.now += 59_999;
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, ACK | PSH, 901, 101, 10)), Ok(None));
    // Filed in its owner's wheel 32 ticks ahead at most, it would pass for up to 33 s
    // more; as in netfilter it is gone from its deadline on, and a stray ACK is invalid.
    r.now += 60_000;
    assert_eq!(r.back(tcp(VM1, 80, VM2, 40000, ACK | PSH, 911, 101, 10)), Err(DropReason::CtInvalid));
    assert_eq!(r.out(tcp(VM2, 40000, VM1, 80, ACK, 101, 921, 0)), Err(DropReason::CtInvalid));
}

#[test]
fn udp_icmp_echo_and_related_errors() {
    let r = Rig::new();
    assert_eq!(r.out(udp(VM2, 5353, VM1, 53)), Ok(Some(7)));
    assert_eq!(r.back(udp(VM1, 53, VM2, 5353)), Ok(None));
    assert_eq!(r.back(udp(VM1, 53, VM2, 5354)), Err(DropReason::AclDenyOut));
    // Echo by id: the reply passes, a reply nobody asked for is invalid.
    assert_eq!(r.out(icmp(VM2, VM1, 8, 77, &[])), Ok(Some(7)));
    assert_eq!(r.back(icmp(VM1, VM2, 0, 77, &[])), Ok(None));
    assert_eq!(r.back(icmp(VM1, VM2, 0, 78, &[])), Err(DropReason::CtInvalid));
    // An error about VM2's UDP datagram is related; about another flow, invalid.
    let quoted = &udp(VM2, 5353, VM1, 53)[14..14 + 28];
    assert_eq!(r.back(icmp(VM1, VM2, 3, 0, quoted)), Ok(None));
    let other = &udp(VM2, 9999, VM1, 53)[14..14 + 28];
    assert_eq!(r.back(icmp(VM1, VM2, 3, 0, other)), Err(DropReason::CtInvalid));
}

#[test]
fn a_rule_change_rechecks_sessions_unless_sticky() {
    let mut r = Rig::new();
    assert_eq!(r.out(udp(VM2, 1000, VM1, 53)), Ok(Some(7)));
    assert_eq!(r.back(udp(VM1, 53, VM2, 1000)), Ok(None));
    // The port's rules change: now nothing may leave.
    r.rules = |_, _| (Verdict::Deny, None);
    r.cfg.epoch = 2;
    assert_eq!(r.back(udp(VM1, 53, VM2, 1000)), Err(DropReason::AclDenyOut));
    assert_eq!(r.out(udp(VM2, 1000, VM1, 53)), Err(DropReason::AclDenyIn));
    // ...and back: allowed again at the next epoch.
    r.rules = outbound_only;
    r.cfg.epoch = 3;
    assert_eq!(r.back(udp(VM1, 53, VM2, 1000)), Ok(None));
    // Sticky: a change does not touch sessions.
    r.rules = |_, _| (Verdict::Deny, None);
    r.cfg.epoch = 4;
    r.cfg.sticky = true;
    assert_eq!(r.back(udp(VM1, 53, VM2, 1000)), Ok(None));
}

/// `bytes` as an IPv4 fragment: `id`, offset in 8-byte units, more fragments or not.
fn as_fragment(mut bytes: Vec<u8>, id: u16, offset: u16, more: bool) -> Vec<u8> {
    bytes[14 + 4..14 + 6].copy_from_slice(&id.to_be_bytes());
    let bits = offset | if more { 0x2000 } else { 0 };
    bytes[14 + 6..14 + 8].copy_from_slice(&bits.to_be_bytes());
    bytes
}

#[test]
fn later_fragments_follow_their_first() {
    let r = Rig::new();
    // A later fragment with no first before it.
    assert_eq!(r.out(as_fragment(udp(VM2, 1, VM1, 2), 9, 16, false)), Err(DropReason::CtInvalid));
    // The first passes (the rules allow it out), so the rest of its datagram does.
    assert_eq!(r.out(as_fragment(udp(VM2, 1, VM1, 2), 10, 0, true)), Ok(Some(7)));
    assert_eq!(r.out(as_fragment(udp(VM2, 1, VM1, 2), 10, 16, true)), Ok(None));
    assert_eq!(r.out(as_fragment(udp(VM2, 1, VM1, 2), 10, 32, false)), Ok(None));
    // Inbound: the first is refused, and so are the later ones; nor do VM2's follow
    // the other way.
    assert_eq!(r.back(as_fragment(udp(VM1, 7, VM2, 8), 11, 0, true)), Err(DropReason::AclDenyOut));
    assert_eq!(r.back(as_fragment(udp(VM1, 7, VM2, 8), 11, 16, false)), Err(DropReason::CtInvalid));
    assert_eq!(r.back(as_fragment(udp(VM1, 7, VM2, 8), 10, 16, false)), Err(DropReason::CtInvalid));
    // A TCP fragment at offset 8 bytes could rewrite the flags its first showed.
    use super::super::tcp::SYN;
    assert_eq!(r.out(as_fragment(tcp(VM2, 3, VM1, 4, SYN, 0, 0, 0), 12, 0, true)), Ok(Some(7)));
    assert_eq!(r.out(as_fragment(tcp(VM2, 3, VM1, 4, SYN, 0, 0, 0), 12, 1, false)), Err(DropReason::CtInvalid));
}

/// An Ethernet + IPv6 frame from fd00::`src` to fd00::`dst` with a fragment header
/// (identification `id`, `offset` in 8-byte units); the first fragment carries UDP
/// ports `sport` and `dport`.
fn udp6_fragment(src: u8, sport: u16, dst: u8, dport: u16, id: u32, offset: u16, more: bool) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
    let payload: Vec<u8> = if offset == 0 {
        [sport.to_be_bytes(), dport.to_be_bytes(), 24u16.to_be_bytes(), [0, 0]]
            .concat()
            .into_iter()
            .chain([0; 16])
            .collect()
    } else {
        vec![0; 16]
    };
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[44, 64]);
    for a in [src, dst] {
        let mut addr = [0u8; 16];
        addr[0] = 0xfd;
        addr[15] = a;
        f.extend_from_slice(&addr);
    }
    f.extend_from_slice(&[17, 0]);
    f.extend_from_slice(&(offset << 3 | more as u16).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&payload);
    f
}

#[test]
fn later_ipv6_fragments_follow_their_first() {
    let r = Rig::new();
    assert_eq!(r.out(udp6_fragment(2, 1, 1, 2, 0x10009, 2, false)), Err(DropReason::CtInvalid));
    assert_eq!(r.out(udp6_fragment(2, 1, 1, 2, 0x10010, 0, true)), Ok(Some(7)));
    // The later ones may reach another core.
    assert_eq!(r.at(Direction::In, 1, udp6_fragment(2, 1, 1, 2, 0x10010, 2, true)), Ok(None));
    assert_eq!(r.out(udp6_fragment(2, 1, 1, 2, 0x10010, 4, false)), Ok(None));
    // Another identification (the same low 16 bits) is another datagram.
    assert_eq!(r.out(udp6_fragment(2, 1, 1, 2, 0x20010, 2, false)), Err(DropReason::CtInvalid));
    assert_eq!(r.back(udp6_fragment(1, 7, 2, 8, 0x11, 0, true)), Err(DropReason::AclDenyOut));
    assert_eq!(r.back(udp6_fragment(1, 7, 2, 8, 0x11, 2, false)), Err(DropReason::CtInvalid));
}

#[test]
fn malformed_headers_and_non_ip() {
    let r = Rig::new();
    let mut short = tcp(VM2, 1, VM1, 2, 0x02, 0, 0, 0);
    short[14 + 20 + 12] = 15 << 4; // data offset past the end
    assert_eq!(r.out(short), Err(DropReason::CtInvalid));
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    // Not IP: the rules decide.
    assert_eq!(r.out(arp.clone()), Ok(Some(7)));
    assert_eq!(r.back(arp), Err(DropReason::AclDenyOut));
}

#[test]
fn a_full_table_refuses_new_connections_and_keeps_established_ones() {
    let mut r = Rig::new();
    r.table = CtTable::new(2, 1, 8);
    for p in [1, 2] {
        assert!(r.at(Direction::In, 0, udp(VM2, p, VM1, 53)).is_ok());
        assert!(r.at(Direction::Out, 0, udp(VM1, 53, VM2, p)).is_ok());
    }
    assert_eq!(r.at(Direction::In, 0, udp(VM2, 3, VM1, 53)), Err(DropReason::CtFull));
    assert_eq!(r.at(Direction::Out, 0, udp(VM1, 53, VM2, 1)), Ok(None));
    r.cfg.max_sessions = 1;
    r.table = CtTable::new(16, 1, 8);
    assert!(r.out(udp(VM2, 1, VM1, 53)).is_ok());
    assert_eq!(r.out(udp(VM2, 2, VM1, 53)), Err(DropReason::CtPortLimit));
}

/// One-way traffic: each packet of an unanswered flow meets the rules, and the flow
/// keeps its one session.
#[test]
fn unanswered_flows_keep_one_session_each() {
    let mut r = Rig::new();
    r.table = CtTable::new(1_000_000, 1, 8);
    for i in 0..3000u16 {
        assert_eq!(r.out(udp(VM2, 1000 + i, VM1, 53)), Ok(Some(7)));
    }
    for i in 0..3000u16 {
        assert_eq!(r.out(udp(VM2, 1000 + i, VM1, 53)), Ok(Some(7)), "{i}");
    }
    assert_eq!(r.table.sessions().count(), 3000);
}

/// Packet `bytes` at a sticky port `cfg` of `table`, its session found first by its
/// own key as a caller holding it would, tried by `established` and then, if that
/// declines, by `decide`; or by `decide` alone. The mark, the verdict, and whether
/// `established` took it.
fn held_or_decided(table: &CtTable, cfg: &CtPort, bytes: &[u8], shortcut: bool) -> (CtMark, bool, bool) {
    let f = VecFrame::new(bytes);
    let mut m = Meta::default();
    parse(bytes, &mut m);
    m.vni = 100;
    let (key, _) = super::super::Tuple::of_ports(&m).key();
    let found = if shortcut { table.lookup(&key, table.hash(&key)) } else { None };
    if let Some(found) = &found {
        if established(table, found, &f, &mut m, 2000) {
            return (m.ct, true, true);
        }
    }
    let cp = Checkpoint { table, port: 2, cfg, dir: Direction::In, core: 0, now: 2000, dry: false, nat: None, found };
    let ok = decide(&cp, &f, &mut m, |_, _| (Verdict::Allow, None)).1.is_ok();
    (m.ct, ok, false)
}

#[test]
fn the_established_shortcut_moves_a_session_as_the_tracker_does() {
    use super::super::tcp::{ACK, FIN, PSH, RST, SYN};
    let cfg = CtPort { sticky: true, ..CtPort::default() };
    let (ours, oracle) = (CtTable::new(64, 1, 8), CtTable::new(64, 1, 8));
    let packets = [
        udp(VM2, 5000, VM1, 53),
        // Unanswered: the shortcut declines, the tracker keeps it new.
        udp(VM2, 5000, VM1, 53),
        udp(VM1, 53, VM2, 5000),
        udp(VM2, 5000, VM1, 53),
        tcp(VM2, 40000, VM1, 80, SYN, 100, 0, 0),
        tcp(VM1, 80, VM2, 40000, SYN | ACK, 900, 101, 0),
        tcp(VM2, 40000, VM1, 80, ACK, 101, 901, 0),
        tcp(VM2, 40000, VM1, 80, ACK | PSH, 101, 901, 500),
        tcp(VM1, 80, VM2, 40000, ACK, 901, 601, 1000),
        // Out of window: both call it invalid.
        tcp(VM1, 80, VM2, 40000, ACK, 901 + 10_000_000, 601, 10),
        // A SYN in an established connection, a FIN and a RST: for the tracker.
        tcp(VM2, 40000, VM1, 80, SYN, 77, 0, 0),
        tcp(VM2, 40000, VM1, 80, FIN | ACK, 601, 1901, 0),
        tcp(VM1, 80, VM2, 40000, RST | ACK, 1901, 602, 0),
    ];
    let mut taken = vec![];
    for (i, p) in packets.iter().enumerate() {
        let (mark, ok, by_shortcut) = held_or_decided(&ours, &cfg, p, true);
        let (oracle_mark, oracle_ok, _) = held_or_decided(&oracle, &cfg, p, false);
        assert_eq!((mark, ok), (oracle_mark, oracle_ok), "packet {i}");
        let (va, vb): (Vec<_>, Vec<_>) = (ours.sessions().collect(), oracle.sessions().collect());
        assert_eq!(va, vb, "sessions after packet {i}");
        if by_shortcut {
            taken.push(i);
        }
    }
    assert_eq!(taken, vec![3, 7, 8], "answered UDP, and TCP data and ACKs of an established connection");
}

fn inbound_too(_: Direction, _: &Meta) -> AclAnswer {
    (Verdict::Allow, Some(3))
}

fn nothing_leaves(d: Direction, _: &Meta) -> AclAnswer {
    match d {
        Direction::In => (Verdict::Deny, Some(4)),
        Direction::Out => (Verdict::Allow, Some(5)),
    }
}

#[test]
fn the_fast_path_at_a_stateful_port_decides_as_the_whole_tracker_does() {
    use super::super::tcp::{ACK, FIN, PSH, RST, SYN};
    use Direction::{In as Out_of_vm, Out as Into_vm};
    let (ours, oracle) = (CtTable::new(64, 1, 8), CtTable::new(64, 1, 8));
    type Rules = fn(Direction, &Meta) -> AclAnswer;
    // (The port's rules and epoch, the way the packet crosses it, the packet.)
    let (query, answer) = (|| udp(VM2, 5000, VM1, 53), || udp(VM1, 53, VM2, 5000));
    let steps: Vec<(Rules, u16, Direction, Vec<u8>)> = vec![
        (outbound_only, 1, Out_of_vm, query()),
        // Unanswered: still new, the rules decide it.
        (outbound_only, 1, Out_of_vm, query()),
        (outbound_only, 1, Into_vm, answer()),
        (outbound_only, 1, Out_of_vm, query()),
        (outbound_only, 1, Into_vm, answer()),
        (outbound_only, 1, Out_of_vm, tcp(VM2, 40000, VM1, 80, SYN, 100, 0, 0)),
        (outbound_only, 1, Into_vm, tcp(VM1, 80, VM2, 40000, SYN | ACK, 900, 101, 0)),
        (outbound_only, 1, Out_of_vm, tcp(VM2, 40000, VM1, 80, ACK, 101, 901, 0)),
        (outbound_only, 1, Out_of_vm, tcp(VM2, 40000, VM1, 80, ACK | PSH, 101, 901, 500)),
        (outbound_only, 1, Into_vm, tcp(VM1, 80, VM2, 40000, ACK, 901, 601, 1000)),
        // Out of window: invalid either way.
        (outbound_only, 1, Into_vm, tcp(VM1, 80, VM2, 40000, ACK, 901 + 10_000_000, 601, 10)),
        // New rules that still allow it: re-checked once, then held again.
        (inbound_too, 2, Out_of_vm, query()),
        (inbound_too, 2, Out_of_vm, query()),
        // Rules that no longer allow it: revoked, and it stays so.
        (nothing_leaves, 3, Out_of_vm, query()),
        (nothing_leaves, 3, Into_vm, answer()),
        (nothing_leaves, 3, Out_of_vm, tcp(VM2, 40000, VM1, 80, ACK, 601, 1901, 0)),
        (outbound_only, 4, Out_of_vm, tcp(VM2, 40000, VM1, 80, ACK | PSH, 601, 1901, 10)),
        (outbound_only, 4, Out_of_vm, tcp(VM2, 40000, VM1, 80, FIN | ACK, 611, 1901, 0)),
        (outbound_only, 4, Into_vm, tcp(VM1, 80, VM2, 40000, RST | ACK, 1901, 612, 0)),
    ];
    let mut taken = vec![];
    for (i, (rules, epoch, dir, bytes)) in steps.iter().enumerate() {
        let cfg = CtPort { epoch: *epoch, ..CtPort::default() };
        let run = |table: &CtTable, whole: bool| {
            let f = VecFrame::new(bytes);
            let mut m = Meta::default();
            parse(bytes, &mut m);
            m.vni = 100;
            let cp = Checkpoint {
                table,
                port: 2,
                cfg: &cfg,
                dir: *dir,
                core: 0,
                now: 2000,
                dry: false,
                nat: None,
                found: None,
            };
            let d = if whole {
                decide_whole(&cp, &f, &mut m, None, rules)
            } else {
                // (As a port's stages do: the batch's prefetch notes the session its
                // bucket names first, for `decide` to try before a lookup.)
                prefetch_bucket::<VecFrame>(table, &mut m);
                prefetch_named::<VecFrame>(table, std::slice::from_mut(&mut m));
                decide(&cp, &f, &mut m, rules)
            };
            (m.ct, d)
        };
        let before = HELD_HERE.with(|n| n.get());
        let got = run(&ours, false);
        if HELD_HERE.with(|n| n.get()) > before {
            taken.push(i);
        }
        assert_eq!(got, run(&oracle, true), "packet {i}");
        let (va, vb): (Vec<_>, Vec<_>) = (ours.sessions().collect(), oracle.sessions().collect());
        assert_eq!(va, vb, "sessions after packet {i}");
    }
    // Answered UDP both ways, TCP data and ACKs in window, and a session re-checked
    // under new rules once it is allowed again; never a revoked one.
    assert_eq!(taken, vec![3, 4, 8, 9, 12], "the packets the fast path took");
}
