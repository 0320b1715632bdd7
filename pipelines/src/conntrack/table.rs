//! The session table: preallocated, shared by every core, no lock.
//!
//! Sessions live in one array; an index of 8-entry buckets (one cache line each) maps a
//! key's hash to them, two candidate buckets per key. Each core owns a slice of the
//! array: it allocates from its own free list and expires what it created through its
//! own timer wheel, so nothing is ever freed by a core that does not own it and no list
//! is shared. Any core may find and update any session (the two directions of a
//! connection may be polled by different cores):
//! - a session's key is published under a generation counter (odd while rewritten), so
//!   a reader that raced a reuse sees the change and takes it as a miss;
//! - its protocol state is updated by whoever wins a try-bit in the state word; a core
//!   that loses (the other direction's core, that very instant) decides from the state
//!   as it was and does not update it. Nobody waits.
use super::{
    events::{Event, EventKind},
    key::{key_words, words_key, CtKey, KeyWords, Tuple, ZONE_BITS},
    tcp::{Segment, Side, TcpConn, TcpState},
    Timeouts,
};
use crate::meta::IpKey;
use std::sync::atomic::{
    fence, AtomicU32, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst},
};

/// `Session::state` bits.
pub const SEEN_REPLY: u32 = 1 << 8;
pub const ASSURED: u32 = 1 << 9;
/// The side that opened the connection is the key's `hi` endpoint.
pub const ORIG_HI: u32 = 1 << 10;
/// Flushed: gone from the index, freed by its owner at its next wheel turn.
pub const DEAD: u32 = 1 << 11;
/// Held by the core updating it.
const BUSY: u32 = 1 << 12;
/// The rules at side 0's / side 1's port no longer allow it (see `epochs`).
pub const REVOKED: [u32; 2] = [1 << 13, 1 << 14];
/// In use (not on a free list).
pub const LIVE: u32 = 1 << 15;
/// Bits 0..7: the protocol's state (TCP: `TcpState`).
pub(super) const PROTO_STATE: u32 = 0x7f;
/// TCP: a RST left the connection as it was (not where its sender stands, see
/// `TcpConn::track`): it times out as a closed one unless a packet that is not a RST
/// follows (the challenge ACK its receiver sends), as in netfilter.
pub const RST_SEEN: u32 = 1 << 7;

/// One connection: 128 bytes. The first cache line holds all that finding it and
/// passing a UDP (or other non-TCP) packet of it reads and writes: its key, state word,
/// clock, policy epochs and recent counts. The second holds TCP's windows and what only
/// its making and ending touch, so an established UDP packet costs one line.
#[repr(C, align(128))]
#[derive(Default)]
pub struct Session {
    key_gen: AtomicU32,
    pub(super) state: AtomicU32,
    /// lo address (2 words), hi address (2), then zone (a VNI: 24 bits) << 40 | proto << 32
    /// | lo port << 16 | hi port.
    key: [AtomicU64; 5],
    /// Milliseconds on the table's clock.
    pub(super) last_seen: AtomicU32,
    /// Per side, the policy epoch of that side's port when its rules last allowed it.
    pub(super) epochs: AtomicU32,
    /// Per direction (opener, answerer), what passed since the last carry into the
    /// table's `Totals` (see `Recent`).
    recent: [AtomicU32; 2],
    /// The owner's free list or timer wheel (index + 1; 0 ends the list).
    next: AtomicU32,
    /// TCP: per side end, maxend, maxwin, maxack; then scales and flags.
    tcp: [AtomicU32; 9],
    /// The port each side is behind, where a stateful port saw it (0xffff: none).
    pub(super) ports: AtomicU32,
    pub(super) created: AtomicU32,
    /// The previous and next session (index + 1) its owner made at the same port: the
    /// index `conntrack list/flush --port` follows instead of walking the table.
    by_port: [AtomicU32; 2],
}

const _: () = assert!(std::mem::size_of::<Session>() == 128);
const _: () = assert!(std::mem::offset_of!(Session, recent) + 8 <= 64 && std::mem::offset_of!(Session, tcp) >= 64);

/// A session's counts carried out of its `recent` words: touched once in 128 packets
/// or 8 MiB a direction, and when it ends (read into its end event, then cleared for
/// the slot's next session).
#[repr(C, align(16))]
#[derive(Default)]
struct Totals {
    packets: [AtomicU32; 2],
    bytes: AtomicU64,
}

/// A direction's recent counts in one word: packets in the top 8 bits, bytes in the
/// low 24. Each field is carried out (into `Totals`) once its top bit is set, so that a
/// packet shorter than `MAX_LEN` can be added to any word without overflowing a field,
/// and one check of the sum says whether to carry.
struct Recent;

impl Recent {
    const PACKET_SHIFT: u32 = 24;
    const PACKET: u32 = 1 << Self::PACKET_SHIFT;
    const BYTES: u32 = Self::PACKET - 1;
    /// Set in a sum whose packets or bytes field is full enough to carry.
    const FULL: u32 = 0x8080_0000;
    /// Longer packets are carried at once.
    const MAX_LEN: u32 = 1 << 23;

    /// The word `w` with a packet of `len` bytes added, or None if it is to be carried.
    #[inline(always)]
    fn add(w: u32, len: u32) -> Option<u32> {
        let n = w.wrapping_add(Self::PACKET | len);
        (n & Self::FULL == 0 && len < Self::MAX_LEN).then_some(n)
    }

    #[inline(always)]
    fn unpack(w: u32) -> (u32, u32) {
        (w >> Self::PACKET_SHIFT, w & Self::BYTES)
    }
}

/// Whether time `due` has come at `now` (on the table's clock, which wraps): a session
/// is expired from its deadline on, as in netfilter's `nf_ct_is_expired`, for the wheel
/// and for a lookup alike.
#[inline]
fn overdue(now: u32, due: u32) -> bool {
    (now.wrapping_sub(due) as i32) >= 0
}

/// A session's `epochs` word, side 0's first.
#[inline(always)]
fn split_epochs(e: u32) -> [u16; 2] {
    [e as u16, (e >> 16) as u16]
}

impl Session {
    /// Its key's words as they stand (unchecked: see `CtTable::read_key`).
    #[inline(always)]
    fn words(&self) -> KeyWords {
        std::array::from_fn(|i| self.key[i].load(Relaxed))
    }
}

/// Whether key words `w` are `t`'s key, and if so whether `t`'s sender is its `hi` end.
#[inline(always)]
fn laid_either_way(w: &KeyWords, t: &Tuple) -> Option<bool> {
    // (As `key_words` lays a key out, with `lo` and `hi` the packet's ends one way.)
    // (The low word of the `lo` address first: the way round that is not the key's
    // mostly fails there, before the packed word is made.)
    let laid = |lo: (u128, u16), hi: (u128, u16)| {
        w[0] == lo.0 as u64
            && w[4] == ((t.zone & ZONE_BITS) as u64) << 40 | (t.proto as u64) << 32 | (lo.1 as u64) << 16 | hi.1 as u64
            && w[1] == (lo.0 >> 64) as u64
            && w[2] == hi.0 as u64
            && w[3] == (hi.0 >> 64) as u64
    };
    if laid(t.src, t.dst) {
        Some(false)
    } else if laid(t.dst, t.src) {
        Some(true)
    } else {
        None
    }
}

type Bucket = [AtomicU64; 8];

/// An index entry that names a session by its `Nat` key (the address its opener used),
/// not by its own.
const NAT_ENTRY: u64 = 1 << 31;

/// The session an index entry names (index + 1 in the low bits, 0: none).
#[inline(always)]
fn entry_index(v: u64) -> u32 {
    ((v & !NAT_ENTRY) as u32).wrapping_sub(1)
}

