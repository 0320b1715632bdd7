//! The tracking step of a stateful port: find (or make) a packet's session, move its
//! state, and decide whether the rules must look at the packet.
use super::{
    key::{classify, Kind},
    table::{self, NewSession, ORIG_HI, SEEN_REPLY},
    tcp::{Outcome, TcpConn, TcpState},
    CtMark, CtPort, CtState, CtTable, Full, InvalidReason,
};
use crate::{
    acl::{AclAnswer, Direction, Verdict},
    meta::Meta,
    DropReason, Frame, PortId,
};

/// Where a packet meets a stateful port's rules.
#[derive(Clone, Copy)]
pub struct Checkpoint<'a> {
    pub table: &'a CtTable,
    pub port: PortId,
    pub cfg: &'a CtPort,
    /// In: leaving the VM; Out: delivered to it.
    pub dir: Direction,
    /// The core deciding (its part of the table makes new sessions).
    pub core: usize,
    pub now: u32,
    /// Find sessions, change nothing (a trace).
    pub dry: bool,
    /// A new session made here is translated: its `Nat` key (the service stage's).
    pub nat: Option<&'a super::NatKey>,
    /// The packet's session, when the caller found it already (by its `Nat` key).
    pub found: Option<table::Found>,
}

/// What a checkpoint decided: the deciding rule's counter slot (None when no rule
/// decided: a session passed the packet, or the default did) and the drop, if any.
pub type Decision = (Option<u32>, Result<(), DropReason>);

/// Decides packet `m` at `cp`. `acl` answers what the port's rules say of a packet
/// crossing in a direction.
#[inline]
pub fn decide<F: Frame>(
    cp: &Checkpoint,
    f: &F,
    m: &mut Meta,
    acl: impl FnMut(Direction, &Meta) -> AclAnswer,
) -> Decision {
    if m.fragment && m.ip_version != 0 {
        return fragment(cp, f, m, acl);
    }
    // (Untracked, a packet's mark names a session only where the batch's prefetch noted
    // its hash and saw that session first in its bucket: a TCP or UDP packet's. Tried
    // before the hash is asked for, which the common packet does not need.)
    let named = match cp.found {
        None if m.ct.session != 0 && !m.ct.tracked => cp.table.named_for(m.ct.session, &super::Tuple::of_ports(m)),
        _ => None,
    };
    // (`held`, where it was looked up: whether the packet's sender is its key's higher
    // end, and the session's policy epochs.)
    let (known, held) = match (cp.found, named) {
        (Some(found), _) => (Some(Some(found)), None),
        (None, Some((found, src_hi, epochs))) => (Some(Some(found)), Some((src_hi, epochs))),
        (None, None) => match hashed(cp.table, m) {
            Some(h) => {
                let (key, src_hi) = super::Tuple::of_ports(m).key();
                let found = cp.table.lookup(&key, h);
                (Some(found), found.map(|found| (src_hi, cp.table.epochs(found.index))))
            }
            None => (None, None),
        },
    };
    if let (Some(Some(found)), Some((src_hi, epochs)), false) = (&known, held, cp.dry) {
        if held_here(cp, found, epochs, src_hi, f, m) {
            return (None, Ok(()));
        }
    }
    decide_whole(cp, f, m, known, acl)
}

/// The common packet at a port, of a session its rules still allow there (as of the
/// port's policy epoch, or for good at a sticky port): taken whole by `moves`, without
/// the tracker's other cases or the rules. False, with nothing changed, otherwise.
/// `src_hi`: the packet's source is the higher end of its key (as `Tuple::key` says);
/// `epochs`: the session's policy epochs, as read when it was found.
#[inline(always)]
fn held_here<F: Frame>(
    cp: &Checkpoint,
    found: &table::Found,
    epochs: [u16; 2],
    src_hi: bool,
    f: &F,
    m: &mut Meta,
) -> bool {
    let dir = direction(src_hi, found);
    // Which side of the session this port is: the sender's on the way in.
    let side = dir ^ (cp.dir == Direction::Out) as usize;
    let allowed = cp.cfg.sticky || (epochs[side] == cp.cfg.epoch && found.state & table::REVOKED[side] == 0);
    let taken = allowed && moves(cp.table, found, dir, f, m, cp.now, cp.cfg.liberal);
    #[cfg(test)]
    tests::HELD_HERE.with(|n| n.set(n.get() + taken as u32));
    taken
}

