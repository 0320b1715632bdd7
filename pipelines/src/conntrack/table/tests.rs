use super::*;
use crate::meta::ipv4_key;
use std::sync::Arc;

fn key(a: u32, ap: u16, b: u32, bp: u16) -> (CtKey, bool) {
    crate::conntrack::Tuple { zone: 100, proto: 17, src: (ipv4_key(a), ap), dst: (ipv4_key(b), bp) }.key()
}

fn new(k: CtKey, orig_hi: bool, now: u32) -> NewSession {
    NewSession { key: k, orig_hi, tcp: TcpConn::default(), port: 3, side: 0, epoch: 1, now, len: 60, nat: None }
}

#[test]
fn both_directions_find_one_session() {
    let t = CtTable::new(64, 2, 8);
    let (k, hi) = key(10, 1000, 20, 53);
    let i = t.create(0, &new(k, hi, 0), 0).unwrap();
    let (back, back_hi) = key(20, 53, 10, 1000);
    assert_eq!(back, k);
    assert_ne!(back_hi, hi);
    let f = t.lookup(&back, t.hash(&back)).unwrap();
    assert_eq!(f.index, i);
    assert_eq!(f.state & ORIG_HI != 0, hi);
    // Another zone, another session.
    let mut other = k;
    other.zone = 200;
    assert!(t.lookup(&other, t.hash(&other)).is_none());
    let v = t.view(i).unwrap();
    assert_eq!(v.orig(), ((ipv4_key(10), 1000), (ipv4_key(20), 53)));
    assert_eq!(t.port_sessions(3), 1);
}

/// The session a batch's prefetch notes first for a packet is found from the packet's
/// ends either way, as `lookup` finds it; a note that names another session, a dead
/// one, or none finds nothing (and `decide` looks up instead).
#[test]
fn the_session_a_bucket_names_first_is_found_from_either_end() {
    let t = CtTable::new(64, 1, 8);
    let out = Tuple { zone: 100, proto: 17, src: (ipv4_key(10), 1000), dst: (ipv4_key(20), 53) };
    let (k, hi) = out.key();
    let i = t.create(0, &new(k, hi, 0), 0).unwrap();
    let other = Tuple { src: (ipv4_key(11), 1000), ..out };
    let (ko, hio) = other.key();
    let j = t.create(0, &new(ko, hio, 0), 0).unwrap();
    let mut fetched = 0;
    let first = t.first_named(t.hash_of(&out), 17, |_| fetched += 1);
    assert_eq!((first, fetched), (i + 1, 1), "its index + 1, and its first line: all a UDP packet reads");
    let mut fetched = 0;
    assert_eq!(t.first_named(t.hash_of(&out), 6, |_| fetched += 1), first);
    assert_eq!(fetched, 2, "for TCP, its windows' line too");
    t.set_epoch(i, 1, 7, true);
    for (t_, src_hi) in [(out, hi), (out.reversed(), !hi)] {
        let (found, got_hi, epochs) = t.named_for(first, &t_).expect("found from this end");
        let looked = t.lookup(&k, t.hash(&k)).unwrap();
        assert_eq!((found.index, found.gen, found.state, got_hi), (looked.index, looked.gen, looked.state, src_hi));
        assert_eq!((epochs[1], epochs), (7, t.epochs(looked.index)), "its epochs as they stand");
    }
    assert!(t.named_for(j + 1, &out).is_none(), "another session's note");
    assert!(t.named_for(0, &out).is_none(), "no note");
    let other_zone = Tuple { zone: 200, ..out };
    assert!(t.named_for(first, &other_zone).is_none(), "the same ends in another zone");
    assert!(t.kill(i, t.lookup(&k, t.hash(&k)).unwrap().gen));
    assert!(t.named_for(first, &out).is_none(), "a dead session");
}