/// A translated session's second key: the one its opener addressed (a service's
/// virtual IP and port), which the service stage finds before it translates. Both
/// directions of the translated packets find the session by its own key (opener and
/// backend), as any session.
#[repr(C, align(64))]
#[derive(Default)]
pub struct Nat {
    key: [AtomicU64; 5],
    /// The service (its id + 1; 0: the session is not translated).
    service: AtomicU32,
    /// Where its backend is in the service's list, as `NatKey::pick` says.
    pick: AtomicU64,
}

/// What a translated session starts with besides its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NatKey {
    pub key: CtKey,
    /// The service's id (stable across publishes).
    pub service: u32,
    /// The service's version << 32 | its backend's place in that version's list (0:
    /// none noted): lets the service stage skip finding the place from the session's key.
    pub pick: u64,
}

/// One core's part of the table: its free list, its wheel and its counters.
#[repr(align(64))]
pub struct Part {
    lo: u32,
    hi: u32,
    free: AtomicU32,
    /// Wheel slot heads (index + 1), one per tick.
    wheel: Box<[AtomicU32]>,
    /// The next tick to expire.
    tick: AtomicU32,
    pub created: AtomicU64,
    pub expired: AtomicU64,
    pub full: AtomicU64,
    pub evicted: AtomicU64,
    pub live: AtomicU64,
    /// Invalid packets by `InvalidReason`.
    pub invalid: [AtomicU64; 7],
    /// The flow log from this core.
    pub events: super::events::EventRing,
    /// Per port: the newest live session this core made there (index + 1).
    by_port: Box<[AtomicU32]>,
}

/// First fragments remembered, and for how long their later fragments follow.
const FRAGS: usize = 4096;
const FRAG_MS: u32 = 30_000;

/// Wheel ticks: 1,024 ms each, 512 of them. A session due later is filed at the
/// farthest tick and looked at again then; a TCP session at most `TCP_HORIZON` ahead:
/// its timeout is the one a close shortens (from days to seconds) after it was filed,
/// and then it is freed within `TCP_HORIZON` of its new deadline, not a turn of the
/// wheel (9 minutes) later. A million established TCP sessions cost 30,000 looks a
/// second; other protocols' timeouts only grow.
const TICK_SHIFT: u32 = 10;
const WHEEL: u32 = 512;
const TCP_HORIZON: u32 = 32;

pub struct CtTable {
    sessions: Box<[Session]>,
    /// Per session, its counts carried out of its first line.
    totals: Box<[Totals]>,
    buckets: Box<[Bucket]>,
    mask: usize,
    parts: Box<[Part]>,
    pub timeouts: Timeouts,
    /// Live sessions per port (the port that created them), for per-port limits.
    port_sessions: Box<[AtomicU32]>,
    /// First fragments let through: (key, expiry ms) pairs, direct-mapped. Shared: the
    /// later fragments of a datagram may reach another core (a kernel's rx hash sees
    /// ports in the first only).
    frags: Box<[AtomicU64]>,
    /// Per session, its `Nat` key: made by the control plane when the first service
    /// needs it (the cores never allocate), never taken away.
    nat: std::sync::OnceLock<Box<[Nat]>>,
    /// What its index and its first fragments are hashed with.
    hash_key: HashKey,
}

/// A session as the control plane lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionView {
    pub index: u32,
    /// The generation its key was read under (for `kill`).
    pub gen: u32,
    pub key: CtKey,
    pub state: u32,
    pub tcp: TcpState,
    pub last_seen: u32,
    pub created: u32,
    pub ports: [u16; 2],
    pub packets: [u32; 2],
    pub bytes: u64,
    /// When it times out unless a packet comes (its state's timeout after `last_seen`).
    pub due: u32,
}

impl SessionView {
    /// Whether it has timed out by `now` (its owner's wheel frees it at its next look,
    /// up to a filing horizon later).
    pub fn expired(&self, now: u32) -> bool {
        overdue(now, self.due)
    }

    /// The opener's endpoint and the answerer's.
    pub fn orig(&self) -> ((u128, u16), (u128, u16)) {
        if self.state & ORIG_HI != 0 {
            (self.key.hi, self.key.lo)
        } else {
            (self.key.lo, self.key.hi)
        }
    }
}

/// The multipliers of a table's hash, drawn at random when the table is made (as the
/// kernel seeds its conntrack hash). A tenant that could work out which keys
/// share a bucket could fill the two buckets of another tenant's connection with
/// sessions of its own, or evict first fragments from their slots; with the
/// multipliers secret it cannot compute such keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKey {
    low: u64,
    high: u64,
    mix: u64,
}

impl HashKey {
    /// A fixed key, for a fuzz target or a benchmark that must make the same table each
    /// run. Not for a switch.
    pub const FIXED: HashKey =
        HashKey { low: 0x517c_c1b7_2722_0a95, high: 0x9e37_79b9_7f4a_7c15, mix: 0xc2b2_ae3d_27d4_eb4f };

    /// A key from the process's random source (std's `RandomState`, seeded by the OS).
    pub fn random() -> HashKey {
        use std::hash::{BuildHasher, Hasher};
        let draw = |i: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            h.finish()
        };
        Self::from_draws(draw(1), draw(2), draw(3))
    }

    /// A key from three random words: the multipliers made odd and given their top bit,
    /// so no factor drops bits.
    fn from_draws(low: u64, high: u64, mix: u64) -> HashKey {
        HashKey { low: low | 1 << 63 | 1, high: high | 1 << 63 | 1, mix }
    }

    /// A key's hash. Each end is hashed alone and the two are ordered by their hashes, so
    /// a packet's ends hash alike either way round and a packet's hash needs no ordering
    /// of its ends into a key (two 144-bit compares and a swap of five fields, half of
    /// the cost).
    #[inline(always)]
    pub fn hash(&self, k: &CtKey) -> u64 {
        self.ends(k.zone, k.proto, k.lo, k.hi)
    }

    /// The hash of `t`'s key, from either end without ordering them.
    #[inline(always)]
    pub fn tuple(&self, t: &Tuple) -> u64 {
        self.ends(t.zone, t.proto, t.src, t.dst)
    }

    /// The hash of the key with zone `zone`, protocol `proto` and ends `a` and `b` in
    /// either order.
    #[inline(always)]
    fn ends(&self, zone: u32, proto: u8, a: (IpKey, u16), b: (IpKey, u16)) -> u64 {
        // The high and low halves of a 128-bit product, folded: every bit of either factor
        // reaches every bit of the result.
        let fold = |x: u64, y: u64| {
            let p = x as u128 * y as u128;
            p as u64 ^ (p >> 64) as u64
        };
        // (An IPv4 address's key has zeros in bits 48-63 of its low word: the port goes
        // there, so no two IPv4 ends share a word.)
        let end = |(ip, port): (IpKey, u16)| {
            fold((ip as u64) ^ (port as u64) << 48, self.low) ^ ((ip >> 64) as u64).wrapping_mul(self.high)
        };
        let (x, y) = (end(a), end(b));
        // The ends' hashes are near-linear in small steps of an address: adding them would
        // let two pairs of ends with one sum collide. A product of the two does not.
        let (first, second) = if x <= y { (x, y) } else { (y, x) };
        let h = fold(first ^ self.mix ^ ((zone as u64) << 8 | proto as u64), second ^ self.high);
        // Once more: a bucket is the hash's low bits, and a product's low bits depend on
        // its factors' low bits alone, so under some keys the keys that differ in their
        // zone only (one flow per VNI) crowded a few buckets. Folded again, every bit
        // of the key reaches the low bits, as a random hash's would.
        fold(h, self.low)
    }
}

