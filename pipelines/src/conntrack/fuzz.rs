//! The tracker under a fuzzer (`fuzz/fuzz_targets/conntrack.rs`): a conversation of up
//! to 64 packets between a VM behind a stateful port ("allow out, deny in") and a peer,
//! each packet TCP (any flags, sequence numbers near each side's start, a window scale
//! option), UDP, ICMP echo, an ICMP error quoting a packet, or raw bytes, possibly a
//! fragment, on either of two cores, with time moving on. Nothing may panic, and:
//! - a packet toward the VM passes only as part of a session the VM opened (established
//!   or related), as a later fragment of a datagram whose first passed, or untracked
//!   (not IP);
//! - every drop has a tracking or rule reason;
//! - the per-port index lists exactly the live sessions, after every packet;
//! - once every timeout has run out, every session is gone and its room is back.
use super::{decide, Checkpoint, CtPort, CtState, CtTable};
use crate::{
    acl::{AclAnswer, Direction, Verdict},
    fuzz::Input,
    meta::Meta,
    parse::parse,
    DropReason, VecFrame,
};

const VM: [u8; 4] = [10, 0, 0, 2];
const PEER: [u8; 4] = [10, 0, 0, 1];
const PORT: u16 = 2;

fn outbound_only(d: Direction, _: &Meta) -> AclAnswer {
    match d {
        Direction::In => (Verdict::Allow, Some(7)),
        Direction::Out => (Verdict::Deny, None),
    }
}

/// An Ethernet + IPv4 frame; `frag` is the flags-and-offset word.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0];
    f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 7]);
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(l4);
    f
}

/// The L4 bytes of a packet `from_vm` or toward it, as the input says.
fn l4(input: &mut Input, kind: u8, from_vm: bool) -> (u8, Vec<u8>) {
    let port = |input: &mut Input| 1000 + (input.u8() % 4) as u16;
    let (vm_port, peer_port) = (port(input), port(input));
    let (sport, dport) = if from_vm { (vm_port, peer_port) } else { (peer_port, vm_port) };
    let ports = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
    match kind {
        0 => {
            // Sequence numbers near each side's first, so handshakes and windows are
            // reachable; any flags; maybe a window scale option; some data.
            let (own, other) = if from_vm { (1_000u32, 500_000u32) } else { (500_000, 1_000) };
            let seq = own.wrapping_add(input.u16() as u32);
            let ack = other.wrapping_add(input.u16() as u32);
            let (flags, win, opt) = (input.u8(), input.u16(), input.u8());
            let mut h = ports;
            h.extend_from_slice(&seq.to_be_bytes());
            h.extend_from_slice(&ack.to_be_bytes());
            let scale = opt & 0x80 != 0;
            h.push(if scale { 6 << 4 } else { 5 << 4 });
            h.push(flags);
            h.extend_from_slice(&win.to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 0]);
            if scale {
                h.extend_from_slice(&[1, 3, 3, opt & 0x0f]);
            }
            h.resize(h.len() + (input.u8() % 64) as usize, 0);
            (6, h)
        }
        1 => {
            let mut h = ports;
            h.extend_from_slice(&[0, 18, 0, 0]);
            h.resize(18, 0);
            (17, h)
        }
        2 => {
            // An echo request or reply by id.
            let ty = if input.u8() & 1 == 0 { 8 } else { 0 };
            (1, vec![ty, 0, 0, 0, 0, input.u8() % 4, 0, 1])
        }
        _ => {
            // An ICMP error quoting a UDP or TCP header sent the other way.
            let (qsrc, qdst) = if from_vm { (PEER, VM) } else { (VM, PEER) };
            let proto = if input.u8() & 1 == 0 { 17 } else { 6 };
            let quoted = ipv4(qsrc, qdst, proto, 0, &[ports[2], ports[3], ports[0], ports[1], 0, 0, 0, 0]);
            let mut h = vec![3, input.u8() % 4, 0, 0, 0, 0, 0, 0];
            h.extend_from_slice(&quoted[14..]);
            (1, h)
        }
    }
}

