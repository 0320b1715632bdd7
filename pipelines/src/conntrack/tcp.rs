//! TCP connection tracking as netfilter does it (`nf_conntrack_proto_tcp`): a state per
//! connection moved by each segment's flags and direction, and per direction the
//! sequence space the peer has opened (Rooij's "Real stateful TCP packet filtering").
//! A segment outside the window is invalid; so is a flag combination no stack sends.
//! Written from the protocol's behaviour, with netfilter's tables as the reference the
//! kernel-differential test holds us to.

/// A connection's state, in netfilter's order and names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    #[default]
    None = 0,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    /// Simultaneous open: both sides sent a SYN.
    SynSent2,
}

impl TcpState {
    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    pub fn from_u8(v: u8) -> TcpState {
        Self::ALL.get(v as usize).copied().unwrap_or_default()
    }

    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// What a segment tells the tracker, read once from its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    /// Payload bytes (all of a TSO frame's segments together).
    pub len: u32,
    /// The window scale option, if the segment carries one.
    pub wscale: Option<u8>,
}

impl Segment {
    /// Reads the TCP header at `tcp` with `payload` bytes after it; None if it is
    /// shorter than its data offset says.
    pub fn parse(tcp: &[u8], l4_len: usize) -> Option<Segment> {
        let h = tcp.get(..20)?;
        let doff = (h[12] >> 4) as usize * 4;
        if doff < 20 || l4_len < doff {
            return None;
        }
        let opts = tcp.get(20..doff)?;
        Some(Segment {
            flags: h[13],
            seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            win: u16::from_be_bytes([h[14], h[15]]),
            len: (l4_len - doff) as u32,
            wscale: window_scale(opts),
        })
    }

    /// seq + payload + one for each of SYN and FIN.
    pub(super) fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.len)
            .wrapping_add((self.flags & SYN != 0) as u32)
            .wrapping_add((self.flags & FIN != 0) as u32)
    }

    pub(super) fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// A combination a TCP stack sends (PSH, ECE and CWR aside).
    pub fn valid_flags(&self) -> bool {
        matches!(self.flags & !(ECE | CWR | PSH), SYN | 0x22 | 0x12 | RST | 0x14 | 0x11 | 0x31 | ACK | 0x30)
    }

    fn index(&self) -> usize {
        if self.has(RST) {
            RST_I
        } else if self.has(SYN) {
            if self.has(ACK) {
                SYNACK_I
            } else {
                SYN_I
            }
        } else if self.has(FIN) {
            FIN_I
        } else if self.has(ACK) {
            ACK_I
        } else {
            NONE_I
        }
    }
}

/// The window scale option's shift (at most 14), if present.
fn window_scale(mut o: &[u8]) -> Option<u8> {
    while let Some(&kind) = o.first() {
        match kind {
            0 => return None,
            1 => o = &o[1..],
            _ => {
                let len = *o.get(1)? as usize;
                if len < 2 || len > o.len() {
                    return None;
                }
                if kind == 3 && len == 3 {
                    return Some(o[2].min(14));
                }
                o = &o[len..];
            }
        }
    }
    None
}

const SYN_I: usize = 0;
const SYNACK_I: usize = 1;
const FIN_I: usize = 2;
const ACK_I: usize = 3;
const RST_I: usize = 4;
const NONE_I: usize = 5;

/// A transition's result: a state, or invalid (`IV`), or ignored (`IG`: the segment
/// passes and changes nothing).
const IV: u8 = 100;
const IG: u8 = 101;
const NO: u8 = TcpState::None as u8;
const SS: u8 = TcpState::SynSent as u8;
const SR: u8 = TcpState::SynRecv as u8;
const ES: u8 = TcpState::Established as u8;
const FW: u8 = TcpState::FinWait as u8;
const CW: u8 = TcpState::CloseWait as u8;
const LA: u8 = TcpState::LastAck as u8;
const TW: u8 = TcpState::TimeWait as u8;
const CL: u8 = TcpState::Close as u8;
const S2: u8 = TcpState::SynSent2 as u8;

/// [direction][segment kind][state]: the next state. Columns: NONE, SYN_SENT,
/// SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2.
const NEXT: [[[u8; 10]; 6]; 2] = [
    // From the side that opened the connection.
    [
        [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2], // SYN: a retry, or a reopen after TIME_WAIT
        [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR], // SYN+ACK
        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV], // FIN
        [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV], // ACK
        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL], // RST
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV], // none of them
    ],
    // From the side that answered.
    [
        [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];
const _: () = assert!(NO == 0);

/// Per direction: the sequence space seen and allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Side {
    /// Highest seq + len sent.
    pub end: u32,
    /// Highest ack + window the peer allowed: where this side may send up to.
    pub maxend: u32,
    /// Largest window this side advertised (scaled).
    pub maxwin: u32,
    /// Highest ack this side sent.
    pub maxack: u32,
    pub scale: u8,
    pub flags: u8,
}