/// Ticks from `cur` to `due`, at most `horizon` and at least the next tick.
fn ahead(due: u32, cur: u32, horizon: u32) -> u32 {
    (due.wrapping_sub(cur) as i32).clamp(1, horizon as i32) as u32
}
const _: () = assert!(TCP_HORIZON < WHEEL);

/// `n` values of `make` in memory `advise` is told of before the first is written.
fn fill<T>(n: usize, advise: fn(*const u8, usize) -> usize, make: impl Fn() -> T) -> Box<[T]> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise(v.as_ptr().cast(), n * std::mem::size_of::<T>());
    v.extend((0..n).map(|_| make()));
    v.into_boxed_slice()
}

/// Where a session stands, as read by the core that found it.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    pub index: u32,
    /// The generation its key was read under.
    pub gen: u32,
    pub state: u32,
    /// Found by its `Nat` key: its `NatKey::pick` as read then (0 otherwise).
    pub pick: u64,
}

/// The state word and TCP state of a session held for update.
pub struct Held<'t> {
    table: &'t CtTable,
    pub index: u32,
    pub state: u32,
    pub tcp: TcpConn,
}

impl Held<'_> {
    /// Writes the state back and lets go.
    pub fn release(self, now: u32) {
        let s = &self.table.sessions[self.index as usize];
        if self.state & PROTO_STATE != 0 || self.tcp.state != TcpState::None {
            write_tcp(s, &self.tcp);
        }
        s.last_seen.store(now, Relaxed);
        let word = (self.state & !(BUSY | PROTO_STATE)) | self.tcp.state as u32;
        s.state.store(word, Release);
    }

    /// Lets go, writing back the state word only (as `state` now says).
    pub fn abandon(self) {
        let s = &self.table.sessions[self.index as usize];
        s.state.store(self.state & !BUSY, Release);
    }
}

fn read_tcp(s: &Session, state: u32) -> TcpConn {
    let t = |i: usize| s.tcp[i].load(Relaxed);
    let misc = t(8);
    let side = |i: usize, b: u32| Side {
        end: t(4 * i),
        maxend: t(4 * i + 1),
        maxwin: t(4 * i + 2),
        maxack: t(4 * i + 3),
        scale: (misc >> b) as u8,
        flags: (misc >> (b + 8)) as u8,
    };
    TcpConn { state: TcpState::from_u8((state & PROTO_STATE) as u8), side: [side(0, 0), side(1, 16)] }
}

fn write_tcp(s: &Session, c: &TcpConn) {
    for (i, d) in c.side.iter().enumerate() {
        s.tcp[4 * i].store(d.end, Relaxed);
        s.tcp[4 * i + 1].store(d.maxend, Relaxed);
        s.tcp[4 * i + 2].store(d.maxwin, Relaxed);
        s.tcp[4 * i + 3].store(d.maxack, Relaxed);
    }
    let misc = |d: &Side| d.scale as u32 | (d.flags as u32) << 8;
    s.tcp[8].store(misc(&c.side[0]) | misc(&c.side[1]) << 16, Relaxed);
}

/// What a new session starts with.
pub struct NewSession {
    pub key: CtKey,
    pub orig_hi: bool,
    pub tcp: TcpConn,
    /// The opener's port and epoch (side 0), if a stateful port admitted it there.
    pub port: u16,
    pub side: usize,
    pub epoch: u16,
    pub now: u32,
    pub len: u32,
    /// A translated session's `Nat` key (and service).
    pub nat: Option<NatKey>,
}

/// Why a session could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// Every session of this core is live and none is half-open.
    Table,
    /// The port has its limit of sessions.
    Port,
    /// A translated session's own key was taken by another session at the same instant
    /// (two cores gave two connections one free port).
    Taken,
}

impl CtTable {
    /// A table of `capacity` sessions shared out to `cores` cores, with per-port
    /// limits over `ports` port ids.
    pub fn new(capacity: u32, cores: usize, ports: usize) -> CtTable {
        Self::with_memory(capacity, cores, ports, super::events::RING, |_, _| 0)
    }

    /// As `new`, each core's ring holding `events` events, and `advise` being told of the
    /// sessions' and the index's memory before it is first written (to have it backed by
    /// huge pages).
    pub fn with_memory(
        capacity: u32,
        cores: usize,
        ports: usize,
        events: usize,
        advise: fn(*const u8, usize) -> usize,
    ) -> CtTable {
        let cores = cores.max(1);
        // (An index entry's low word holds index + 1 below `NAT_ENTRY`.)
        let capacity = capacity.max(cores as u32).min(NAT_ENTRY as u32 - 2);
        let sessions: Box<[Session]> = fill(capacity as usize, advise, Session::default);
        let totals: Box<[Totals]> = fill(capacity as usize, advise, Totals::default);
        // Half full at most, two candidate buckets: a bucket overflows almost never.
        let nb = (capacity as usize / 4).next_power_of_two().max(2);
        let buckets: Box<[Bucket]> = fill(nb, advise, Default::default);
        let per = capacity / cores as u32;
        let parts: Box<[Part]> = (0..cores)
            .map(|c| {
                let lo = c as u32 * per;
                let hi = if c + 1 == cores { capacity } else { lo + per };
                // The free list in index order.
                for i in lo..hi {
                    sessions[i as usize].next.store(if i + 1 < hi { i + 2 } else { 0 }, Relaxed);
                }
                Part {
                    lo,
                    hi,
                    free: AtomicU32::new(if lo < hi { lo + 1 } else { 0 }),
                    wheel: (0..WHEEL).map(|_| AtomicU32::new(0)).collect(),
                    tick: AtomicU32::new(u32::MAX),
                    created: AtomicU64::new(0),
                    expired: AtomicU64::new(0),
                    full: AtomicU64::new(0),
                    evicted: AtomicU64::new(0),
                    live: AtomicU64::new(0),
                    invalid: Default::default(),
                    events: super::events::EventRing::with_room(events),
                    by_port: (0..ports).map(|_| AtomicU32::new(0)).collect(),
                }
            })
            .collect();
        CtTable {
            sessions,
            totals,
            buckets,
            mask: nb - 1,
            parts,
            timeouts: Timeouts::default(),
            port_sessions: (0..ports).map(|_| AtomicU32::new(0)).collect(),
            frags: (0..2 * FRAGS).map(|_| AtomicU64::new(0)).collect(),
            nat: std::sync::OnceLock::new(),
            hash_key: HashKey::random(),
        }
    }

    /// This table hashing with `key` instead of its own random one (a fuzz target's
    /// runs must meet the same buckets).
    pub fn keyed(mut self, key: HashKey) -> CtTable {
        self.hash_key = key;
        self
    }

    /// The hash `key` is indexed by in this table.
    #[inline(always)]
    pub fn hash(&self, key: &CtKey) -> u64 {
        self.hash_key.hash(key)
    }

    /// The hash of `t`'s key in this table, from either end.
    #[inline(always)]
    pub fn hash_of(&self, t: &Tuple) -> u64 {
        self.hash_key.tuple(t)
    }

    /// Makes room for translated sessions (64 bytes each), once.
    pub fn enable_nat(&self, advise: fn(*const u8, usize) -> usize) {
        self.nat.get_or_init(|| fill(self.sessions.len(), advise, Nat::default));
    }

    /// Session `index`'s own key, if it could be read whole.
    pub fn key_of(&self, index: u32) -> Option<CtKey> {
        Self::read_key(self.sessions.get(index as usize)?).map(|(k, _)| k)
    }

    /// The `Nat` key of translated session `index` and its service's id, as they stand.
    pub fn nat_of(&self, index: u32) -> Option<NatKey> {
        let n = self.nat.get()?.get(index as usize)?;
        let service = n.service.load(Acquire).checked_sub(1)?;
        let w: KeyWords = std::array::from_fn(|i| n.key[i].load(Relaxed));
        Some(NatKey { key: words_key(&w), service, pick: n.pick.load(Relaxed) })
    }