/// The live sessions by index: the whole table's and the port index's agree.
fn check_index(t: &CtTable) {
    let mut all: Vec<u32> = t.sessions().map(|v| v.index).collect();
    let mut listed: Vec<u32> = t.at_port(PORT).map(|v| v.index).collect();
    all.sort_unstable();
    listed.sort_unstable();
    listed.dedup();
    assert_eq!(listed, all, "the port's index and the table");
    assert!(t.port_sessions(PORT) as usize >= all.len());
}

pub fn tracker(data: &[u8]) {
    let mut input = Input(data);
    // A ring of 16 events, never drained: a conversation fills it, so losing events is
    // exercised too (and a fresh table costs a few KB, not the default ring's 300).
    // (A fixed hash key: an input meets the same buckets every run.)
    let table = CtTable::with_memory(16, 2, 8, 16, |_, _| 0).keyed(super::table::HashKey::FIXED);
    // Timeouts of two minutes at most, so they run out within a conversation too.
    for (name, secs) in super::TIMEOUTS {
        table.timeouts.set(name, (*secs).min(120));
    }
    let c = input.u8();
    let cfg = CtPort {
        liberal: c & 1 != 0,
        pickup: c & 2 != 0,
        sticky: c & 4 != 0,
        max_sessions: if c & 8 != 0 { 4 } else { 0 },
        epoch: 1,
    };
    let mut now = 0u32;
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let ctl = input.u8();
        now = now.wrapping_add(input.u8() as u32 * 200);
        let (core, from_vm) = ((ctl & 1) as usize, ctl & 2 == 0);
        let (src, dst) = if from_vm { (VM, PEER) } else { (PEER, VM) };
        let frame = match (ctl >> 2) % 6 {
            5 => {
                let n = (input.u8() % 80) as usize;
                let raw: Vec<u8> = (0..n).map(|_| input.u8()).collect();
                [&ipv4(src, dst, 0, 0, &[])[..14], &raw].concat()
            }
            kind => {
                let (proto, l4) = l4(&mut input, kind.min(3), from_vm);
                // A fragment now and then: the first (more to come) or a later one.
                let frag = match ctl >> 6 {
                    1 => 0x2000,
                    2 => 0x2000 | (input.u8() % 4) as u16,
                    3 => (input.u8() % 4) as u16,
                    _ => 0,
                };
                ipv4(src, dst, proto, frag, &l4)
            }
        };
        let mut m = Meta::default();
        parse(&frame, &mut m);
        m.vni = 100;
        let dir = if from_vm { Direction::In } else { Direction::Out };
        let cp =
            Checkpoint { table: &table, port: PORT, cfg: &cfg, dir, core, now, dry: false, nat: None, found: None };
        let (_, pass) = decide(&cp, &VecFrame::new(&frame), &mut m, outbound_only);
        match pass {
            Ok(()) if !from_vm => assert!(
                matches!(m.ct.state, CtState::Established | CtState::Related)
                    || (m.ct.state == CtState::Untracked && m.ip_version == 0),
                "a packet toward the VM passed as {:?}",
                m.ct.state
            ),
            Ok(()) => {}
            Err(r) => assert!(
                matches!(
                    r,
                    DropReason::CtInvalid
                        | DropReason::AclDenyIn
                        | DropReason::AclDenyOut
                        | DropReason::CtFull
                        | DropReason::CtPortLimit
                ),
                "dropped as {r:?}"
            ),
        }
        table.expire(core, now, 64);
        check_index(&table);
    }
    // Every timeout runs out: everything goes, and all the room is back.
    let end = now.wrapping_add(200_000);
    for core in 0..2 {
        table.expire(core, end, 100_000);
    }
    assert_eq!(table.sessions().count(), 0, "sessions outlived every timeout");
    assert_eq!(table.port_sessions(PORT), 0);
    assert!(table.parts().iter().all(|p| p.live.load(std::sync::atomic::Ordering::Relaxed) == 0));
    check_index(&table);
}
