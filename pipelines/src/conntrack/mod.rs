//! Connection tracking: stateful security groups.
//!
//! On a stateful VM port the rules and the port's default decide only packets that
//! start a connection; packets of a connection under way (established) or of an ICMP
//! error about one (related) pass both ways, and invalid ones are dropped
//! (`ct_invalid`). A packet is tracked once, at the first stateful port it crosses
//! (the VM it leaves, or the VM it is delivered to), and its mark rides in its
//! metadata to the second.
//!
//! Sessions are keyed by zone (the VNI) and both endpoints (`key`); the table is shared
//! by the cores without a lock (`table`); TCP follows netfilter's tracker (`tcp`).
pub mod events;
pub mod fuzz;
pub mod key;
mod stage;
pub mod table;
pub mod tcp;

pub use key::{CtKey, Tuple};
pub use stage::{
    decide, established, established_opening, prefetch_bucket, prefetch_named, prefetch_where, Checkpoint, Decision,
};
pub use table::{CtTable, Full, NatKey, SessionView};

use std::sync::{
    atomic::{AtomicU32, Ordering::Relaxed},
    Arc,
};
use tcp::TcpState;

/// A stateful port's settings, as compiled for the cores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtPort {
    /// Out-of-window TCP segments (other than RST) pass.
    pub liberal: bool,
    /// Sessions keep passing after the rules that allowed them change.
    pub sticky: bool,
    /// A TCP segment other than SYN may open a session (a connection under way when
    /// tracking started).
    pub pickup: bool,
    /// Sessions this port may open (0: only the table's size limits them).
    pub max_sessions: u32,
    /// Bumped whenever the port's rules change: sessions allowed under an older epoch
    /// are checked again by their next packet.
    pub epoch: u16,
}

/// What the cores read: the table and the stateful ports.
#[derive(Default, Clone)]
pub struct CtTables {
    pub table: Option<Arc<CtTable>>,
    pub ports: Vec<Option<CtPort>>,
    /// Look, never touch: a trace finds sessions but neither makes nor moves them.
    pub dry: bool,
}

impl std::fmt::Debug for CtTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.ports.iter().flatten().count();
        write!(f, "CtTables({n} stateful ports)")
    }
}

impl CtTables {
    /// Port `p`'s settings, if it is stateful (and there is a table).
    #[inline(always)]
    pub fn port(&self, p: crate::PortId) -> Option<&CtPort> {
        self.table.as_ref()?;
        self.ports.get(p as usize)?.as_ref()
    }
}

/// What tracking found for a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CtState {
    /// Not tracked yet, or not trackable (not IP; neighbour discovery): the rules decide.
    #[default]
    Untracked,
    /// It would start a connection: the rules decide.
    New,
    Established,
    /// An ICMP error about a tracked connection.
    Related,
    Invalid,
}

impl CtState {
    pub fn name(self) -> &'static str {
        match self {
            CtState::Untracked => "untracked",
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::Invalid => "invalid",
        }
    }
}

/// Why a packet is invalid, counted per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum InvalidReason {
    /// A TCP flag combination no stack sends.
    TcpFlags,
    /// A segment the connection's state does not expect (a stray ACK or SYN+ACK).
    TcpState,
    /// Outside the window the other side opened.
    TcpWindow,
    /// A RST outside the window or behind what was acknowledged.
    TcpRst,
    /// An ICMP error about no tracked connection, or an echo reply nobody asked for.
    Unrelated,
    /// Too short or malformed for its protocol.
    Malformed,
    /// A fragment after the first whose first did not pass here lately.
    Fragment,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 7] = [
        InvalidReason::TcpFlags,
        InvalidReason::TcpState,
        InvalidReason::TcpWindow,
        InvalidReason::TcpRst,
        InvalidReason::Unrelated,
        InvalidReason::Malformed,
        InvalidReason::Fragment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            InvalidReason::TcpFlags => "tcp_flags",
            InvalidReason::TcpState => "tcp_state",
            InvalidReason::TcpWindow => "tcp_window",
            InvalidReason::TcpRst => "tcp_rst",
            InvalidReason::Unrelated => "unrelated",
            InvalidReason::Malformed => "malformed",
            InvalidReason::Fragment => "fragment",
        }
    }

    fn of(i: tcp::Invalid) -> InvalidReason {
        match i {
            tcp::Invalid::Flags => InvalidReason::TcpFlags,
            tcp::Invalid::State => InvalidReason::TcpState,
            tcp::Invalid::Window => InvalidReason::TcpWindow,
            tcp::Invalid::Rst => InvalidReason::TcpRst,
        }
    }
}