    /// Notes `pick` on translated session `f` (found by its `Nat` key), unless its note
    /// changed since (another core's, or the session was reused: a new connection's
    /// note is its own).
    pub fn note_pick(&self, f: &Found, pick: u64) {
        if let Some(n) = self.nat.get().and_then(|v| v.get(f.index as usize)) {
            let _ = n.pick.compare_exchange(f.pick, pick, Relaxed, Relaxed);
        }
    }

    /// The translated session whose `Nat` key is `key`, if there is one. Inlined, as
    /// `lookup` is.
    #[inline(always)]
    pub fn lookup_nat(&self, key: &CtKey, h: u64) -> Option<Found> {
        self.lookup_nat_from(key, h, 0)
    }

    /// `lookup_nat`, trying first the session `first` names (index + 1; 0: none): the
    /// first one `nat_lines` saw under the key's tag, which is what `lookup_nat` would
    /// try first, so the buckets are scanned only when it is not the key's.
    #[inline(always)]
    pub fn lookup_nat_from(&self, key: &CtKey, h: u64, first: u32) -> Option<Found> {
        let nat = self.nat.get()?;
        let w = key_words(key);
        if let Some(found) = self.nat_session(nat, first.wrapping_sub(1), |k| *k == w) {
            return Some(found);
        }
        self.scan_nat(nat, &w, h)
    }

    /// `lookup_nat_from` by the packet's tuple as it stands (before translation): the
    /// session `first` names is compared with it either way round, so that the common
    /// packet, whose session is that one, never orders its ends into a key.
    #[inline(always)]
    pub fn lookup_nat_for(&self, t: &Tuple, h: u64, first: u32) -> Option<Found> {
        let nat = self.nat.get()?;
        if let Some(found) = self.nat_session(nat, first.wrapping_sub(1), |w| laid_either_way(w, t).is_some()) {
            return Some(found);
        }
        self.scan_nat(nat, &key_words(&t.key().0), h)
    }

    /// The live translated session whose `Nat` key is `w`, among those the buckets of
    /// `h` name.
    #[inline(always)]
    fn scan_nat(&self, nat: &[Nat], w: &KeyWords, h: u64) -> Option<Found> {
        let (b1, b2, tag) = self.buckets_of(h);
        for b in [b1, b2] {
            for e in &self.buckets[b] {
                let v = e.load(Acquire);
                if v & NAT_ENTRY == 0 || (v >> 32) as u32 != tag {
                    continue;
                }
                if let Some(found) = self.nat_session(nat, entry_index(v), |k| k == w) {
                    return Some(found);
                }
            }
        }
        None
    }

    /// Session `index`, if it is live and translated with a `Nat` key that `is_key`
    /// accepts (read under the session's generation).
    #[inline(always)]
    fn nat_session(&self, nat: &[Nat], index: u32, is_key: impl FnOnce(&KeyWords) -> bool) -> Option<Found> {
        let (s, n) = (self.sessions.get(index as usize)?, nat.get(index as usize)?);
        let g = s.key_gen.load(Acquire);
        if g & 1 != 0 {
            return None;
        }
        let same = is_key(&std::array::from_fn(|i| n.key[i].load(Relaxed)));
        let pick = n.pick.load(Relaxed);
        fence(Acquire);
        if !same || s.key_gen.load(Relaxed) != g {
            return None;
        }
        let state = s.state.load(Acquire);
        (state & DEAD == 0).then_some(Found { index, gen: g, state, pick })
    }

    pub fn capacity(&self) -> u32 {
        self.sessions.len() as u32
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    pub fn port_sessions(&self, port: u16) -> u32 {
        self.port_sessions.get(port as usize).map_or(0, |c| c.load(Relaxed))
    }

    #[inline]
    fn buckets_of(&self, h: u64) -> (usize, usize, u32) {
        let tag = (h >> 32) as u32;
        let b1 = h as usize & self.mask;
        let b2 = (b1 ^ ((tag as usize).wrapping_mul(0x9e37_79b9) >> 7 | 1)) & self.mask;
        (b1, b2, tag)
    }

    /// Reads `s`'s key under its generation: None if it was being rewritten.
    fn read_key(s: &Session) -> Option<(CtKey, u32)> {
        let g = s.key_gen.load(Acquire);
        if g & 1 != 0 {
            return None;
        }
        let w = s.words();
        fence(Acquire);
        (s.key_gen.load(Relaxed) == g).then(|| (words_key(&w), g))
    }

    #[inline]
    fn key_is(s: &Session, w: &KeyWords) -> Option<u32> {
        let g = s.key_gen.load(Acquire);
        if g & 1 != 0 {
            return None;
        }
        let same = s.key.iter().zip(w).all(|(a, b)| a.load(Relaxed) == *b);
        fence(Acquire);
        (same && s.key_gen.load(Relaxed) == g).then_some(g)
    }

    /// The session of `key`, if there is one. Inlined: a key and an answer handed
    /// through memory are written field by field and read back whole, and the reads
    /// wait for the writes (store forwarding fails) at every packet.
    #[inline(always)]
    pub fn lookup(&self, key: &CtKey, h: u64) -> Option<Found> {
        let (b1, b2, tag) = self.buckets_of(h);
        // (No session has index u32::MAX: an entry holds index + 1 below bit 31.)
        self.live_with_key(&key_words(key), [b1, b2], tag, u32::MAX)
    }

    /// `lookup` for a packet at `now`: a session past its timeout that its owner's wheel
    /// has not freed yet is none, as netfilter's lookup skips an expired entry. (Where a
    /// key's room is asked for, `lookup` itself: the expired session still holds it.)
    #[inline]
    pub fn lookup_live(&self, key: &CtKey, h: u64, now: u32) -> Option<Found> {
        self.lookup(key, h).filter(|found| !self.past_due(found, now))
    }

    /// The session `first` names (index + 1; 0: none) if it is live and `t`'s, either
    /// way, and whether `t`'s sender is its key's `hi` end. The batch's prefetch notes the
    /// first session a packet's bucket names under its tag (`first_named`): where that
    /// one is the packet's, it is what `lookup` would find, and this finds it without
    /// ordering the packet's ends into a key or scanning the bucket again. Also its
    /// policy epochs (as `epochs` says), read from the line its key is on.
    #[inline(always)]
    pub fn named_for(&self, first: u32, t: &Tuple) -> Option<(Found, bool, [u16; 2])> {
        let index = first.wrapping_sub(1);
        let s = self.sessions.get(index as usize)?;
        let g = s.key_gen.load(Acquire);
        let src_hi = laid_either_way(&s.words(), t)?;
        // (`key_is`'s check, after the compare: a helper shared with it, checking the
        // generation first, cost this path 17 instructions a packet in W6.)
        fence(Acquire);
        if g & 1 != 0 || s.key_gen.load(Relaxed) != g {
            return None;
        }
        let state = s.state.load(Acquire);
        let epochs = split_epochs(s.epochs.load(Relaxed));
        (state & DEAD == 0).then_some((Found { index, gen: g, state, pick: 0 }, src_hi, epochs))
    }

    /// The first live session other than `skip` whose own key is `w`, as `buckets` name
    /// them under `tag`.
    #[inline(always)]
    fn live_with_key(&self, w: &KeyWords, buckets: [usize; 2], tag: u32, skip: u32) -> Option<Found> {
        for b in buckets {
            for e in &self.buckets[b] {
                let v = e.load(Acquire);
                if v == 0 || v & NAT_ENTRY != 0 || (v >> 32) as u32 != tag {
                    continue;
                }
                let index = (v as u32).wrapping_sub(1);
                let Some(s) = self.sessions.get(index as usize).filter(|_| index != skip) else { continue };
                if let Some(gen) = Self::key_is(s, w) {
                    let state = s.state.load(Acquire);
                    if state & DEAD == 0 {
                        return Some(Found { index, gen, state, pick: 0 });
                    }
                }
            }
        }
        None
    }

    /// The cache line `key`'s first bucket is in, to prefetch a batch ahead.
    #[inline]
    pub fn bucket_line(&self, h: u64) -> *const u8 {
        let (b1, _, _) = self.buckets_of(h);
        self.buckets[b1].as_ptr().cast()
    }

    /// The first session `h`'s first bucket (already in cache) names by its `Nat` key
    /// under its tag, the one a `lookup_nat` of `h` tries first: its index + 1 (0: none),
    /// and the lines that lookup reads and tracking then writes handed to `each` to
    /// prefetch: its `Nat` key, its first line, and for protocol `proto` TCP its second
    /// (its windows).
    #[inline(always)]
    pub fn nat_lines(&self, h: u64, proto: u8, mut each: impl FnMut(*const u8)) -> u32 {
        let Some(nat) = self.nat.get() else { return 0 };
        let (b1, _, tag) = self.buckets_of(h);
        for e in &self.buckets[b1] {
            let v = e.load(Relaxed);
            if v & NAT_ENTRY != 0 && (v >> 32) as u32 == tag {
                let i = entry_index(v);
                if let (Some(s), Some(n)) = (self.sessions.get(i as usize), nat.get(i as usize)) {
                    let n: *const Nat = n;
                    each(n.cast());
                    Self::session_lines(s, proto, &mut each);
                    return i + 1;
                }
            }
        }
        0
    }

    /// The first session `h`'s first bucket (already in cache) names under its tag, the
    /// one a lookup of `h` tries first: its index + 1 (0: none), the lines a packet of
    /// protocol `proto` reads handed to `each` to prefetch. (Two sessions under one
    /// 32-bit tag in a bucket are too rare to fetch the second.)
    #[inline(always)]
    pub fn first_named(&self, h: u64, proto: u8, mut each: impl FnMut(*const u8)) -> u32 {
        let (b1, _, tag) = self.buckets_of(h);
        for e in &self.buckets[b1] {
            let v = e.load(Relaxed);
            if v != 0 && v & NAT_ENTRY == 0 && (v >> 32) as u32 == tag {
                if let Some(s) = self.sessions.get((v as u32).wrapping_sub(1) as usize) {
                    Self::session_lines(s, proto, &mut each);
                    return v as u32;
                }
            }
        }
        0
    }

    /// The lines of session `s` a packet of protocol `proto` reads: the first, and
    /// TCP's windows in the second.
    #[inline(always)]
    fn session_lines(s: &Session, proto: u8, each: &mut impl FnMut(*const u8)) {
        let p: *const Session = s;
        each(p.cast());
        if proto == crate::wire::ipv4::PROTO_TCP {
            each(p.cast::<u8>().wrapping_add(64));
        }
    }

    /// Takes `f`'s session for update, unless another core holds it or it changed
    /// since it was found.
    pub fn hold(&self, f: &Found) -> Option<Held<'_>> {
        let s = &self.sessions[f.index as usize];
        let cur = s.state.load(Relaxed);
        if cur & (BUSY | DEAD | LIVE) != LIVE || s.state.compare_exchange(cur, cur | BUSY, Acquire, Relaxed).is_err() {
            return None;
        }
        if s.key_gen.load(Relaxed) != f.gen {
            s.state.store(cur, Release);
            return None;
        }
        Some(Held { table: self, index: f.index, state: cur, tcp: read_tcp(s, cur) })
    }