/// A datagram's fragments follow their first: a later fragment passes this checkpoint
/// only if the first (which carries the ports the rules and sessions need) passed here
/// lately (by addresses, protocol and the IPv4 id or IPv6 fragment identification). A
/// fragment whose offset would let it rewrite the TCP header (RFC 1858/3128) is dropped.
fn fragment<F: Frame>(
    cp: &Checkpoint,
    f: &F,
    m: &mut Meta,
    acl: impl FnMut(Direction, &Meta) -> AclAnswer,
) -> Decision {
    let key = fragment_key(cp, f, m);
    if m.l4 != 0 {
        let d = decide_whole(cp, f, m, cp.found.map(Some), acl);
        if let (Ok(()), Some((k, _))) = (&d.1, key) {
            if !cp.dry {
                cp.table.frag_passed(k, cp.now);
            }
        }
        return d;
    }
    m.ct = CtMark { tracked: true, state: CtState::Invalid, ..CtMark::default() };
    let follows = match key {
        Some((_, offset)) if offset == 1 && m.proto == crate::wire::ipv4::PROTO_TCP => false,
        Some((k, _)) => cp.table.frag_follows(k, cp.now),
        None => false,
    };
    if follows {
        m.ct.state = CtState::Established;
        return (None, Ok(()));
    }
    if !cp.dry {
        cp.table.invalid(cp.core, InvalidReason::Fragment);
    }
    (None, Err(DropReason::CtInvalid))
}

/// A fragment's key at this checkpoint (port and direction, addresses, protocol, IP id
/// or fragment identification; never 0) and its offset in 8-byte units.
fn fragment_key<F: Frame>(cp: &Checkpoint, f: &F, m: &Meta) -> Option<(u64, u16)> {
    let l3 = m.l3 as usize;
    let (id, offset) = match m.ip_version {
        4 => {
            let h = f.head().get(l3..l3 + 8)?;
            let id = u16::from_be_bytes([h[4], h[5]]);
            (id as u32 | (id as u32) << 16, u16::from_be_bytes([h[6], h[7]]) & 0x1fff)
        }
        6 => crate::parse::ipv6_fragment(f.head(), l3)?,
        _ => return None,
    };
    let t = super::Tuple {
        zone: m.vni ^ (cp.port as u32) << 24 ^ ((cp.dir == Direction::Out) as u32) << 31,
        proto: m.proto,
        src: (m.ip_src, id as u16),
        dst: (m.ip_dst, (id >> 16) as u16),
    };
    Some((cp.table.hash_of(&t) | 1, offset))
}

/// `known`: the packet's session, if the caller looked it up (or found it otherwise).
fn decide_whole<F: Frame>(
    cp: &Checkpoint,
    f: &F,
    m: &mut Meta,
    known: Option<Option<table::Found>>,
    mut acl: impl FnMut(Direction, &Meta) -> AclAnswer,
) -> Decision {
    if !m.ct.tracked {
        m.ct = track(cp, f, m, known);
    }
    let deny = |d: Direction| match d {
        Direction::In => DropReason::AclDenyIn,
        Direction::Out => DropReason::AclDenyOut,
    };
    match m.ct.state {
        CtState::Invalid => (None, Err(DropReason::CtInvalid)),
        CtState::Untracked => match acl(cp.dir, m) {
            (Verdict::Allow, hit) => (hit, Ok(())),
            (Verdict::Deny, hit) => (hit, Err(deny(cp.dir))),
        },
        CtState::New => {
            let (verdict, hit) = acl(cp.dir, m);
            let result = if verdict == Verdict::Deny { Err(deny(cp.dir)) } else { commit(cp, f, m) };
            if let Err(r) = result {
                // A refused connection (first packet or a retry) goes to the flow log.
                if m.ct.session == 0 && !cp.dry {
                    let (key, hi) = super::Tuple::of_ports(m).key();
                    // A rule's verdict names its slot; the default's and a full table's none.
                    let rule = if verdict == Verdict::Deny { hit.map_or(0, |s| s + 1) } else { 0 };
                    cp.table.denied(cp.core, key, hi, cp.port, r as u8, rule);
                }
            }
            (hit, result)
        }
        CtState::Established | CtState::Related => {
            let index = m.ct.session.wrapping_sub(1);
            // Which side of the session this port is: the sender's on the way in.
            let side = (m.ct.reply as usize) ^ (cp.dir == Direction::Out) as usize;
            if cp.cfg.sticky {
                return (None, Ok(()));
            }
            let epoch = cp.table.epochs(index)[side];
            if epoch == cp.cfg.epoch {
                return (None, if cp.table.revoked(index, side) { Err(deny(cp.dir)) } else { Ok(()) });
            }
            // The port's rules changed since this session was allowed here: would they
            // still let its opening packet through this port?
            let first = if side == 0 { Direction::In } else { Direction::Out };
            let opening = if m.ct.reply { reversed(m) } else { *m };
            let allowed = acl(first, &opening).0 == Verdict::Allow;
            if !cp.dry {
                cp.table.set_epoch(index, side, cp.cfg.epoch, allowed);
            }
            (None, if allowed { Ok(()) } else { Err(deny(cp.dir)) })
        }
    }
}