/// A session's counts live in its first line until they overflow it, then move to its
/// totals: every packet and byte is counted once, each way, however they came (a frame
/// larger than the first line holds too), and the slot's next session starts afresh.
#[test]
fn counts_carried_out_of_the_first_line_add_up_and_start_afresh_with_the_slot() {
    let t = CtTable::new(1, 1, 8);
    t.expire(0, 0, 100);
    let (k, hi) = key(10, 1000, 20, 53);
    let i = t.create(0, &new(k, hi, 0), 0).unwrap();
    let (mut packets, mut bytes) = ([1u32, 0], 60u64);
    let sizes = [(0, 1500, 1000), (1, 65_000, 300), (1, 20_000_000, 1), (0, 64, 300), (1, 9000, 7)];
    for (dir, len, n) in sizes {
        for _ in 0..n {
            t.account(i, dir, len, 1);
            packets[dir] += 1;
            bytes += len as u64;
            let v = t.view(i).unwrap();
            assert_eq!((v.packets, v.bytes), (packets, bytes), "after a packet of {len} bytes, direction {dir}");
        }
    }
    assert!(t.kill(i, t.lookup(&k, t.hash(&k)).unwrap().gen));
    let gone: u32 = (1..=40).map(|s| t.expire(0, s * 1000, 100)).sum();
    assert_eq!(gone, 1);
    let mut ends = vec![];
    t.parts()[0].events.drain(|e| ends.extend((e.kind == EventKind::End).then_some((e.packets, e.bytes))));
    assert_eq!(ends, [(packets, bytes)], "the end event counts them all");
    let (k2, hi2) = key(11, 1000, 20, 53);
    let j = t.create(0, &new(k2, hi2, 41_000), 0).unwrap();
    assert_eq!(j, i, "the same slot");
    let v = t.view(j).unwrap();
    assert_eq!((v.packets, v.bytes), ([1, 0], 60), "the next session starts from its first packet");
}

#[test]
fn sessions_expire_on_the_wheel_and_their_room_returns() {
    let t = CtTable::new(4, 1, 8);
    t.expire(0, 0, 100);
    let keys: Vec<_> = (0..4).map(|i| key(1, i, 2, 53)).collect();
    for (k, hi) in &keys {
        t.create(0, &new(*k, *hi, 0), 0).unwrap();
    }
    // Four unreplied UDP sessions: each recycles another for a fifth.
    let (k5, hi5) = key(9, 9, 2, 53);
    assert!(t.create(0, &new(k5, hi5, 0), 0).is_ok());
    assert_eq!(t.parts()[0].evicted.load(Relaxed), 1);
    // UDP unreplied lives 30 s: nothing goes at 29 s, everything by 32 s.
    assert_eq!(t.expire(0, 29_000, 1000), 0);
    assert_eq!(t.sessions().count(), 4);
    let gone: u32 = (29..=33).map(|s| t.expire(0, s * 1000, 1000)).sum();
    assert_eq!(gone, 4);
    assert_eq!(t.sessions().count(), 0);
    assert!(t.lookup(&k5, t.hash(&k5)).is_none());
    assert_eq!(t.port_sessions(3), 0);
    for (k, hi) in &keys {
        t.create(0, &new(*k, *hi, 40_000), 0).unwrap();
    }
}

#[test]
fn a_full_table_keeps_replied_sessions_and_refuses_new_ones() {
    let t = CtTable::new(4, 1, 8);
    for i in 0..4 {
        let (k, hi) = key(1, i, 2, 53);
        let idx = t.create(0, &new(k, hi, 0), 0).unwrap();
        let f = t.lookup(&k, t.hash(&k)).unwrap();
        let mut h = t.hold(&f).unwrap();
        h.state |= SEEN_REPLY;
        h.abandon();
        assert_eq!(idx, f.index);
    }
    let (k, hi) = key(7, 7, 2, 53);
    assert_eq!(t.create(0, &new(k, hi, 0), 0), Err(Full::Table));
    assert_eq!(t.sessions().count(), 4);
    assert_eq!(t.parts()[0].full.load(Relaxed), 1);
}