    /// A data or pure ACK segment of an established connection, checked and recorded
    /// without holding the session: every bound it moves only grows (in sequence
    /// space), so the two directions' cores update them at once with compare-and-swap
    /// maxima. None when the segment is not of that kind (or the session's windows are
    /// not known yet): the caller holds the session and runs the whole tracker.
    /// Some(in window, or passed as liberal).
    #[inline]
    pub fn tcp_fast(&self, f: &Found, dir: usize, seg: &Segment, liberal: bool) -> Option<bool> {
        use super::tcp::{after, bounds, Bounds, ACK, CWR, ECE, F_LIBERAL, F_MAXACK, PSH, URG};
        if f.state & (PROTO_STATE | RST_SEEN) != TcpState::Established as u32
            || f.state & SEEN_REPLY == 0
            || seg.flags & !(PSH | ECE | CWR | URG) != ACK
        {
            return None;
        }
        let s = &self.sessions[f.index as usize];
        let (si, ri) = (4 * (dir & 1), 4 * (1 - (dir & 1)));
        let misc = s.tcp[8].load(Relaxed);
        let (s_scale, s_flags) = ((misc >> (16 * (dir & 1))) as u8, (misc >> (16 * (dir & 1) + 8)) as u8);
        let (s_end, s_maxend, s_maxwin) =
            (s.tcp[si].load(Relaxed), s.tcp[si + 1].load(Relaxed), s.tcp[si + 2].load(Relaxed));
        let (r_end, r_maxend, r_maxwin) =
            (s.tcp[ri].load(Relaxed), s.tcp[ri + 1].load(Relaxed), s.tcp[ri + 2].load(Relaxed));
        if s_maxwin == 0 || r_maxwin == 0 || s_flags & F_MAXACK == 0 {
            return None;
        }
        let ack = seg.ack;
        let (mut seq, mut end) = (seg.seq, seg.end());
        if seq == end {
            seq = s_end;
            end = s_end;
        }
        let seq_max = |a: &AtomicU32, v: u32| {
            let _ = a.fetch_update(Relaxed, Relaxed, |cur| after(v, cur).then_some(v));
        };
        match bounds(seq, end, ack, s_end, s_maxend, s_maxwin, r_end, r_maxwin) {
            Bounds::In => {}
            Bounds::Overshoot => {
                seq_max(&s.tcp[si], end);
                return Some(true);
            }
            _ if liberal || s_flags & F_LIBERAL != 0 => return Some(true),
            Bounds::OldAck => return Some(true),
            Bounds::Out => return Some(false),
        }
        let win = (seg.win as u32) << s_scale;
        let _ = s.tcp[si + 2].fetch_update(Relaxed, Relaxed, |cur| (win > cur).then_some(win));
        seq_max(&s.tcp[si], end);
        seq_max(&s.tcp[si + 3], ack);
        if after(end, s_maxend) {
            let grow = end.wrapping_sub(s_maxend);
            let _ = s.tcp[ri + 2].fetch_update(Relaxed, Relaxed, |cur| Some(cur.wrapping_add(grow)));
        }
        let allowed = ack.wrapping_add(win).wrapping_add((win == 0) as u32);
        if after(allowed, r_maxend) {
            seq_max(&s.tcp[ri + 1], allowed);
        }
        Some(true)
    }

    /// Whether `f`'s session has gone unused longer than its state's timeout (its
    /// owner's wheel may not have come round to it yet: a TCP session is filed for its
    /// state's timeout when filed, and a close shortens it).
    pub fn past_due(&self, f: &Found, now: u32) -> bool {
        let s = &self.sessions[f.index as usize];
        overdue(now, self.due(s, s.state.load(Relaxed)))
    }

    /// The TCP state of `f`'s session as it stands, without holding it.
    pub fn peek(&self, f: &Found) -> TcpConn {
        read_tcp(&self.sessions[f.index as usize], f.state)
    }