/// `Side::flags`
pub const F_WSCALE: u8 = 1;
pub const F_CLOSE_INIT: u8 = 2;
pub const F_MAXACK: u8 = 4;
/// Picked up mid-stream: windows unknown, so not checked.
pub const F_LIBERAL: u8 = 8;

/// One connection's TCP state: index 0 is the side that opened it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpConn {
    pub state: TcpState,
    pub side: [Side; 2],
}

/// What a segment did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Part of the connection; its state may have moved.
    Valid,
    /// Passes, but changes nothing (a retransmitted SYN+ACK, a SYN on a live
    /// connection).
    Ignored,
    /// A SYN after the connection closed: the caller starts it again (as new), from
    /// the side that sent it.
    Reopen,
    Invalid(Invalid),
}

/// Why a segment is invalid: counted per reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    Flags,
    State,
    Window,
    Rst,
}

impl Invalid {
    pub const ALL: [Invalid; 4] = [Invalid::Flags, Invalid::State, Invalid::Window, Invalid::Rst];
    pub fn name(self) -> &'static str {
        match self {
            Invalid::Flags => "tcp_flags",
            Invalid::State => "tcp_state",
            Invalid::Window => "tcp_window",
            Invalid::Rst => "tcp_rst",
        }
    }
}

/// Sequence-space comparisons, modulo 2^32.
#[inline]
pub(super) fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
pub(super) fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// The lowest an ack may be: an old ack within the larger of the sender's window and
/// 66,000 bytes is accepted (delayed acks).
pub(super) const MAX_ACK_WINDOW: u32 = 66_000;

/// Where a segment lies against the bounds of its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bounds {
    /// In the window: the bounds move.
    In,
    /// Past what the receiver allowed by no more than its window, with a good ack: a
    /// stack that overshoots the window (Linux takes these since 5.18); only the
    /// sender's end moves.
    Overshoot,
    /// An old ack (overly delayed): passes, moves nothing.
    OldAck,
    Out,
}

/// The window check (the sender's `s_*`, the receiver's `r_*`; `seq`, `end`, `ack` of
/// the segment as the tracker reads them).
#[allow(clippy::too_many_arguments)]
pub(super) fn bounds(
    seq: u32,
    end: u32,
    ack: u32,
    s_end: u32,
    s_maxend: u32,
    s_maxwin: u32,
    r_end: u32,
    r_maxwin: u32,
) -> Bounds {
    let ack_ok = after(ack, r_end.wrapping_sub(s_maxwin.max(MAX_ACK_WINDOW)).wrapping_sub(1));
    let in_recv_win = r_maxwin == 0 || after(end, s_end.wrapping_sub(r_maxwin).wrapping_sub(1));
    if after(seq, s_maxend) {
        let overshot = end.wrapping_sub(s_maxend);
        return if r_maxwin != 0 && in_recv_win && ack_ok && overshot <= r_maxwin && !after(ack, r_end) {
            Bounds::Overshoot
        } else {
            Bounds::Out
        };
    }
    if after(ack, r_end) || !in_recv_win {
        return Bounds::Out;
    }
    if ack_ok {
        Bounds::In
    } else {
        Bounds::OldAck
    }
}

/// What the window check makes of a segment.
enum Window {
    /// Take it and move the state.
    Accept,
    /// Pass it, change nothing.
    Ignore,
    Invalid,
}

impl TcpConn {
    /// A connection opened by `seg` (a SYN; or, with `pickup`, any valid segment of a
    /// connection already under way). None when `seg` may not open one.
    pub fn open(seg: &Segment, pickup: bool) -> Option<TcpConn> {
        if !seg.valid_flags() {
            return None;
        }
        let next = NEXT[0][seg.index()][0];
        let mut c = TcpConn::default();
        let s = &mut c.side[0];
        s.end = seg.end();
        s.maxwin = (seg.win as u32).max(1);
        if next == SS {
            c.state = TcpState::SynSent;
            s.maxend = s.end;
            if let Some(w) = seg.wscale {
                s.scale = w;
                s.flags |= F_WSCALE;
            }
        } else if pickup && next != IV {
            // Mid-stream: neither window scale is known, so windows are not checked.
            c.state = TcpState::from_u8(next);
            s.maxend = s.end.wrapping_add(s.maxwin);
            s.flags |= F_LIBERAL;
            c.side[1].flags |= F_LIBERAL;
        } else {
            return None;
        }
        Some(c)
    }