/// An established TCP session in `t`, made at `now`.
fn established_tcp(t: &CtTable, a: u32, now: u32) -> (CtKey, Found) {
    let (k, hi) =
        crate::conntrack::Tuple { zone: 100, proto: 6, src: (ipv4_key(a), 1000), dst: (ipv4_key(2), 80) }.key();
    let tcp = TcpConn { state: TcpState::Established, ..TcpConn::default() };
    t.create(0, &NewSession { tcp, ..new(k, hi, now) }, 0).unwrap();
    let f = t.lookup(&k, t.hash(&k)).unwrap();
    let mut h = t.hold(&f).unwrap();
    h.state |= SEEN_REPLY;
    h.abandon();
    (k, t.lookup(&k, t.hash(&k)).unwrap())
}

/// Closes `f`'s connection (TIME_WAIT: 120 s) at `now`.
fn time_wait(t: &CtTable, f: &Found, now: u32) {
    let mut h = t.hold(f).unwrap();
    h.tcp.state = TcpState::TimeWait;
    h.release(now);
}

#[test]
fn a_connection_that_closes_after_it_was_filed_goes_soon_after_its_new_deadline() {
    let t = CtTable::new(8, 1, 8);
    t.expire(0, 0, 100);
    let (k, f) = established_tcp(&t, 1, 0);
    // Filed for days ahead; closed at 10 s, it is due at 130 s.
    for s in 1..=10u32 {
        t.expire(0, s * 1000, 100);
    }
    time_wait(&t, &f, 10_000);
    let mut gone_at = None;
    for s in 11..600u32 {
        if t.expire(0, s * 1000, 100) == 1 {
            gone_at = Some(s);
            break;
        }
    }
    let gone_at = gone_at.expect("freed within a turn of the wheel");
    // Not a turn of the wheel (9 minutes) later: within 40 s.
    assert!((130..=170).contains(&gone_at), "freed at {gone_at} s");
    assert!(t.lookup(&k, t.hash(&k)).is_none());
}

#[test]
fn a_full_table_reuses_a_session_past_its_timeout() {
    let t = CtTable::new(4, 1, 8);
    t.expire(0, 0, 100);
    let found: Vec<_> = (0..4).map(|a| established_tcp(&t, 10 + a, 0).1).collect();
    let (k, hi) = key(7, 7, 2, 53);
    assert_eq!(t.create(0, &new(k, hi, 1000), 0), Err(Full::Table));
    // One closes at 1 s: due at 121 s, and the wheel has not been round.
    time_wait(&t, &found[2], 1000);
    assert_eq!(t.create(0, &new(k, hi, 120_000), 0), Err(Full::Table));
    assert!(t.create(0, &new(k, hi, 122_000), 0).is_ok());
    assert_eq!(t.parts()[0].expired.load(Relaxed), 1);
    assert_eq!(t.sessions().count(), 4);
}

#[test]
fn a_session_used_recently_outlives_its_first_deadline() {
    let t = CtTable::new(8, 1, 8);
    t.expire(0, 0, 100);
    let (k, hi) = key(1, 1, 2, 2);
    let i = t.create(0, &new(k, hi, 0), 0).unwrap();
    for s in 1..100u32 {
        t.account(i, 0, 60, s * 1000);
        t.expire(0, s * 1000, 100);
    }
    assert!(t.lookup(&k, t.hash(&k)).is_some());
    let gone: u32 = (100..140).map(|s| t.expire(0, s * 1000, 100)).sum();
    assert_eq!(gone, 1);
}

#[test]
fn port_limits_and_flush() {
    let t = CtTable::new(64, 1, 8);
    for i in 0..3 {
        let (k, hi) = key(1, i, 2, 53);
        t.create(0, &new(k, hi, 0), 3).unwrap();
    }
    let (k, hi) = key(1, 9, 2, 53);
    assert_eq!(t.create(0, &new(k, hi, 0), 3), Err(Full::Port));
    let doomed: Vec<_> = t.at_port(3).filter(|v| v.key.lo.1 == 0 || v.key.hi.1 == 0).collect();
    assert_eq!(doomed.len(), 1);
    assert!(t.kill(doomed[0].index, doomed[0].gen));
    assert!(!t.kill(doomed[0].index, doomed[0].gen), "a session dies once");
    assert_eq!(t.sessions().count(), 2);
    assert_eq!(t.at_port(3).count(), 2);
    // Freed by the owner at its next wheel turn; the port's count drops then.
    for s in 0..600 {
        t.expire(0, s * 1000, 100);
    }
    assert_eq!(t.port_sessions(3), 0);
    t.create(0, &new(k, hi, 600_000), 3).unwrap();
}