    /// `account` for a packet the fast path takes (of an established TCP session or
    /// an answered UDP one, whose state's `timeout` is given), unless the session has
    /// gone unused longer than that: then false, nothing counted, and the slow path ends it.
    /// (Its owner's wheel frees it up to a tick later, and a TCP session filed before a
    /// shorter timeout applied up to `TCP_HORIZON` later; netfilter's lookup skips an
    /// expired entry at once.)
    #[inline(always)]
    pub fn account_live(&self, index: u32, timeout: u32, dir: usize, len: u32, now: u32) -> bool {
        let s = &self.sessions[index as usize];
        if overdue(now, s.last_seen.load(Relaxed).wrapping_add(timeout)) {
            return false;
        }
        self.count(s, index, dir, len, now);
        true
    }

    /// Counts a packet of `dir` (0: from the opener) on the session, in its first line.
    #[inline(always)]
    pub fn account(&self, index: u32, dir: usize, len: u32, now: u32) {
        self.count(&self.sessions[index as usize], index, dir, len, now);
    }

    #[inline(always)]
    fn count(&self, s: &Session, index: u32, dir: usize, len: u32, now: u32) {
        // Per direction a single core mostly: a lost count under a race is tolerated,
        // a locked add per packet is not.
        let r = &s.recent[dir & 1];
        let w = r.load(Relaxed);
        match Recent::add(w, len) {
            Some(w) => r.store(w, Relaxed),
            None => {
                let (packets, bytes) = Recent::unpack(w);
                self.carry(index, dir, packets + 1, bytes as u64 + len as u64);
            }
        }
        s.last_seen.store(now, Relaxed);
    }

    /// Moves direction `dir`'s recent counts, with the packet that filled them, into
    /// the session's totals: once in 128 packets at most.
    #[cold]
    #[inline(never)]
    fn carry(&self, index: u32, dir: usize, packets: u32, bytes: u64) {
        self.sessions[index as usize].recent[dir & 1].store(0, Relaxed);
        let t = &self.totals[index as usize];
        t.packets[dir & 1].fetch_add(packets, Relaxed);
        t.bytes.fetch_add(bytes, Relaxed);
    }

    /// Session `index`'s packets each way and bytes: its totals and recent counts.
    fn counts(&self, index: u32) -> ([u32; 2], u64) {
        let (s, t) = (&self.sessions[index as usize], &self.totals[index as usize]);
        let (p0, b0) = Recent::unpack(s.recent[0].load(Relaxed));
        let (p1, b1) = Recent::unpack(s.recent[1].load(Relaxed));
        let packets = [t.packets[0].load(Relaxed).wrapping_add(p0), t.packets[1].load(Relaxed).wrapping_add(p1)];
        (packets, t.bytes.load(Relaxed).wrapping_add(b0 as u64 + b1 as u64))
    }

    /// Per side, the policy epoch of its port when its rules last allowed session `index`.
    #[inline(always)]
    pub fn epochs(&self, index: u32) -> [u16; 2] {
        split_epochs(self.sessions[index as usize].epochs.load(Relaxed))
    }

    /// Records that side `side`'s port (at `epoch`) allows the session, or revokes it.
    pub fn set_epoch(&self, index: u32, side: usize, epoch: u16, allowed: bool) {
        let s = &self.sessions[index as usize];
        let e = s.epochs.load(Relaxed);
        let e = if side == 0 { (e & 0xffff_0000) | epoch as u32 } else { (e & 0xffff) | (epoch as u32) << 16 };
        s.epochs.store(e, Relaxed);
        let bit = REVOKED[side & 1];
        if allowed {
            s.state.fetch_and(!bit, Relaxed);
        } else {
            s.state.fetch_or(bit, Relaxed);
        }
    }

    /// Counts an invalid packet on core `core`.
    pub fn invalid(&self, core: usize, why: super::InvalidReason) {
        if let Some(p) = self.parts.get(core) {
            p.invalid[why as usize].fetch_add(1, Relaxed);
        }
    }

    /// Remembers that the first fragment with key `k` passed.
    pub fn frag_passed(&self, k: u64, now: u32) {
        let i = 2 * (k as usize % FRAGS);
        self.frags[i].store(k, Relaxed);
        self.frags[i + 1].store(now.wrapping_add(FRAG_MS) as u64, Relaxed);
    }

    /// Whether a first fragment with key `k` passed lately.
    pub fn frag_follows(&self, k: u64, now: u32) -> bool {
        let i = 2 * (k as usize % FRAGS);
        self.frags[i].load(Relaxed) == k && ((self.frags[i + 1].load(Relaxed) as u32).wrapping_sub(now) as i32) > 0
    }

    /// Whether the rules at side `side`'s port no longer allow session `index`.
    #[inline]
    pub fn revoked(&self, index: u32, side: usize) -> bool {
        self.sessions[index as usize].state.load(Relaxed) & REVOKED[side & 1] != 0
    }

    /// Session `index` was ended (and waits for its owner to free it).
    pub fn is_dead(&self, index: u32) -> bool {
        self.sessions[index as usize].state.load(Relaxed) & DEAD != 0
    }

    /// Ends session `index` now (from any core), if it is still the one whose key was
    /// read under generation `gen`: gone from the index, freed by its owner at its next
    /// wheel turn. A session another core holds this instant is waited for (briefly): its
    /// holder's release would write its state word back without the mark.
    pub fn kill(&self, index: u32, gen: u32) -> bool {
        let s = &self.sessions[index as usize];
        for _ in 0..1024 {
            let st = s.state.load(Acquire);
            if st & (DEAD | LIVE) != LIVE || s.key_gen.load(Acquire) != gen {
                return false;
            }
            if st & BUSY != 0 {
                std::hint::spin_loop();
                continue;
            }
            if s.state.compare_exchange(st, st | DEAD, AcqRel, Relaxed).is_ok() {
                self.unindex(index, s);
                return true;
            }
        }
        false
    }

    /// Records the port of side `side` (where a stateful port first saw it).
    pub fn set_port(&self, index: u32, side: usize, port: u16) {
        let s = &self.sessions[index as usize];
        let p = s.ports.load(Relaxed);
        let p = if side == 0 { (p & 0xffff_0000) | port as u32 } else { (p & 0xffff) | (port as u32) << 16 };
        s.ports.store(p, Relaxed);
    }