/// The common packet of a session its caller found already (the service stage, by its
/// `Nat` key), at a checkpoint that keeps a session once it passed (sticky) and
/// changes things (not a trace). False, with nothing changed, where `moves` declines,
/// for `decide` to take whole.
#[inline]
pub fn established<F: Frame>(table: &CtTable, found: &table::Found, f: &F, m: &mut Meta, now: u32) -> bool {
    let dir = direction((m.ip_src, m.sport) > (m.ip_dst, m.dport), found);
    moves(table, found, dir, f, m, now, false)
}

/// `established` for a packet that travels the way its connection opened, known as
/// such without its tuple: a client's packet to a VIP, before its translation makes the
/// tuple the session's.
#[inline(always)]
pub fn established_opening<F: Frame>(table: &CtTable, found: &table::Found, f: &F, m: &mut Meta, now: u32) -> bool {
    moves(table, found, 0, f, m, now, false)
}

/// A packet travelling `dir` in session `found` that changes nothing but its counters:
/// UDP, or a TCP data segment or ACK in window (`liberal`: the port's switch), of a
/// session both sides have sent in. Its counters move and it is marked established.
/// False, with nothing changed, for anything else (a whole packet's other cases,
/// fragments, a packet tracked already).
#[inline(always)]
fn moves<F: Frame>(
    table: &CtTable,
    found: &table::Found,
    dir: usize,
    f: &F,
    m: &mut Meta,
    now: u32,
    liberal: bool,
) -> bool {
    if m.fragment || m.ct.tracked || found.state & SEEN_REPLY == 0 {
        return false;
    }
    // (The timeout of what this path takes: an answered UDP flow's, an established TCP
    // connection's without a reset seen, as `tcp_fast` takes only those.)
    let timeout = match m.proto {
        crate::wire::ipv4::PROTO_UDP => &table.timeouts.udp_stream,
        crate::wire::ipv4::PROTO_TCP
            if super::key::segment(f.head(), f.len(), m)
                .is_some_and(|seg| table.tcp_fast(found, dir, &seg, liberal) == Some(true)) =>
        {
            table.timeouts.established()
        }
        _ => return false,
    };
    if !table.account_live(found.index, timeout.load(std::sync::atomic::Ordering::Relaxed), dir, f.len() as u32, now) {
        return false;
    }
    m.ct = CtMark { tracked: true, state: CtState::Established, session: found.index + 1, reply: dir == 1, hash: 0 };
    true
}

/// The way a packet travels in session `found` (1: from the side that answered),
/// by whether its source is the higher end of the key.
#[inline(always)]
fn direction(src_hi: bool, found: &table::Found) -> usize {
    (src_hi != (found.state & ORIG_HI != 0)) as usize
}

/// The hash of a TCP or UDP packet's key from its metadata alone (the common case);
/// None for the rest, which are not prefetched.
#[inline]
fn quick_hash(table: &CtTable, m: &Meta) -> Option<u64> {
    if m.l4 == 0 || !matches!(m.proto, 6 | 17) || m.ct.tracked {
        return None;
    }
    Some(table.hash_of(&super::Tuple::of_ports(m)))
}

/// A TCP or UDP packet's hash as a stage before noted it (it is the hash of the
/// packet's tuple as it stands), or made now; None for the rest.
#[inline(always)]
fn hashed(table: &CtTable, m: &Meta) -> Option<u64> {
    if m.ct.hash != 0 && !m.ct.tracked {
        return Some(m.ct.hash);
    }
    quick_hash(table, m)
}