/// Two cores at once: one opens sessions and expires its own, the other answers them;
/// afterwards the counts add up and every live session is findable.
#[test]
fn two_cores_share_the_table() {
    let t = Arc::new(CtTable::new(4096, 2, 8));
    let n = 20_000u32;
    let opener = {
        let t = t.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                let (k, hi) = key(i, (i % 60000) as u16, 2, 53);
                let _ = t.create(0, &new(k, hi, i), 0);
                t.expire(0, i, 16);
            }
        })
    };
    let answerer = {
        let t = t.clone();
        std::thread::spawn(move || {
            let mut found = 0;
            for i in 0..n {
                let (k, _) = key(2, 53, i, (i % 60000) as u16);
                if let Some(f) = t.lookup(&k, t.hash(&k)) {
                    if let Some(mut h) = t.hold(&f) {
                        h.state |= SEEN_REPLY;
                        h.release(i);
                    }
                    found += 1;
                }
            }
            found
        })
    };
    opener.join().unwrap();
    let _ = answerer.join().unwrap();
    let p = &t.parts()[0];
    let live = p.created.load(Relaxed) - p.expired.load(Relaxed) - p.evicted.load(Relaxed);
    assert_eq!(t.sessions().count() as u64, live);
    assert_eq!(p.live.load(Relaxed), live, "the sessions gauge counts recycled sessions out");
    for v in t.sessions() {
        assert_eq!(t.lookup(&v.key, t.hash(&v.key)).map(|f| f.index), Some(v.index));
    }
    // The port's index holds exactly the live sessions, after every expiry and recycle.
    let mut listed: Vec<u32> = t.at_port(3).map(|v| v.index).collect();
    let mut all: Vec<u32> = t.sessions().map(|v| v.index).collect();
    listed.sort_unstable();
    all.sort_unstable();
    assert_eq!(listed, all);
}

/// The per-port index against the whole table: after sessions made on two cores at
/// three ports, some recycled, some expired and some reused, each port's list is
/// exactly the sessions the table holds for it.
#[test]
fn each_port_lists_its_own_sessions() {
    let t = CtTable::new(48, 2, 8);
    let mut now = 0;
    for round in 0..400u32 {
        let (k, hi) = key(round, (round % 7) as u16, 2, 53);
        let port = (round % 3) as u16 + 1;
        let n = NewSession { port, now, ..new(k, hi, now) };
        let _ = t.create((round % 2) as usize, &n, 0);
        if round % 5 == 0 {
            // Answered: kept over half-open ones when the table is full.
            if let Some(f) = t.lookup(&k, t.hash(&k)) {
                if let Some(mut h) = t.hold(&f) {
                    h.state |= SEEN_REPLY;
                    h.release(now);
                }
            }
        }
        now += 700;
        t.expire(0, now, 8);
        t.expire(1, now, 8);
    }
    for port in 0..8u16 {
        let mut listed: Vec<u32> = t.at_port(port).map(|v| v.index).collect();
        let mut want: Vec<u32> =
            t.sessions().filter(|v| v.state >> 16 & 0xffff == port as u32).map(|v| v.index).collect();
        listed.sort_unstable();
        want.sort_unstable();
        assert_eq!(listed, want, "port {port}");
    }
    assert!(t.sessions().count() > 0);
}