    /// Tracks `seg` sent by side `dir` (0: the opener). `liberal`: out-of-window
    /// segments other than RST pass.
    pub fn track(&mut self, dir: usize, seg: &Segment, liberal: bool) -> Outcome {
        if !seg.valid_flags() {
            return Outcome::Invalid(Invalid::Flags);
        }
        let dir = dir & 1;
        let old = self.state as u8;
        let index = seg.index();
        let mut next = NEXT[dir][index][old as usize];
        match next {
            IV => return Outcome::Invalid(Invalid::State),
            IG => return Outcome::Ignored,
            SS if old >= TW => return Outcome::Reopen,
            // A connection already closing: a reset ends it however stale its numbers.
            // After a close, the peer's segments still in flight each draw a reset
            // quoting the ack they carried, which may be behind what the peer has since
            // acknowledged (netfilter lets these through unchecked too).
            CL if index == RST_I && (FW..=CL).contains(&old) => {
                self.state = TcpState::Close;
                return Outcome::Valid;
            }
            CL if index == RST_I => {
                // A RST below what the other side has acknowledged is stale (or forged).
                let peer = &self.side[dir ^ 1];
                if peer.flags & F_MAXACK != 0 && before(seg.seq, peer.maxack) {
                    return Outcome::Invalid(Invalid::Rst);
                }
                // An established connection ends only at a RST exactly where its sender
                // stands: what the peer acknowledged, or the end of what it sent (data
                // and its RST in one train). One elsewhere in the window passes but ends
                // nothing: the receiver answers it with a challenge ACK (RFC 5961), and
                // a blind attacker who hits the window does not end our session.
                if old == ES && peer.flags & F_MAXACK != 0 && seg.seq != peer.maxack && seg.seq != self.side[dir].end {
                    next = ES;
                }
            }
            _ => {}
        }
        match self.in_window(dir, seg, liberal || self.side[dir].flags & F_LIBERAL != 0) {
            Window::Accept => {}
            Window::Ignore => return Outcome::Ignored,
            Window::Invalid => return Outcome::Invalid(if seg.has(RST) { Invalid::Rst } else { Invalid::Window }),
        }
        self.state = TcpState::from_u8(next);
        if old != next && next == FW {
            self.side[dir].flags |= F_CLOSE_INIT;
        }
        Outcome::Valid
    }

    /// Whether `seg` from `dir` lies in the window, updating both sides' bounds when it
    /// does (netfilter's `tcp_in_window`, without SACK and NAT offsets).
    fn in_window(&mut self, dir: usize, seg: &Segment, liberal: bool) -> Window {
        let (s, r) = if dir == 0 {
            let (a, b) = self.side.split_at_mut(1);
            (&mut a[0], &mut b[0])
        } else {
            let (a, b) = self.side.split_at_mut(1);
            (&mut b[0], &mut a[0])
        };
        let mut seq = seg.seq;
        let mut ack = seg.ack;
        let mut win = seg.win as u32;
        let mut end = seg.end();
        let syn = seg.has(SYN);
        if s.maxwin == 0 {
            // The first segment seen from this side.
            if syn {
                s.end = end;
                s.maxend = end;
                s.maxwin = win.max(1);
                match seg.wscale {
                    Some(w) => {
                        s.scale = w;
                        s.flags |= F_WSCALE;
                    }
                    None => s.flags &= !F_WSCALE,
                }
                if !(s.flags & F_WSCALE != 0 && r.flags & F_WSCALE != 0) {
                    s.scale = 0;
                    r.scale = 0;
                }
                if !seg.has(ACK) {
                    return Window::Accept;
                }
            } else {
                s.end = end;
                let swin = win << s.scale;
                s.maxwin = swin.max(1);
                s.maxend = end.wrapping_add(s.maxwin);
                if r.maxwin == 0 {
                    r.end = ack;
                    r.maxend = ack;
                }
            }
        } else if ((self.state == TcpState::SynSent && dir == 0) || (self.state == TcpState::SynRecv && dir == 1))
            && after(end, s.end)
        {
            // A new SYN (or SYN+ACK) with another initial sequence number.
            s.end = end;
            s.maxend = end;
            s.maxwin = win.max(1);
            if let Some(w) = seg.wscale {
                s.scale = w;
                s.flags |= F_WSCALE;
            }
        }
        if !seg.has(ACK) || (seg.has(RST) && ack == 0) {
            ack = r.end;
        }
        if seq == end && (!seg.has(RST) || (seq == 0 && self.state == TcpState::SynSent)) {
            seq = s.end;
            end = s.end;
        }
        match bounds(seq, end, ack, s.end, s.maxend, s.maxwin, r.end, r.maxwin) {
            Bounds::In => {}
            Bounds::Overshoot => {
                s.end = end;
                return Window::Accept;
            }
            _ if liberal && !seg.has(RST) => return Window::Accept,
            Bounds::OldAck => return Window::Ignore,
            Bounds::Out => return Window::Invalid,
        }
        if !syn {
            win <<= s.scale;
        }
        s.maxwin = s.maxwin.max(win);
        if after(end, s.end) {
            s.end = end;
        }
        if seg.has(ACK) {
            if s.flags & F_MAXACK == 0 {
                s.maxack = ack;
                s.flags |= F_MAXACK;
            } else if after(ack, s.maxack) {
                s.maxack = ack;
            }
        }
        if r.maxwin != 0 && after(end, s.maxend) {
            r.maxwin = r.maxwin.wrapping_add(end.wrapping_sub(s.maxend));
        }
        if after(ack.wrapping_add(win), r.maxend.wrapping_sub(1)) {
            r.maxend = ack.wrapping_add(win);
            if win == 0 {
                r.maxend = r.maxend.wrapping_add(1);
            }
        }
        Window::Accept
    }
}

#[cfg(test)]
mod tests;