/// Starts fetching packet `m`'s index bucket, and notes its hash, unless an earlier
/// stage did: a stage that knows early that the packet will be tracked calls it, so
/// that more of the miss is over by the time `prefetch` reads the bucket.
#[inline(always)]
pub fn prefetch_bucket<F: Frame>(table: &CtTable, m: &mut Meta) {
    if m.action == crate::Action::Continue {
        note_bucket::<F>(table, m);
    }
}

#[inline(always)]
fn note_bucket<F: Frame>(table: &CtTable, m: &mut Meta) {
    if m.ct.hash != 0 {
        return;
    }
    if let Some(h) = quick_hash(table, m) {
        m.ct.hash = h;
        F::prefetch(table.bucket_line(h));
    }
}

/// Brings a batch's table entries into cache before it is tracked, for the packets
/// that `tracked` says a checkpoint will see (those delivered to a stateful port, after
/// switching): every packet's bucket, then the sessions the buckets name, so the misses
/// of the batch overlap instead of following one another.
#[inline]
pub fn prefetch_where<F: Frame>(table: &CtTable, meta: &mut [Meta], tracked: impl Fn(&Meta) -> bool) {
    for m in meta.iter_mut().filter(|m| tracked(m)) {
        note_bucket::<F>(table, m);
    }
    fetch_named::<F>(table, meta, tracked);
}

/// `prefetch_where`'s second half, for a batch whose buckets were all asked for
/// (`prefetch_bucket`) as its packets were admitted: the sessions the buckets name.
#[inline]
pub fn prefetch_named<F: Frame>(table: &CtTable, meta: &mut [Meta]) {
    fetch_named::<F>(table, meta, |m| m.action == crate::Action::Continue);
}

#[inline(always)]
fn fetch_named<F: Frame>(table: &CtTable, meta: &mut [Meta], tracked: impl Fn(&Meta) -> bool) {
    // (Whatever else had its hash noted is fetched too: cheaper than asking again. The
    // note goes only to a packet the checkpoint decides next, which takes it: no other
    // packet's metadata depends on what else its batch made in the table.)
    for m in meta.iter_mut().filter(|m| m.ct.hash != 0) {
        let first = table.first_named(m.ct.hash, m.proto, F::prefetch);
        if !m.ct.tracked && tracked(m) {
            m.ct.session = first;
        }
    }
}

/// A reply's metadata turned into its connection's opening direction.
fn reversed(m: &Meta) -> Meta {
    let mut o = Meta { ip_src: m.ip_dst, ip_dst: m.ip_src, sport: m.dport, dport: m.sport, ..*m };
    if matches!(m.proto, super::key::PROTO_ICMP | super::key::PROTO_ICMPV6) {
        // An echo reply's opening packet was the request.
        o.sport = super::key::echo_request(m.proto) as u16;
        o.dport = 0;
    }
    o
}

/// Finds the packet's session and moves its state.
#[inline(always)]
fn track<F: Frame>(cp: &Checkpoint, f: &F, m: &Meta, known: Option<Option<table::Found>>) -> CtMark {
    let (mark, why) = find(cp, f, m, known);
    if let (CtState::Invalid, Some(why)) = (mark.state, why) {
        if !cp.dry {
            cp.table.invalid(cp.core, why);
        }
    }
    mark
}