#[test]
fn a_translated_session_is_found_by_both_keys_and_leaves_with_both() {
    let t = CtTable::new(8, 1, 8);
    // Client 10:1000 addressed VIP 99:80; its session is client <-> backend 20:8080.
    let (own, hi) = key(10, 1000, 20, 8080);
    let (vip, _) = key(10, 1000, 99, 80);
    let nat = Some(NatKey { key: vip, service: 7, pick: 0 });
    assert_eq!(t.create(0, &NewSession { nat, ..new(own, hi, 0) }, 0), Err(Full::Table), "no room for NAT yet");
    t.expire(0, 100_000_000, 100);
    t.enable_nat(|_, _| 0);
    let i = t.create(0, &NewSession { nat, ..new(own, hi, 0) }, 0).unwrap();
    assert_eq!(t.lookup(&own, t.hash(&own)).map(|f| f.index), Some(i));
    assert_eq!(t.lookup_nat(&vip, t.hash(&vip)).map(|f| f.index), Some(i));
    assert!(t.lookup(&vip, t.hash(&vip)).is_none(), "the VIP key is not a session's own");
    assert!(t.lookup_nat(&own, t.hash(&own)).is_none());
    assert_eq!(t.nat_of(i), Some(NatKey { key: vip, service: 7, pick: 0 }));
    // The batch's prefetch notes it first under its VIP key's tag; found from that note,
    // and by the buckets where the note names another session or none.
    let first = t.nat_lines(t.hash(&vip), 17, |_| {});
    assert_eq!(first, i + 1);
    for note in [first, 0, i + 2] {
        assert_eq!(t.lookup_nat_from(&vip, t.hash(&vip), note).map(|f| f.index), Some(i), "note {note}");
    }
    assert!(t.lookup_nat_from(&own, t.hash(&own), first).is_none(), "its note is not for its own key");
    // By the client's packet as it stands, and either way round: the same session, from
    // the note or (where the note names another session or none) from the buckets.
    let to_vip = Tuple { zone: 100, proto: 17, src: (ipv4_key(10), 1000), dst: (ipv4_key(99), 80) };
    for tuple in [to_vip, to_vip.reversed()] {
        assert_eq!(t.hash_of(&tuple), t.hash(&vip));
        for note in [first, 0, i + 2] {
            let found = t.lookup_nat_for(&tuple, t.hash(&vip), note);
            let fields = |f: Found| (f.index, f.gen, f.state, f.pick);
            assert_eq!(found.map(fields), t.lookup_nat_from(&vip, t.hash(&vip), note).map(fields), "note {note}");
            assert_eq!(found.map(|f| f.index), Some(i), "note {note}");
        }
    }
    let to_backend = Tuple { dst: (ipv4_key(20), 8080), ..to_vip };
    assert!(t.lookup_nat_for(&to_backend, t.hash_of(&to_backend), first).is_none(), "its own key is not its Nat key");
    let other_port = Tuple { src: (ipv4_key(10), 1001), ..to_vip };
    assert!(t.lookup_nat_for(&other_port, t.hash_of(&other_port), first).is_none(), "another client port");
    // Killed: gone by both keys.
    assert!(t.kill(i, t.view(i).unwrap().gen));
    assert!(t.lookup_nat(&vip, t.hash(&vip)).is_none());
    assert!(t.lookup_nat_for(&to_vip, t.hash(&vip), first).is_none(), "its note names a dead session");
    // Its room, reused by a plain session, is not translated.
    t.expire(0, 100_000_000 + 200_000_000, 100);
    let plain = (0..8).map(|p| t.create(0, &new(key(1, p, 2, 53).0, false, 0), 0).unwrap()).collect::<Vec<_>>();
    assert!(plain.contains(&i));
    assert_eq!(t.nat_of(i), None);
    // Recycled (half-open): its NAT entry goes too, and the buckets hold no stale entry.
    let t = CtTable::new(1, 1, 8);
    t.enable_nat(|_, _| 0);
    let i = t.create(0, &NewSession { nat, ..new(own, hi, 0) }, 0).unwrap();
    let (other, ohi) = key(10, 1000, 20, 8081);
    // Same buckets are not guaranteed: recycle only looks in the new key's; make room
    // the way the table does when its share is full.
    if t.create(0, &new(other, ohi, 0), 0).is_ok() {
        assert!(t.lookup_nat(&vip, t.hash(&vip)).is_none(), "a recycled session is no longer found by its VIP key");
        assert_eq!(t.nat_of(i), None);
    }
    let entries = t.buckets.iter().flatten().filter(|e| e.load(Relaxed) & NAT_ENTRY != 0).count();
    assert!(entries <= 1);
}

