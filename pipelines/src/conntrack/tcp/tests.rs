use super::*;

fn seg(flags: u8, seq: u32, ack: u32, len: u32) -> Segment {
    Segment { flags, seq, ack, win: 64240, len, wscale: None }
}

/// A handshake from client ISN 1000 to server ISN 5000.
fn established() -> TcpConn {
    let mut c = TcpConn::open(&seg(SYN, 1000, 0, 0), false).unwrap();
    assert_eq!(c.state, TcpState::SynSent);
    assert_eq!(c.track(1, &seg(SYN | ACK, 5000, 1001, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::SynRecv);
    assert_eq!(c.track(0, &seg(ACK, 1001, 5001, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::Established);
    c
}

#[test]
fn handshake_data_and_close() {
    let mut c = established();
    assert_eq!(c.track(0, &seg(ACK | PSH, 1001, 5001, 100), false), Outcome::Valid);
    assert_eq!(c.track(1, &seg(ACK, 5001, 1101, 0), false), Outcome::Valid);
    assert_eq!(c.track(0, &seg(FIN | ACK, 1101, 5001, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::FinWait);
    assert_eq!(c.track(1, &seg(FIN | ACK, 5001, 1102, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::LastAck);
    assert_eq!(c.track(0, &seg(ACK, 1102, 5002, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::TimeWait);
    // A new SYN on the same ports starts the connection again.
    assert_eq!(c.track(0, &seg(SYN, 9000, 0, 0), false), Outcome::Reopen);
}

#[test]
fn only_a_syn_opens_unless_picking_up() {
    assert!(TcpConn::open(&seg(SYN | ACK, 1, 2, 0), false).is_none());
    assert!(TcpConn::open(&seg(ACK, 1, 2, 0), false).is_none());
    assert!(TcpConn::open(&seg(RST, 1, 0, 0), false).is_none());
    assert!(TcpConn::open(&seg(SYN | FIN, 1, 0, 0), false).is_none());
    let c = TcpConn::open(&seg(ACK, 1, 2, 10), true).unwrap();
    assert_eq!(c.state, TcpState::Established);
    assert!(TcpConn::open(&seg(SYN | ACK, 1, 2, 0), true).is_none());
}

#[test]
fn data_beyond_the_window_is_invalid_unless_liberal() {
    let mut c = established();
    // The server advertised 64240 bytes from 1001.
    let far = seg(ACK, 1001 + 200_000, 5001, 100);
    assert_eq!(c.track(0, &far, false), Outcome::Invalid(Invalid::Window));
    assert_eq!(c.track(0, &far, true), Outcome::Valid);
    // An ack for data the server never sent.
    assert_eq!(c.track(0, &seg(ACK, 1001, 5001 + 100_000, 0), false), Outcome::Invalid(Invalid::Window));
}

#[test]
fn rst_counts_only_in_window() {
    let mut c = established();
    c.track(0, &seg(ACK | PSH, 1001, 5001, 1000), false);
    c.track(1, &seg(ACK, 5001, 2001, 0), false);
    // Behind what the server acknowledged: stale or forged.
    assert_eq!(c.track(0, &seg(RST, 1500, 0, 0), false), Outcome::Invalid(Invalid::Rst));
    // Far ahead of the window.
    assert_eq!(c.track(0, &seg(RST, 900_000, 0, 0), false), Outcome::Invalid(Invalid::Rst));
    assert_eq!(c.track(0, &seg(RST, 900_000, 0, 0), true), Outcome::Invalid(Invalid::Rst));
    assert_eq!(c.state, TcpState::Established);
    assert_eq!(c.track(0, &seg(RST, 2001, 0, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::Close);
}

#[test]
fn an_established_connection_ends_only_at_a_reset_where_its_sender_stands() {
    let mut c = established();
    c.track(0, &seg(ACK | PSH, 1001, 5001, 1000), false);
    c.track(1, &seg(ACK, 5001, 1501, 0), false);
    // In the window, but neither where the server acknowledged (1501) nor where the
    // client's data ends (2001): it passes, the connection stays.
    assert_eq!(c.track(0, &seg(RST, 1800, 0, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::Established);
    assert_eq!(c.track(0, &seg(ACK | PSH, 2001, 5001, 10), false), Outcome::Valid);
    // At the end of what the client sent: a train of data and its RST.
    assert_eq!(c.track(0, &seg(RST, 2011, 0, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::Close);
    // At what the other side acknowledged.
    let mut c = established();
    c.track(0, &seg(ACK | PSH, 1001, 5001, 1000), false);
    c.track(1, &seg(ACK, 5001, 1501, 0), false);
    assert_eq!(c.track(0, &seg(RST, 1501, 0, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::Close);
}

#[test]
fn a_closing_connection_takes_every_reset_of_its_peer() {
    // The server closes first; the client acks its FIN, but data the client sent
    // before it saw the FIN is still in flight and quotes the older ack.
    let mut c = established();
    assert_eq!(c.track(0, &seg(ACK | PSH, 1001, 5001, 100), false), Outcome::Valid);
    assert_eq!(c.track(1, &seg(FIN | ACK, 5001, 1101, 0), false), Outcome::Valid);
    assert_eq!(c.track(0, &seg(ACK, 1101, 5002, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::CloseWait);
    assert_eq!(c.track(0, &seg(ACK | PSH, 1101, 5001, 100), false), Outcome::Valid);
    // The server, its socket gone, resets each such segment at the ack it carried:
    // one below the FIN the client acknowledged.
    for _ in 0..3 {
        assert_eq!(c.track(1, &seg(RST, 5001, 0, 0), false), Outcome::Valid);
        assert_eq!(c.state, TcpState::Close);
    }
    // Still open, the same reset is behind what the client acknowledged: refused.
    let mut open = established();
    open.track(1, &seg(ACK | PSH, 5001, 1001, 10), false);
    open.track(0, &seg(ACK, 1001, 5011, 0), false);
    assert_eq!(open.track(1, &seg(RST, 5001, 0, 0), false), Outcome::Invalid(Invalid::Rst));
    assert_eq!(open.state, TcpState::Established);
}

#[test]
fn window_scaling_widens_the_window() {
    let mut syn = seg(SYN, 1000, 0, 0);
    syn.wscale = Some(7);
    let mut c = TcpConn::open(&syn, false).unwrap();
    let mut synack = seg(SYN | ACK, 5000, 1001, 0);
    synack.wscale = Some(7);
    synack.win = 65535;
    assert_eq!(c.track(1, &synack, false), Outcome::Valid);
    let mut ack = seg(ACK, 1001, 5001, 0);
    ack.win = 1000;
    assert_eq!(c.track(0, &ack, false), Outcome::Valid);
    // The server opens 1000 << 7 = 128000 bytes: data 100 KB ahead is in the window.
    let mut wnd = seg(ACK, 5001, 1001, 0);
    wnd.win = 1000;
    assert_eq!(c.track(1, &wnd, false), Outcome::Valid);
    assert_eq!(c.track(0, &seg(ACK, 1001 + 100_000, 5001, 1000), false), Outcome::Valid);
    // Past what the server allowed by less than its window: taken, as Linux does.
    assert_eq!(c.track(0, &seg(ACK, 1001 + 200_000, 5001, 1000), false), Outcome::Valid);
    assert_eq!(c.track(0, &seg(ACK, 1001 + 400_000, 5001, 1000), false), Outcome::Invalid(Invalid::Window));
    // An ack older than any window: passes, changes nothing.
    assert_eq!(c.track(1, &seg(ACK, 5001, 1001u32.wrapping_sub(1_000_000), 0), false), Outcome::Ignored);
    // Without scaling on both sides, neither scales.
    let mut c = TcpConn::open(&syn, false).unwrap();
    c.track(1, &seg(SYN | ACK, 5000, 1001, 0), false);
    assert_eq!((c.side[0].scale, c.side[1].scale), (0, 0));
}

#[test]
fn retransmitted_syn_and_synack() {
    let mut c = TcpConn::open(&seg(SYN, 1000, 0, 0), false).unwrap();
    assert_eq!(c.track(0, &seg(SYN, 1000, 0, 0), false), Outcome::Valid);
    assert_eq!(c.state, TcpState::SynSent);
    let mut c = established();
    assert_eq!(c.track(1, &seg(SYN | ACK, 5000, 1001, 0), false), Outcome::Ignored);
    assert_eq!(c.track(0, &seg(SYN, 1000, 0, 0), false), Outcome::Ignored);
    assert_eq!(c.state, TcpState::Established);
}

#[test]
fn options_are_read_safely() {
    let mut h = [0u8; 24];
    h[12] = 6 << 4;
    h[13] = SYN;
    h[20..24].copy_from_slice(&[1, 3, 3, 9]);
    let s = Segment::parse(&h, 24).unwrap();
    assert_eq!(s.wscale, Some(9));
    h[20..24].copy_from_slice(&[3, 0, 0, 0]);
    assert_eq!(Segment::parse(&h, 24).unwrap().wscale, None);
    h[20..24].copy_from_slice(&[3, 200, 0, 0]);
    assert_eq!(Segment::parse(&h, 24).unwrap().wscale, None);
    // Data offset past the segment.
    assert!(Segment::parse(&h, 22).is_none());
    h[12] = 4 << 4;
    assert!(Segment::parse(&h, 24).is_none());
}