#[inline(always)]
fn find<F: Frame>(
    cp: &Checkpoint,
    f: &F,
    m: &Meta,
    known: Option<Option<table::Found>>,
) -> (CtMark, Option<InvalidReason>) {
    let mut why = None;
    let mut mark = CtMark { tracked: true, ..CtMark::default() };
    if m.ip_version == 0 {
        return (mark, None);
    }
    if m.l4 == 0 {
        // No L4 header where one should be (later fragments go by `fragment`).
        mark.state = CtState::Invalid;
        return (mark, Some(InvalidReason::Malformed));
    }
    let t = cp.table;
    if m.proto == crate::wire::ipv4::PROTO_UDP {
        // All UDP needs is in the metadata: the common case, without the kinds of packet
        // the other protocols may be.
        mark.state = match session_of(cp, &super::Tuple::of_ports(m), m.ct.hash, known) {
            None => CtState::New,
            Some((found, dir)) => {
                (mark.session, mark.reply) = (found.index + 1, dir == 1);
                other(cp, f, &found, dir)
            }
        };
        return (unless_dead(cp, mark), None);
    }
    let (tuple, kind) = classify(f.head(), f.len(), m, m.vni);
    let lookup = |tu: &super::Tuple| {
        let (key, _) = tu.key();
        t.lookup_live(&key, t.hash(&key), cp.now)
    };
    mark.state = match kind {
        Kind::Malformed => {
            why = Some(InvalidReason::Malformed);
            CtState::Invalid
        }
        Kind::Untracked => CtState::Untracked,
        Kind::Error(quoted) => match lookup(&quoted) {
            Some(found) => {
                mark.session = found.index + 1;
                // The error travels against the quoted packet.
                let (_, quoted_hi) = quoted.key();
                mark.reply = quoted_hi == (found.state & ORIG_HI != 0);
                CtState::Related
            }
            None => {
                why = Some(InvalidReason::Unrelated);
                CtState::Invalid
            }
        },
        _ => match session_of(cp, &tuple, m.ct.hash, known) {
            None => match kind {
                Kind::Tcp(seg) => without_session(cp, &seg, &mut why),
                Kind::Query { request: false } => {
                    why = Some(InvalidReason::Unrelated);
                    CtState::Invalid
                }
                _ => CtState::New,
            },
            Some((found, dir)) => {
                (mark.session, mark.reply) = (found.index + 1, dir == 1);
                match kind {
                    Kind::Tcp(seg) if cp.dry => {
                        let mut c = t.peek(&found);
                        match c.track(dir, &seg, cp.cfg.liberal) {
                            Outcome::Invalid(i) => {
                                why = Some(InvalidReason::of(i));
                                CtState::Invalid
                            }
                            Outcome::Reopen => CtState::New,
                            _ => by_reply(found.state, dir),
                        }
                    }
                    Kind::Tcp(seg) => {
                        let state = tcp(cp, &found, dir, &seg, &mut why);
                        if state != CtState::Invalid {
                            t.account(found.index, dir, f.len() as u32, cp.now);
                        }
                        state
                    }
                    _ => other(cp, f, &found, dir),
                }
            }
        },
    };
    (unless_dead(cp, mark), why)
}

/// A new packet keeps its unanswered session (the rules decide it, nothing more is
/// made); a SYN that ended a closed one starts from none.
#[inline(always)]
fn unless_dead(cp: &Checkpoint, mut mark: CtMark) -> CtMark {
    if mark.state == CtState::New && mark.session != 0 && cp.table.is_dead(mark.session - 1) {
        mark.session = 0;
    }
    mark
}

/// The session of a TCP or UDP packet of `tuple` (`known`, if it was looked up or
/// found otherwise, or looked up now), and the way the packet travels in it (1: from
/// the side that answered).
#[inline(always)]
fn session_of(
    cp: &Checkpoint,
    tuple: &super::Tuple,
    hash: u64,
    known: Option<Option<table::Found>>,
) -> Option<(table::Found, usize)> {
    // (As `Tuple::key` orders the ends; the key itself only to look it up.)
    let src_hi = tuple.src > tuple.dst;
    let found = match known {
        Some(known) => known?,
        None => {
            let (key, _) = tuple.key();
            // TCP and UDP: hashed by the prefetch pass from the same fields.
            cp.table.lookup(&key, if hash != 0 { hash } else { cp.table.hash(&key) })?
        }
    };
    if cp.table.past_due(&found, cp.now) {
        // Timed out, and its owner's wheel not round to it yet: gone, as netfilter's
        // lookup takes an expired entry (the packet is decided as if none existed).
        if !cp.dry {
            cp.table.kill(found.index, found.gen);
        }
        return None;
    }
    Some((found, direction(src_hi, &found)))
}

/// Tries at holding a session another core holds.
const HOLD_TRIES: u32 = 64;