#[test]
fn a_translated_session_keeps_the_backend_place_noted_last_by_one_who_saw_the_note_before() {
    let t = CtTable::new(8, 1, 8);
    t.enable_nat(|_, _| 0);
    let (own, hi) = key(10, 1000, 20, 8080);
    let (vip, _) = key(10, 1000, 99, 80);
    let nat = Some(NatKey { key: vip, service: 7, pick: 5 << 32 | 1 });
    t.create(0, &NewSession { nat, ..new(own, hi, 0) }, 0).unwrap();
    let found = t.lookup_nat(&vip, t.hash(&vip)).unwrap();
    assert_eq!(found.pick, 5 << 32 | 1, "found with the place it was made with");
    assert_eq!(t.lookup(&own, t.hash(&own)).unwrap().pick, 0, "by its own key: no note read");
    t.note_pick(&found, 6 << 32 | 3);
    assert_eq!(t.lookup_nat(&vip, t.hash(&vip)).unwrap().pick, 6 << 32 | 3);
    // A core that read the old note (the session may have been reused since) changes
    // nothing.
    t.note_pick(&found, 6 << 32 | 2);
    assert_eq!(t.nat_of(found.index).map(|n| n.pick), Some(6 << 32 | 3));
}

#[test]
fn two_translated_sessions_never_share_their_own_key_but_plain_ones_may() {
    let t = CtTable::new(64, 2, 8);
    t.enable_nat(|_, _| 0);
    // Two VMs' connections given one port on the host address (20:40000 -> 99:53), by
    // two cores at once: the later to look finds the first and gives up.
    let (own, hi) = key(20, 40000, 99, 53);
    let first = NatKey { key: key(10, 40000, 99, 53).0, service: 0, pick: 0 };
    let second = NatKey { key: key(11, 40000, 99, 53).0, service: 0, pick: 0 };
    let i = t.create(0, &NewSession { nat: Some(first), ..new(own, hi, 0) }, 0).unwrap();
    assert_eq!(t.create(1, &NewSession { nat: Some(second), ..new(own, hi, 0) }, 0), Err(Full::Taken));
    assert_eq!(t.lookup(&own, t.hash(&own)).map(|f| f.index), Some(i), "the first keeps its key");
    assert!(t.lookup_nat(&second.key, t.hash(&second.key)).is_none(), "the second left no entry");
    assert_eq!(t.lookup_nat(&first.key, t.hash(&first.key)).map(|f| f.index), Some(i));
    let entries = t.buckets.iter().flatten().filter(|e| e.load(Relaxed) != 0).count();
    assert_eq!(entries, 2, "one session, by its own key and its Nat key");
    // Untranslated sessions are not checked (the same connection seen by two cores).
    let (plain, phi) = key(1, 1, 2, 2);
    t.create(0, &new(plain, phi, 0), 0).unwrap();
    assert!(t.create(1, &new(plain, phi, 0), 0).is_ok());
}

#[test]
fn two_cores_giving_one_port_to_two_connections_at_once_keep_at_most_one() {
    use std::sync::{Arc, Barrier};
    const ROUNDS: u16 = 2000;
    let t = Arc::new(CtTable::new(8192, 2, 8));
    t.enable_nat(|_, _| 0);
    let start = Arc::new(Barrier::new(2));
    let cores: Vec<_> = (0..2u8)
        .map(|core| {
            let (t, start) = (t.clone(), start.clone());
            std::thread::spawn(move || {
                (0..ROUNDS)
                    .map(|r| {
                        let (own, hi) = key(20, r, 99, 53);
                        let nat = NatKey { key: key(10 + core as u32, r, 99, 53).0, service: 0, pick: 0 };
                        start.wait();
                        t.create(core as usize, &NewSession { nat: Some(nat), ..new(own, hi, 0) }, 0).is_ok()
                    })
                    .collect::<Vec<bool>>()
            })
        })
        .collect();
    let made: Vec<Vec<bool>> = cores.into_iter().map(|c| c.join().unwrap()).collect();
    for (r, (a, b)) in made[0].iter().zip(&made[1]).enumerate() {
        assert!(!(a & b), "round {r}: both connections kept one key");
    }
}