    /// Makes a session on core `core`'s part: from its free list, or by recycling a
    /// half-open session of its own in one of the key's buckets.
    pub fn create(&self, core: usize, n: &NewSession, port_limit: u32) -> Result<u32, Full> {
        let part = &self.parts[core % self.parts.len()];
        let counter = self.port_sessions.get(n.port as usize);
        if let Some(c) = counter {
            if port_limit != 0 && c.load(Relaxed) >= port_limit {
                part.full.fetch_add(1, Relaxed);
                return Err(Full::Port);
            }
        }
        let h = self.hash(&n.key);
        let (b1, b2, tag) = self.buckets_of(h);
        let (index, in_wheel) = match self.pop_free(part) {
            Some(i) => (i, false),
            None => match self.recycle(part, [b1, b2], n.now) {
                Some(i) => (i, true),
                None => {
                    part.full.fetch_add(1, Relaxed);
                    return Err(Full::Table);
                }
            },
        };
        let s = &self.sessions[index as usize];
        let g = s.key_gen.load(Relaxed);
        s.key_gen.store(g.wrapping_add(1) | 1, Relaxed);
        fence(Release);
        for (a, b) in s.key.iter().zip(key_words(&n.key)) {
            a.store(b, Relaxed);
        }
        if let Some(side) = self.nat.get().and_then(|v| v.get(index as usize)) {
            match &n.nat {
                Some(nk) => {
                    for (a, b) in side.key.iter().zip(key_words(&nk.key)) {
                        a.store(b, Relaxed);
                    }
                    side.service.store(nk.service + 1, Relaxed);
                    side.pick.store(nk.pick, Relaxed);
                }
                None => side.service.store(0, Relaxed),
            }
        }
        write_tcp(s, &n.tcp);
        s.last_seen.store(n.now, Relaxed);
        s.created.store(n.now, Relaxed);
        s.epochs.store(if n.side == 0 { n.epoch as u32 } else { (n.epoch as u32) << 16 }, Relaxed);
        s.ports.store(if n.side == 0 { 0xffff_0000 | n.port as u32 } else { (n.port as u32) << 16 | 0xffff }, Relaxed);
        // (Its totals were cleared when the slot's last session ended.)
        s.recent[1].store(0, Relaxed);
        match Recent::add(0, n.len) {
            Some(w) => s.recent[0].store(w, Relaxed),
            None => self.carry(index, 0, 1, n.len as u64),
        }
        let state = LIVE | n.tcp.state as u32 | if n.orig_hi { ORIG_HI } else { 0 } | (n.port as u32) << 16;
        s.state.store(state, Relaxed);
        s.key_gen.store((g.wrapping_add(1) | 1).wrapping_add(1), Release);
        if let Some(c) = counter {
            c.fetch_add(1, Relaxed);
        }
        self.link(part, index, n.port);
        part.created.fetch_add(1, Relaxed);
        part.live.fetch_add(1, Relaxed);
        if !in_wheel {
            let cur = part.tick.load(Relaxed);
            self.file(part, index, if cur == u32::MAX { Self::tick_of(n.now) } else { cur }, n.now);
        }
        let entry = (tag as u64) << 32 | (index as u64 + 1);
        if n.nat.is_some() && !self.index_nat(n, index) {
            s.state.fetch_or(DEAD, Relaxed);
            part.full.fetch_add(1, Relaxed);
            return Err(Full::Table);
        }
        for b in [b1, b2] {
            for e in &self.buckets[b] {
                if e.compare_exchange(0, entry, Release, Relaxed).is_ok() {
                    if n.nat.is_some() && self.taken(&n.key, [b1, b2], tag, index) {
                        self.unindex_entry(&n.key, index as u64 + 1);
                        self.unindex_nat(index);
                        s.state.fetch_or(DEAD, Relaxed);
                        return Err(Full::Taken);
                    }
                    part.events.push(&Event {
                        kind: EventKind::New,
                        key: n.key,
                        orig_hi: n.orig_hi,
                        port: n.port,
                        packets: [1, 0],
                        bytes: n.len as u64,
                        millis: 0,
                        reason: 0,
                        rule: 0,
                    });
                    return Ok(index);
                }
            }
        }
        // Both buckets full (a pathological key distribution): the session lives
        // unindexed until its wheel turn frees it; this packet's connection is not
        // tracked.
        self.unindex_nat(index);
        s.state.fetch_or(DEAD, Relaxed);
        part.full.fetch_add(1, Relaxed);
        Err(Full::Table)
    }

    /// Whether another live session than `index` has `key` (in `buckets`, under `tag`).
    /// A translated session's own key is chosen by whoever translates it (a free port on
    /// the host address): two cores may choose the same at the same instant, for two
    /// connections whose answers would then all reach one. Each indexes its session and
    /// then looks for the other, with a full fence between: at least one sees the other
    /// and gives up (both may), so at most one such session stays.
    fn taken(&self, key: &CtKey, buckets: [usize; 2], tag: u32, index: u32) -> bool {
        fence(SeqCst);
        self.live_with_key(&key_words(key), buckets, tag, index).is_some()
    }

    /// Indexes new session `index` by its `Nat` key too; false if both buckets are full.
    fn index_nat(&self, n: &NewSession, index: u32) -> bool {
        let Some(nk) = &n.nat else { return true };
        if self.nat.get().is_none() {
            return false;
        }
        let (b1, b2, tag) = self.buckets_of(self.hash(&nk.key));
        let entry = (tag as u64) << 32 | NAT_ENTRY | (index as u64 + 1);
        [b1, b2].iter().any(|&b| self.buckets[b].iter().any(|e| e.compare_exchange(0, entry, Release, Relaxed).is_ok()))
    }

    fn pop_free(&self, part: &Part) -> Option<u32> {
        let head = part.free.load(Relaxed);
        if head == 0 {
            return None;
        }
        let i = head - 1;
        part.free.store(self.sessions[i as usize].next.load(Relaxed), Relaxed);
        Some(i)
    }

    /// A half-open (not yet replied) session of this core's in `buckets`, or one past
    /// its timeout that the wheel has not freed yet, taken out of the index for reuse.
    /// It stays filed in the wheel.
    fn recycle(&self, part: &Part, buckets: [usize; 2], now: u32) -> Option<u32> {
        for b in buckets {
            for e in &self.buckets[b] {
                let v = e.load(Acquire);
                if v == 0 || v & NAT_ENTRY != 0 {
                    continue;
                }
                let i = (v as u32).wrapping_sub(1);
                if i < part.lo || i >= part.hi {
                    continue;
                }
                let s = &self.sessions[i as usize];
                let st = s.state.load(Relaxed);
                let due = self.due(s, st);
                let timed_out = overdue(now, due);
                if st & BUSY != 0 || (st & SEEN_REPLY != 0 && !timed_out) {
                    continue;
                }
                if s.state.compare_exchange(st, st | BUSY, Acquire, Relaxed).is_err() {
                    continue;
                }
                if e.compare_exchange(v, 0, Relaxed, Relaxed).is_err() {
                    s.state.store(st, Release);
                    continue;
                }
                self.unindex_nat(i);
                self.uncount(part, i, st);
                self.ended(part, i, st, s.last_seen.load(Relaxed));
                if timed_out {
                    part.expired.fetch_add(1, Relaxed);
                } else {
                    part.evicted.fetch_add(1, Relaxed);
                }
                part.live.fetch_sub(1, Relaxed);
                return Some(i);
            }
        }
        None
    }

    /// The flow log's end of session `i` (state word `st`), whose counts are then
    /// cleared for the slot's next session.
    fn ended(&self, part: &Part, i: u32, st: u32, now: u32) {
        let s = &self.sessions[i as usize];
        let created = s.created.load(Relaxed);
        let (packets, bytes) = self.counts(i);
        let t = &self.totals[i as usize];
        t.packets[0].store(0, Relaxed);
        t.packets[1].store(0, Relaxed);
        t.bytes.store(0, Relaxed);
        part.events.push(&Event {
            kind: EventKind::End,
            key: words_key(&s.words()),
            orig_hi: st & ORIG_HI != 0,
            port: (st >> 16) as u16,
            packets,
            bytes,
            millis: now.wrapping_sub(created),
            reason: 0,
            rule: 0,
        });
    }

    /// The flow log's refusal of a new connection at `port` on core `core` (by the ACL
    /// slot `rule` - 1 if a rule refused it).
    pub fn denied(&self, core: usize, key: CtKey, orig_hi: bool, port: u16, reason: u8, rule: u32) {
        if let Some(p) = self.parts.get(core) {
            p.events.push(&Event {
                kind: EventKind::Denied,
                key,
                orig_hi,
                port,
                packets: [1, 0],
                bytes: 0,
                millis: 0,
                reason,
                rule,
            });
        }
    }

    /// Takes session `i` (state word `state`) out of its port's count and list.
    fn uncount(&self, part: &Part, i: u32, state: u32) {
        let port = (state >> 16) as u16;
        if let Some(c) = self.port_sessions.get(port as usize) {
            c.fetch_sub(1, Relaxed);
        }
        self.unlink(part, i, port);
    }