/// A TCP segment of a known session.
fn tcp(
    cp: &Checkpoint,
    found: &table::Found,
    dir: usize,
    seg: &super::tcp::Segment,
    why: &mut Option<InvalidReason>,
) -> CtState {
    let t = cp.table;
    // Data and ACKs of an established connection: no hold.
    match t.tcp_fast(found, dir, seg, cp.cfg.liberal) {
        Some(true) => return CtState::Established,
        Some(false) => {
            *why = Some(InvalidReason::TcpWindow);
            return CtState::Invalid;
        }
        None => {}
    }
    // Handshakes, closes and resets are rare: a core that finds the session held by
    // the other direction's core tries again a few times, then decides by the state as
    // it was without moving it.
    let mut held = None;
    for _ in 0..HOLD_TRIES {
        held = t.hold(found);
        if held.is_some() {
            break;
        }
        std::hint::spin_loop();
    }
    let Some(mut held) = held else { return by_reply(found.state, dir) };
    let old = held.tcp.state;
    match held.tcp.track(dir, seg, cp.cfg.liberal) {
        Outcome::Valid => {
            if dir == 1 {
                held.state |= SEEN_REPLY;
            }
            if seg.has(super::tcp::RST) {
                held.state |= table::RST_SEEN;
            } else {
                held.state &= !table::RST_SEEN;
            }
            let new = held.tcp.state;
            if held.state & SEEN_REPLY != 0
                && matches!(old, TcpState::SynRecv | TcpState::Established)
                && new == TcpState::Established
            {
                held.state |= table::ASSURED;
            }
            let st = held.state;
            held.release(cp.now);
            by_reply(st, dir)
        }
        Outcome::Ignored => {
            let st = held.state;
            held.abandon();
            by_reply(st, dir)
        }
        Outcome::Reopen => {
            // A new connection on the same ports: the old session goes, this SYN is new.
            let index = held.index;
            held.abandon();
            t.kill(index, found.gen);
            CtState::New
        }
        Outcome::Invalid(i) => {
            held.abandon();
            *why = Some(InvalidReason::of(i));
            CtState::Invalid
        }
    }
}

/// A TCP segment with no session (or one timed out): new if it may open one, else
/// invalid.
fn without_session(cp: &Checkpoint, seg: &super::tcp::Segment, why: &mut Option<InvalidReason>) -> CtState {
    if TcpConn::open(seg, cp.cfg.pickup).is_some() {
        return CtState::New;
    }
    *why = Some(if seg.valid_flags() { InvalidReason::TcpState } else { InvalidReason::TcpFlags });
    CtState::Invalid
}

/// A packet of a known session of UDP, ICMP queries or another protocol: answered
/// once a packet comes back. Counted (unless a trace).
#[inline(always)]
fn other<F: Frame>(cp: &Checkpoint, f: &F, found: &table::Found, dir: usize) -> CtState {
    let t = cp.table;
    if cp.dry {
        return by_reply(found.state, dir);
    }
    if dir == 1 && found.state & SEEN_REPLY == 0 {
        if let Some(mut held) = t.hold(found) {
            held.state |= SEEN_REPLY | table::ASSURED;
            held.abandon();
        }
    }
    t.account(found.index, dir, f.len() as u32, cp.now);
    by_reply(found.state, dir)
}

/// A packet of a session: established once the answering side has sent (this packet
/// or one before); until then its opener's packets are still new.
fn by_reply(state_word: u32, dir: usize) -> CtState {
    if dir == 1 || state_word & SEEN_REPLY != 0 {
        CtState::Established
    } else {
        CtState::New
    }
}

/// Makes the session of a new packet the rules allowed, or records this port's side
/// of one made at the port before.
fn commit<F: Frame>(cp: &Checkpoint, f: &F, m: &mut Meta) -> Result<(), DropReason> {
    let t = cp.table;
    let side = (cp.dir == Direction::Out) as usize;
    if cp.dry {
        return Ok(());
    }
    if m.ct.session != 0 {
        let index = m.ct.session - 1;
        t.set_epoch(index, side, cp.cfg.epoch, true);
        t.set_port(index, side, cp.port);
        return Ok(());
    }
    let (tuple, kind) = classify(f.head(), f.len(), m, m.vni);
    let tcp = match kind {
        Kind::Tcp(seg) => TcpConn::open(&seg, cp.cfg.pickup).ok_or(DropReason::CtInvalid)?,
        _ => TcpConn::default(),
    };
    let (key, src_hi) = tuple.key();
    let n = NewSession {
        key,
        orig_hi: src_hi,
        tcp,
        port: cp.port,
        side,
        epoch: cp.cfg.epoch,
        now: cp.now,
        len: f.len() as u32,
        nat: cp.nat.copied(),
    };
    match t.create(cp.core, &n, cp.cfg.max_sessions) {
        Ok(index) => {
            m.ct.session = index + 1;
            Ok(())
        }
        Err(Full::Table) => Err(DropReason::CtFull),
        Err(Full::Port) => Err(DropReason::CtPortLimit),
        Err(Full::Taken) => Err(DropReason::CtTaken),
    }
}

#[cfg(test)]
mod tests;