/// Hash keys standing for a switch's random ones, the same every run: the fixed key
/// and two drawn by splitmix64 from fixed seeds.
fn hash_keys() -> [HashKey; 3] {
    let splitmix = |seed: u64| {
        let z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let drawn = |s: u64| HashKey::from_draws(splitmix(s), splitmix(s + 1), splitmix(s + 2));
    [HashKey::FIXED, drawn(1), drawn(7)]
}

#[test]
fn a_packet_hashes_as_its_key_does_either_way() {
    let t = Tuple { zone: 100, proto: 6, src: (ipv4_key(0x0a01_0203), 40000), dst: (ipv4_key(0x0a01_0001), 80) };
    let v6 =
        Tuple { zone: 7, proto: 17, src: (0xfd00_0001_u128 << 64 | 9, 53), dst: (0xfd00_0001_u128 << 64 | 3, 5353) };
    for key in hash_keys() {
        for t in [t, v6] {
            assert_eq!(key.tuple(&t), key.hash(&t.key().0));
            assert_eq!(key.tuple(&t.reversed()), key.tuple(&t));
        }
    }
}

/// Each table draws its own hash key: the same connection lands in unrelated buckets
/// of two tables, so a tenant cannot work out from one switch (or from this source)
/// which keys share a bucket in another.
#[test]
fn each_table_hashes_with_a_key_of_its_own() {
    let k =
        Tuple { zone: 100, proto: 6, src: (ipv4_key(0x0a01_0203), 40000), dst: (ipv4_key(0x0a01_0001), 80) }.key().0;
    let tables: Vec<CtTable> = (0..4).map(|_| CtTable::new(64, 1, 1)).collect();
    for (i, a) in tables.iter().enumerate() {
        for b in &tables[i + 1..] {
            assert_ne!(a.hash_key, b.hash_key);
            assert_ne!(a.hash(&k), b.hash(&k));
        }
        // Its index and its lookups agree on it.
        let i = a.create(0, &new(k, false, 0), 0).unwrap();
        assert_eq!(a.lookup(&k, a.hash(&k)).map(|f| f.index), Some(i));
    }
    assert_eq!(CtTable::new(64, 1, 1).keyed(HashKey::FIXED).hash(&k), HashKey::FIXED.hash(&k));
}

/// Keys crafted to share a first bucket under one hash key (what a tenant could do with
/// an unkeyed hash: 24 connections aimed at one bucket of 8) fall apart under another.
#[test]
fn keys_that_share_a_bucket_under_one_hash_key_spread_under_another() {
    let [aimed, other, third] = hash_keys();
    let nb = 1024usize;
    let client = |port: u32| Tuple {
        zone: 100,
        proto: 17,
        src: (ipv4_key(0x0a00_0001 + (port >> 16)), port as u16),
        dst: (ipv4_key(0x0a01_0001), 53),
    };
    let crafted: Vec<Tuple> =
        (0..1u32 << 22).map(client).filter(|t| aimed.tuple(t) as usize & (nb - 1) == 0).take(24).collect();
    assert_eq!(crafted.len(), 24, "a brute-force search finds them under a known key");
    for key in [other, third] {
        let mut load = vec![0u32; nb];
        for t in &crafted {
            load[key.tuple(t) as usize & (nb - 1)] += 1;
        }
        let most = load.iter().max().copied().unwrap_or(0);
        assert!(most <= 3, "{most} of the 24 share a bucket under another key");
    }
}

/// Keys of the shapes a host makes (one client's ports, a /16 of servers, sessions per
/// VNI, IPv6, both ends walking, which a sum of the ends' hashes would collide on) fill
/// a table's buckets as random keys would, under each hash key: at the table's capacity
/// (4 keys a bucket on average, first buckets only), the buckets over 8 are near
/// Poisson's 2.1 %, and no two keys share a bucket and a tag. Each hashes alike from
/// either end and as its key.
#[test]
fn structured_keys_spread_over_the_buckets_as_random_ones_do() {
    for key in hash_keys() {
        spread_under(key);
    }
}

type Shape = (&'static str, fn(u32) -> Tuple);

fn shapes() -> [Shape; 7] {
    fn v4(a: u32, p: u32) -> (u128, u16) {
        (ipv4_key(a), p as u16)
    }
    [
        ("one client's ports", |i| Tuple {
            zone: 100,
            proto: 17,
            src: v4(0x0a00_0001, 1024 + i),
            dst: v4(0x0a01_0001, 5001),
        }),
        ("a /16 of servers", |i| Tuple {
            zone: 100,
            proto: 17,
            src: v4(0x0a00_0001, 1234),
            dst: v4(0x0a01_0000 + i, 5001),
        }),
        ("W6's flows", |i| Tuple {
            zone: 100,
            proto: 17,
            src: v4(0x0a02_0000 | (i & 0xff), 1024 + (i >> 8)),
            dst: v4(0x0a01_0000 | ((i * 7) & 0xffff), 5001),
        }),
        ("one flow per VNI", |i| Tuple { zone: i, proto: 17, src: v4(0x0a00_0001, 53), dst: v4(0x0a00_0002, 53) }),
        ("IPv6", |i| Tuple {
            zone: 7,
            proto: 6,
            src: (0xfd00_u128 << 112 | (i as u128) << 64 | 1, 443),
            dst: ((0xfd00_u128 << 112) | (0x1_0000 + i as u128), 40000),
        }),
        ("IPv6 interface ids", |i| Tuple {
            zone: 7,
            proto: 6,
            src: (0xfd00_u128 << 112 | i as u128, 40000),
            dst: (0xfd00_u128 << 112 | 1, 80),
        }),
        ("both ends walking", |i| Tuple {
            zone: 1,
            proto: 17,
            src: v4(0x0a00_0001 + (i & 0xff), 53),
            dst: v4(0x0a10_0001 + (i >> 8), 53),
        }),
    ]
}

fn spread_under(key: HashKey) {
    const N: u32 = 65536;
    let nb = N as usize / 4;
    for (name, shape) in shapes() {
        let mut load = vec![0u32; nb];
        let mut seen = std::collections::HashSet::new();
        for i in 0..N {
            let t = shape(i);
            let h = key.tuple(&t);
            assert_eq!((h, h), (key.tuple(&t.reversed()), key.hash(&t.key().0)), "{name}: key {i} either way");
            load[h as usize & (nb - 1)] += 1;
            assert!(seen.insert((h as usize & (nb - 1), h >> 32)), "{name}: key {i} shares a bucket and tag");
        }
        let over = load.iter().filter(|&&l| l > 8).count();
        // Poisson(4) puts 2.14 % (351 of 16,384) over 8.
        assert!(over < 470, "{name}: {over} buckets over 8 (random keys: about 351) under {key:?}");
    }
}

/// A session's view says when it times out, so that a listing can leave out one past its
/// timeout that its owner's wheel has not freed yet; a packet moves it on.
#[test]
fn a_view_is_expired_once_its_state_times_out() {
    let t = CtTable::new(64, 1, 8);
    let (k, hi) = key(10, 1000, 20, 53);
    let i = t.create(0, &new(k, hi, 5_000), 0).unwrap();
    let v = t.view(i).unwrap();
    assert_eq!(v.due, 35_000, "UDP's 30 s after it was last seen");
    assert!(!v.expired(34_999) && v.expired(35_000), "expired from its deadline on");
    t.account(i, 0, 60, 20_000);
    assert!(!t.view(i).unwrap().expired(35_000), "a packet at 20 s moved it to 50 s");
    // (The table's clock wraps: a due time just past the wrap is not long gone.)
    let w = t.create(0, &new(key(11, 1000, 20, 53).0, hi, u32::MAX - 1_000), 0).unwrap();
    assert!(!t.view(w).unwrap().expired(10_000));
}