    /// Puts session `i` at the head of `part`'s list for `port` (its owner only).
    fn link(&self, part: &Part, i: u32, port: u16) {
        let Some(head) = part.by_port.get(port as usize) else { return };
        let s = &self.sessions[i as usize];
        let next = head.load(Relaxed);
        s.by_port[0].store(0, Relaxed);
        s.by_port[1].store(next, Relaxed);
        if next != 0 {
            self.sessions[next as usize - 1].by_port[0].store(i + 1, Relaxed);
        }
        head.store(i + 1, Release);
    }

    /// Takes session `i` out of `part`'s list for `port` (its owner only). Its own next
    /// link is left as it was, so a reader standing on it walks on.
    fn unlink(&self, part: &Part, i: u32, port: u16) {
        let Some(head) = part.by_port.get(port as usize) else { return };
        let s = &self.sessions[i as usize];
        let (prev, next) = (s.by_port[0].load(Relaxed), s.by_port[1].load(Relaxed));
        if next != 0 {
            self.sessions[next as usize - 1].by_port[0].store(prev, Relaxed);
        }
        match prev {
            0 => head.store(next, Release),
            p => self.sessions[p as usize - 1].by_port[1].store(next, Release),
        }
    }

    /// The live sessions made at `port` (from the control plane): each core's list for
    /// the port, not the table. A list its owner changes meanwhile may be read partly,
    /// as a session reused under a walk ends it there; a session may come twice.
    pub fn at_port(&self, port: u16) -> impl Iterator<Item = SessionView> + '_ {
        self.parts.iter().flat_map(move |part| {
            let mut cur = part.by_port.get(port as usize).map_or(0, |h| h.load(Acquire));
            let mut steps = part.hi - part.lo;
            std::iter::from_fn(move || loop {
                if cur == 0 || steps == 0 {
                    return None;
                }
                steps -= 1;
                let i = cur - 1;
                if i < part.lo || i >= part.hi {
                    return None;
                }
                cur = self.sessions[i as usize].by_port[1].load(Acquire);
                let st = self.sessions[i as usize].state.load(Acquire);
                if (st >> 16) as u16 != port || st & LIVE == 0 {
                    // Freed or reused under the walk: the rest of the list is not
                    // reachable from here.
                    return None;
                }
                if let Some(v) = self.view(i) {
                    return Some(v);
                }
            })
        })
    }

    /// How long session `s` (state word `st`) lives unused, in milliseconds.
    fn timeout(&self, s: &Session, st: u32) -> u32 {
        self.timeouts.of((s.key[4].load(Relaxed) >> 32) as u8, st)
    }

    /// When session `s` (state word `st`) times out unless used, on the table's clock.
    fn due(&self, s: &Session, st: u32) -> u32 {
        s.last_seen.load(Relaxed).wrapping_add(self.timeout(s, st))
    }

    /// The wheel tick of a time in milliseconds.
    fn tick_of(ms: u32) -> u32 {
        ms >> TICK_SHIFT
    }

    /// Files session `i` in `part`'s wheel for when it may expire: from the tick after
    /// `from` at the earliest, at most a turn of the wheel ahead.
    fn file(&self, part: &Part, i: u32, from: u32, now: u32) {
        let s = &self.sessions[i as usize];
        let due = self.due(s, s.state.load(Relaxed));
        let due = if overdue(now, due) { now } else { due };
        let tcp = (s.key[4].load(Relaxed) >> 32) as u8 == crate::wire::ipv4::PROTO_TCP;
        let ahead = ahead(Self::tick_of(due), from, if tcp { TCP_HORIZON } else { WHEEL - 1 });
        let slot = &part.wheel[(from.wrapping_add(ahead) % WHEEL) as usize];
        s.next.store(slot.load(Relaxed), Relaxed);
        slot.store(i + 1, Relaxed);
    }

    /// Core `core`'s housekeeping: expires its sessions due by `now`, looking at most
    /// at `budget` of them (the rest wait for the next call). Returns how many expired.
    pub fn expire(&self, core: usize, now: u32, mut budget: u32) -> u32 {
        let Some(part) = self.parts.get(core) else { return 0 };
        let target = Self::tick_of(now);
        let mut tick = part.tick.load(Relaxed);
        if tick == u32::MAX {
            tick = target;
        }
        let mut expired = 0;
        while budget > 0 && (target.wrapping_sub(tick) as i32) >= 0 {
            let slot = &part.wheel[(tick % WHEEL) as usize];
            let head = slot.load(Relaxed);
            if head == 0 {
                tick = tick.wrapping_add(1);
                continue;
            }
            budget -= 1;
            let i = head - 1;
            let s = &self.sessions[i as usize];
            slot.store(s.next.load(Relaxed), Relaxed);
            let st = s.state.load(Relaxed);
            let due = self.due(s, st);
            let gone = st & DEAD != 0 || overdue(now, due);
            // A session another core holds this instant is looked at next tick.
            if gone && s.state.compare_exchange(st, st | BUSY, Acquire, Relaxed).is_ok() {
                if st & DEAD == 0 {
                    self.unindex(i, s);
                }
                self.ended(part, i, st, now);
                self.uncount(part, i, st);
                let g = s.key_gen.load(Relaxed);
                s.key_gen.store(g.wrapping_add(2), Release);
                s.state.store(0, Release);
                s.next.store(part.free.load(Relaxed), Relaxed);
                part.free.store(i + 1, Relaxed);
                part.expired.fetch_add(1, Relaxed);
                part.live.fetch_sub(1, Relaxed);
                expired += 1;
            } else {
                // Filed again from the tick after this one at the earliest.
                self.file(part, i, tick, now);
            }
        }
        part.tick.store(tick, Relaxed);
        expired
    }

    /// Takes session `i` out of the index (by its own key, and by its `Nat` key if it
    /// is translated).
    fn unindex(&self, i: u32, s: &Session) {
        self.unindex_entry(&words_key(&s.words()), i as u64 + 1);
        self.unindex_nat(i);
    }

    fn unindex_nat(&self, i: u32) {
        if let Some(nat) = self.nat_of(i) {
            self.unindex_entry(&nat.key, NAT_ENTRY | (i as u64 + 1));
        }
    }

    /// Clears the index entry for `key` whose low word is `low` (the session's index +
    /// 1, with `NAT_ENTRY` for its `Nat` key).
    fn unindex_entry(&self, key: &CtKey, low: u64) {
        let (b1, b2, _) = self.buckets_of(self.hash(key));
        for b in [b1, b2] {
            for e in &self.buckets[b] {
                let v = e.load(Relaxed);
                if v != 0 && v & 0xffff_ffff == low {
                    let _ = e.compare_exchange(v, 0, Relaxed, Relaxed);
                    return;
                }
            }
        }
    }

    /// Session `i` as it stands, if it is live.
    pub fn view(&self, i: u32) -> Option<SessionView> {
        let s = self.sessions.get(i as usize)?;
        if s.state.load(Acquire) & LIVE == 0 {
            return None;
        }
        let (key, gen) = Self::read_key(s)?;
        let st = s.state.load(Acquire);
        if st & (DEAD | LIVE) != LIVE {
            return None;
        }
        let p = s.ports.load(Relaxed);
        let (packets, bytes) = self.counts(i);
        Some(SessionView {
            index: i,
            gen,
            key,
            state: st & !BUSY,
            tcp: TcpState::from_u8((st & PROTO_STATE) as u8),
            last_seen: s.last_seen.load(Relaxed),
            created: s.created.load(Relaxed),
            ports: [p as u16, (p >> 16) as u16],
            packets,
            bytes,
            due: self.due(s, st),
        })
    }

    /// Every live session (a walk of the whole array: for the control plane).
    pub fn sessions(&self) -> impl Iterator<Item = SessionView> + '_ {
        (0..self.sessions.len() as u32).filter_map(|i| self.view(i))
    }
}

#[cfg(test)]
mod tests;