/// A packet's tracking result, kept in its metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtMark {
    pub tracked: bool,
    pub state: CtState,
    /// The session's index + 1 (0: none). Before the packet is tracked: the session
    /// the batch's prefetch saw first under its key's tag, for the checkpoint that
    /// decides it next to try first (checked against the key like any other).
    pub session: u32,
    /// Sent by the side that answered the connection.
    pub reply: bool,
    /// The key's hash, when the batch's prefetch pass computed it (0: not yet).
    pub hash: u64,
}

/// Timeouts by protocol and state, in milliseconds; set by the control plane, read by
/// the cores' expiry.
pub struct Timeouts {
    tcp: [AtomicU32; 10],
    udp: AtomicU32,
    pub(crate) udp_stream: AtomicU32,
    icmp: AtomicU32,
    generic: AtomicU32,
}

/// Every timeout's name and netfilter's default, in seconds.
pub const TIMEOUTS: &[(&str, u32)] = &[
    ("tcp_syn_sent", 120),
    ("tcp_syn_recv", 60),
    ("tcp_established", 432_000),
    ("tcp_fin_wait", 120),
    ("tcp_close_wait", 60),
    ("tcp_last_ack", 30),
    ("tcp_time_wait", 120),
    ("tcp_close", 10),
    ("tcp_syn_sent2", 120),
    ("udp", 30),
    ("udp_stream", 120),
    ("icmp", 30),
    ("generic", 600),
];

impl Default for Timeouts {
    fn default() -> Timeouts {
        let t = Timeouts {
            tcp: Default::default(),
            udp: AtomicU32::new(0),
            udp_stream: AtomicU32::new(0),
            icmp: AtomicU32::new(0),
            generic: AtomicU32::new(0),
        };
        for (name, secs) in TIMEOUTS {
            t.set(name, *secs);
        }
        t
    }
}

impl Timeouts {
    fn slot(&self, name: &str) -> Option<&AtomicU32> {
        Some(match name {
            "udp" => &self.udp,
            "udp_stream" => &self.udp_stream,
            "icmp" => &self.icmp,
            "generic" => &self.generic,
            _ => {
                let state = name.strip_prefix("tcp_")?.to_ascii_uppercase();
                let s = TcpState::ALL.iter().find(|s| s.name() == state && **s != TcpState::None)?;
                &self.tcp[*s as usize]
            }
        })
    }

    /// Sets timeout `name` (one of `TIMEOUTS`) to `secs`; false if there is no such.
    pub fn set(&self, name: &str, secs: u32) -> bool {
        match self.slot(name) {
            Some(a) => {
                a.store(secs.saturating_mul(1000).min(i32::MAX as u32), Relaxed);
                true
            }
            None => false,
        }
    }

    /// An established TCP connection's (no reset seen).
    #[inline(always)]
    pub(crate) fn established(&self) -> &AtomicU32 {
        &self.tcp[TcpState::Established as usize]
    }

    /// Timeout `name` in seconds.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.slot(name).map(|a| a.load(Relaxed) / 1000)
    }

    /// A session's timeout: by protocol and, for TCP, state; UDP and other protocols by
    /// whether it was answered.
    #[inline]
    pub fn of(&self, proto: u8, state_word: u32) -> u32 {
        let replied = state_word & table::SEEN_REPLY != 0;
        match proto {
            crate::wire::ipv4::PROTO_TCP if state_word & table::RST_SEEN != 0 => {
                self.tcp[TcpState::Close as usize].load(Relaxed)
            }
            crate::wire::ipv4::PROTO_TCP => self.tcp[(state_word & table::PROTO_STATE).min(9) as usize].load(Relaxed),
            crate::wire::ipv4::PROTO_UDP if replied => self.udp_stream.load(Relaxed),
            crate::wire::ipv4::PROTO_UDP => self.udp.load(Relaxed),
            key::PROTO_ICMP | key::PROTO_ICMPV6 => self.icmp.load(Relaxed),
            _ => self.generic.load(Relaxed),
        }
    }
}

/// Milliseconds on the tracker's clock (wraps every 49 days; compared modulo 2^32).
#[inline]
pub fn now_ms(c: crate::clock::Clock) -> u32 {
    (c.now / (c.hz / 1000).max(1)) as u32
}
