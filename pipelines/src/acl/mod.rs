//! Security-group ACLs: rules, a tuple-space classifier, and the brute-force
//! reference it is tested against.
//!
//! Classification is priority-sorted tuple space search: rules are grouped by the shape
//! of what they match (source and destination prefix lengths, whether they name a
//! protocol, and the prefix lengths of their port ranges, a range being split into the
//! prefixes that cover it); each group is a hash table keyed by the masked fields. A
//! packet probes each group once, visiting groups from the highest priority they hold
//! down and stopping once no group left can beat the best match. Cost grows with the
//! number of distinct shapes, not the number of rules: rules that differ from a packet
//! in one field only (a port, the protocol) are not in the bucket it probes. Higher
//! priority wins; equal priorities go to the lower rule id.
use crate::meta::{Action, IpKey, Meta};
use crate::DropReason;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
}

/// Which IP family a rule applies to (set by the prefixes it names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Any,
    V4,
    V6,
}

/// A prefix over 128-bit keys; IPv4 prefixes are IPv4-mapped (`::ffff:a.b.c.d/96+n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpKey,
    pub len: u8,
}

impl Prefix {
    pub const ANY: Prefix = Prefix { addr: 0, len: 0 };

    pub fn v4(addr: u32, len: u8) -> Prefix {
        Prefix { addr: crate::meta::ipv4_key(addr) & mask(96 + len), len: 96 + len }
    }

    pub fn v6(addr: u128, len: u8) -> Prefix {
        Prefix { addr: addr & mask(len), len }
    }

    #[inline(always)]
    pub fn contains(&self, a: IpKey) -> bool {
        a & mask(self.len) == self.addr
    }
}

/// The top `len` bits of a u128.
#[inline(always)]
pub fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128) as u32)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: u32,
    pub priority: u32,
    pub family: Family,
    pub src: Prefix,
    pub dst: Prefix,
    pub proto: Option<u8>,
    /// Inclusive; (0, 65535) matches any. Only for TCP and UDP.
    pub sport: (u16, u16),
    pub dport: (u16, u16),
    /// ICMP / ICMPv6 type.
    pub icmp_type: Option<u8>,
    pub verdict: Verdict,
    /// Where this rule's hits are counted.
    pub counter: u32,
}

pub const ANY_PORT: (u16, u16) = (0, 65535);

impl Rule {
    /// Everything but the prefixes (which the tuple lookup has already matched).
    #[inline(always)]
    fn matches_rest(&self, m: &Meta) -> bool {
        match (self.family, m.ip_version) {
            (Family::V4, 4) | (Family::V6, 6) | (Family::Any, 4 | 6) => {}
            _ => return false,
        }
        if let Some(p) = self.proto {
            if p != m.proto {
                return false;
            }
        }
        let ports = self.sport != ANY_PORT || self.dport != ANY_PORT || self.icmp_type.is_some();
        if ports {
            // A fragment without the L4 header cannot match a rule on ports or type.
            if m.l4 == 0 {
                return false;
            }
            if let Some(t) = self.icmp_type {
                return m.sport == t as u16;
            }
            return (self.sport.0..=self.sport.1).contains(&m.sport)
                && (self.dport.0..=self.dport.1).contains(&m.dport);
        }
        true
    }

    /// The whole match, for the reference classifier.
    pub fn matches(&self, m: &Meta) -> bool {
        m.ip_version != 0 && self.src.contains(m.ip_src) && self.dst.contains(m.ip_dst) && self.matches_rest(m)
    }

    fn rank(&self) -> (u32, Reverse<u32>) {
        (self.priority, Reverse(self.id))
    }
}

/// The reference: every rule, in order. The classifier must agree with it.
pub fn brute_force<'a>(rules: &'a [Rule], m: &Meta) -> Option<&'a Rule> {
    rules.iter().filter(|r| r.matches(m)).max_by_key(|r| r.rank())
}

/// What a group of rules matches on: prefix lengths of the addresses and ports, and
/// whether the protocol is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Shape {
    src_len: u8,
    dst_len: u8,
    proto: bool,
    sport_len: u8,
    dport_len: u8,
}

struct Tuple {
    shape: Shape,
    /// The masks of the shape, computed once.
    src_mask: IpKey,
    dst_mask: IpKey,
    rest_mask: u64,
    /// The best priority in this tuple: tuples are visited from the best down.
    max_priority: u32,
    /// Masked (src, dst, ports and protocol) -> rule indexes, best first.
    table: FxHashMap<TupleKey, Vec<u32>>,
}

/// A masked (source, destination, rest) triple, rest being `AclKey::rest`'s layout.
/// Hashes each address folded to 64 bits: IPv4 keys are IPv4-mapped, so their top
/// halves are all alike and hashing them is wasted work per packet; equality still
/// compares every bit.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TupleKey(IpKey, IpKey, u64);

impl std::hash::Hash for TupleKey {
    #[inline(always)]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64((self.0 ^ (self.0 >> 64)) as u64);
        h.write_u64((self.1 ^ (self.1 >> 64)) as u64);
        h.write_u64(self.2);
    }
}

/// Ports and protocol in one word, as `AclKey::rest` and tuple keys lay them out.
#[inline(always)]
fn ports_proto(sport: u16, dport: u16, proto: u8) -> u64 {
    sport as u64 | (dport as u64) << 16 | (proto as u64) << 32
}

/// The top `len` bits of a port.
fn port_mask(len: u8) -> u16 {
    if len == 0 {
        0
    } else {
        u16::MAX << (16 - len.min(16) as u32)
    }
}

/// The prefixes (value, length) that exactly cover the port range `lo..=hi`.
fn port_prefixes((lo, hi): (u16, u16)) -> Vec<(u16, u8)> {
    let (mut lo, hi) = (lo as u32, hi as u32);
    let mut out = Vec::new();
    while lo <= hi {
        let mut size = if lo == 0 { 1u32 << 16 } else { 1 << lo.trailing_zeros().min(16) };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, 16 - size.trailing_zeros() as u8));
        lo += size;
    }
    out
}

/// More entries than this for one rule and its port ranges are matched by the range
/// check alone (a wildcard in the key), the widest range first.
const MAX_ENTRIES: usize = 32;

/// A compiled, read-only rule set.
pub struct Classifier {
    /// Unique for the process's life: what a core's remembered answers are keyed by.
    id: u64,
    rules: Vec<Rule>,
    tuples: Vec<Tuple>,
    /// The packet bits some rule looks at (see `AclKey`).
    src_mask: IpKey,
    dst_mask: IpKey,
    sport_mask: u16,
    dport_mask: u16,
}

/// What of a packet a classifier looks at: the address bits under its longest prefixes,
/// the ports if some rule names a port (or ICMP type), the protocol, the IP version and
/// whether the L4 header is there. Two packets with equal keys get the same answer, so
/// a run of packets of one conversation class (a VM's burst to one subnet) is
/// classified once: a megaflow of one entry, per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclKey {
    src: IpKey,
    dst: IpKey,
    /// Ports, protocol, IP version and whether the L4 header is there, in one word:
    /// `(sport, dport, proto, ip_version, l4)` from bit 0 up.
    rest: u64,
}

impl AclKey {
    /// A key no packet has (IP version 0xff), to start a batch with.
    const NONE: AclKey = AclKey { src: 0, dst: 0, rest: 0xff << 40 };
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Classifier({} rules in {} tuples)", self.rules.len(), self.tuples.len())
    }
}

impl Classifier {
    pub fn new(mut rules: Vec<Rule>) -> Classifier {
        rules.sort_by_key(|r| Reverse(r.rank()));
        let mut by_shape: FxHashMap<Shape, Tuple> = FxHashMap::default();
        for (i, r) in rules.iter().enumerate() {
            // An ICMP type is matched where a port would be (`Meta::sport` holds it).
            let mut sports = match r.icmp_type {
                Some(t) => vec![(t as u16, 16)],
                None => port_prefixes(r.sport),
            };
            let mut dports = port_prefixes(r.dport);
            while sports.len() * dports.len() > MAX_ENTRIES {
                // The range check in `matches_rest` still applies: a wildcard only
                // puts the rule in more packets' buckets.
                if sports.len() >= dports.len() {
                    sports = vec![(0, 0)];
                } else {
                    dports = vec![(0, 0)];
                }
            }
            for &(sp, sl) in &sports {
                for &(dp, dl) in &dports {
                    let shape = Shape {
                        src_len: r.src.len,
                        dst_len: r.dst.len,
                        proto: r.proto.is_some(),
                        sport_len: sl,
                        dport_len: dl,
                    };
                    let rest_mask = ports_proto(port_mask(sl), port_mask(dl), if shape.proto { 0xff } else { 0 });
                    let t = by_shape.entry(shape).or_insert_with(|| Tuple {
                        shape,
                        src_mask: mask(r.src.len),
                        dst_mask: mask(r.dst.len),
                        rest_mask,
                        max_priority: r.priority,
                        table: FxHashMap::default(),
                    });
                    t.max_priority = t.max_priority.max(r.priority);
                    let rest = ports_proto(sp, dp, r.proto.unwrap_or(0)) & rest_mask;
                    // Rules are visited best first, so each bucket stays sorted best first.
                    t.table.entry(TupleKey(r.src.addr, r.dst.addr, rest)).or_default().push(i as u32);
                }
            }
        }
        let mut tuples: Vec<Tuple> = by_shape.into_values().collect();
        tuples.sort_by_key(|t| (Reverse(t.max_priority), t.shape));
        // Prefix masks nest, so the longest prefix of each side covers every tuple's mask.
        let src_mask = mask(rules.iter().map(|r| r.src.len).max().unwrap_or(0));
        let dst_mask = mask(rules.iter().map(|r| r.dst.len).max().unwrap_or(0));
        let sport_mask = if rules.iter().any(|r| r.sport != ANY_PORT || r.icmp_type.is_some()) { u16::MAX } else { 0 };
        let dport_mask = if rules.iter().any(|r| r.dport != ANY_PORT) { u16::MAX } else { 0 };
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Classifier { id, rules, tuples, src_mask, dst_mask, sport_mask, dport_mask }
    }

    /// The fields of `m` this rule set can tell apart.
    #[inline(always)]
    pub fn key(&self, m: &Meta) -> AclKey {
        let rest = ports_proto(m.sport & self.sport_mask, m.dport & self.dport_mask, m.proto)
            | (m.ip_version as u64) << 40
            | ((m.l4 != 0) as u64) << 48;
        AclKey { src: m.ip_src & self.src_mask, dst: m.ip_dst & self.dst_mask, rest }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The winning rule for `m`, or None (the default action applies; non-IP packets
    /// never match).
    #[inline]
    pub fn classify(&self, m: &Meta) -> Option<&Rule> {
        if m.ip_version == 0 {
            return None;
        }
        let mut best: Option<&Rule> = None;
        let rest = ports_proto(m.sport, m.dport, m.proto);
        for t in &self.tuples {
            if let Some(b) = best {
                if t.max_priority < b.priority {
                    break; // no rule left can win
                }
            }
            let key = TupleKey(m.ip_src & t.src_mask, m.ip_dst & t.dst_mask, rest & t.rest_mask);
            let Some(bucket) = t.table.get(&key) else { continue };
            for &i in bucket {
                let r = &self.rules[i as usize];
                if best.is_some_and(|b| r.rank() <= b.rank()) {
                    break; // the rest of the bucket ranks lower still
                }
                if r.matches_rest(m) {
                    best = Some(r);
                    break;
                }
            }
        }
        best
    }
}

/// Which way a packet crosses a VM port, from the VM's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the VM into the switch.
    In,
    /// From the switch to the VM.
    Out,
}

/// The rules of one VM port (its own and its VNI's), per direction, and the action when
/// none matches.
#[derive(Debug)]
pub struct PortAcl {
    pub ingress: Classifier,
    pub egress: Classifier,
    pub default: Verdict,
}

/// ACLs by port id. A port without an entry allows everything. Each port's ACL is
/// shared between snapshots until its rules change.
#[derive(Debug, Default)]
pub struct AclTables {
    pub ports: Vec<Option<std::sync::Arc<PortAcl>>>,
}

/// ARP and IPv6 neighbour discovery (ICMPv6 133 to 137) pass every security group, as
/// OpenStack's port security lets them: rules and defaults are about IP traffic, and a
/// default deny must not cut a VM off its neighbours (and the gateway).
#[inline(always)]
pub fn finds_neighbours(m: &Meta) -> bool {
    match m.ip_version {
        0 => m.ethertype == crate::wire::ethernet::ETHERTYPE_ARP,
        6 => m.proto == 58 && (133..=137).contains(&m.sport),
        _ => false,
    }
}

impl AclTables {
    /// The verdict for `m` crossing `port` in `dir`, and the counter slot of the rule
    /// that decided (None when the default did).
    #[inline]
    pub fn check(&self, port: crate::PortId, dir: Direction, m: &Meta) -> AclAnswer {
        self.check_with(&mut AclCache::default(), port, dir, m)
    }

    /// `check`, answering from what `cache` remembers of this port's rules when it can.
    #[inline]
    pub fn check_with(&self, cache: &mut AclCache, port: crate::PortId, dir: Direction, m: &Meta) -> AclAnswer {
        let Some(Some(acl)) = self.ports.get(port as usize) else { return (Verdict::Allow, None) };
        let c = match dir {
            Direction::In => &acl.ingress,
            Direction::Out => &acl.egress,
        };
        acl.decide(cache, c, m)
    }
}

impl PortAcl {
    /// The answer of classifier `c` (this port's, one direction) for `m`: its rule's
    /// verdict and counter slot, or the port's default; neighbour discovery passes.
    #[inline(always)]
    fn decide(&self, cache: &mut AclCache, c: &Classifier, m: &Meta) -> AclAnswer {
        if finds_neighbours(m) {
            return (Verdict::Allow, None);
        }
        match cache.rule(c, m) {
            Some((v, counter)) => (v, Some(counter)),
            None => (self.default, None),
        }
    }

    /// The ingress rules over a batch from the VM: every packet still undecided gets the
    /// deciding rule's counter slot + 1 in `acl_in` (0: the default decided) and, when
    /// denied, its drop.
    #[inline]
    pub fn ingress_batch(&self, meta: &mut [Meta], cache: &mut AclCache) {
        for m in meta.iter_mut() {
            if m.action != Action::Continue {
                continue;
            }
            let (verdict, hit) = self.decide(cache, &self.ingress, m);
            m.acl_in = hit.map_or(0, |h| h + 1);
            if verdict == Verdict::Deny {
                m.action = Action::Drop(DropReason::AclDenyIn);
            }
        }
    }
}

/// What `check` answers: the verdict and the deciding rule's counter slot.
pub type AclAnswer = (Verdict, Option<u32>);

/// One remembered answer: a classifier's rule (verdict, counter slot) for a key. One
/// cache line.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Flow {
    classifier: u64,
    key: AclKey,
    rule: Option<(Verdict, u32)>,
}

impl Flow {
    const NONE: Flow = Flow { classifier: 0, key: AclKey::NONE, rule: None };
}

/// Answers per core, exact-match on what a classifier looks at (`AclKey`), so a packet
/// of a known conversation costs a hash and a compare instead of the tuple probes: the
/// slot answered last (runs of one flow in a burst), then a two-way table of `FLOWS`
/// (what OVS calls its exact-match cache). Keyed by the classifier's id, so new
/// rules (a new classifier) never meet an old answer and nothing needs flushing.
pub struct AclCache {
    last: usize,
    /// Which way of a full set a miss replaces next.
    turn: usize,
    /// Packets the table had no answer for (each cost a tuple search).
    misses: u64,
    flows: Box<[Flow]>,
}

/// Entries of a core's table: 16,384 (1 MB, inside a core's L2). A set holds two answers,
/// so the table is sized for the flows, not the burst. With 1,024 conversations that each
/// need their own answer (a group that tells ports apart, as W2-real's does), 4,096
/// entries leave a tenth of them in sets of three or more, which take turns evicting
/// each other: 7.5% of packets paid a tuple search. At 16,384, under 1%.
pub const FLOWS: usize = 16384;

impl Default for AclCache {
    /// The last answer only (for a trace, a test).
    fn default() -> AclCache {
        Self::sized(1)
    }
}

impl AclCache {
    /// A PMD core's: `FLOWS` answers.
    pub fn with_flows() -> AclCache {
        Self::sized(FLOWS)
    }

    /// `n` entries, a power of two. (Tests and the fuzz target use small tables, where
    /// answers evict each other.)
    pub(crate) fn sized(n: usize) -> AclCache {
        AclCache { last: 0, turn: 0, misses: 0, flows: vec![Flow::NONE; n.max(1)].into_boxed_slice() }
    }

    /// Packets this table had no answer for.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Starts the line of the set `m`'s answer lives in on its way, for a batch to fetch
    /// its answers' lines together before it reads them one by one.
    #[inline(always)]
    pub fn prefetch<F: crate::Frame>(&self, c: &Classifier, m: &Meta) {
        if m.ip_version == 0 {
            return;
        }
        if let Some(f) = self.flows.get(self.set(c, &c.key(m))) {
            F::prefetch((f as *const Flow).cast());
        }
    }

    /// What `c` says of `m`: remembered, or classified (and remembered). The hits are
    /// inlined into the batch's loop; a miss is out of line.
    #[inline(always)]
    pub fn rule(&mut self, c: &Classifier, m: &Meta) -> Option<(Verdict, u32)> {
        if m.ip_version == 0 {
            return None;
        }
        let key = c.key(m);
        let hit = |f: &&Flow| f.classifier == c.id && f.key == key;
        if let Some(f) = self.flows.get(self.last).filter(hit) {
            return f.rule;
        }
        let set = self.set(c, &key);
        for way in [set, set | 1] {
            if let Some(f) = self.flows.get(way).filter(hit) {
                self.last = way;
                return f.rule;
            }
        }
        self.remember(c, m, key, set)
    }

    /// The first way of `key`'s set. Two ways per set: two conversations that hash
    /// alike do not evict each other.
    #[inline(always)]
    fn set(&self, c: &Classifier, key: &AclKey) -> usize {
        key.slot(c.id) & (self.flows.len() - 1) & !1
    }

    /// A miss: the tuple search, and its answer kept in `set`.
    #[inline(never)]
    fn remember(&mut self, c: &Classifier, m: &Meta, key: AclKey, set: usize) -> Option<(Verdict, u32)> {
        let rule = c.classify(m).map(|r| (r.verdict, r.counter));
        self.misses += 1;
        // A way another classifier's answer holds goes first (it can never hit again),
        // else each way in turn.
        let stale = |w: usize| self.flows.get(w).is_some_and(|f| f.classifier != c.id);
        self.turn ^= 1;
        let victim = if stale(set) {
            set
        } else if stale(set | 1) {
            set | 1
        } else {
            set | self.turn
        };
        let victim = if victim < self.flows.len() { victim } else { set };
        if let Some(f) = self.flows.get_mut(victim) {
            *f = Flow { classifier: c.id, key, rule };
        }
        self.last = victim;
        rule
    }
}

impl AclKey {
    /// Where a key sits in a core's table. Unkeyed, unlike the session table's hash: a
    /// VM that aimed its conversations at one set would gain nothing over sending more
    /// conversations than the table holds (both make its packets tuple searches, and
    /// nothing stays behind). Keyed variants measured worse on W2-real's thousand: a
    /// sum of products piled them into a few sets for some keys (90% misses), a folded
    /// product spread them at random (0.5% misses, where this one has none).
    #[inline(always)]
    fn slot(&self, classifier: u64) -> usize {
        const M: u64 = 0x9e37_79b9_7f4a_7c15;
        let fold = |a: u128| (a ^ (a >> 64)) as u64;
        let h = (fold(self.src).wrapping_mul(M) ^ fold(self.dst)).wrapping_mul(M) ^ self.rest ^ classifier;
        (h.wrapping_mul(M) >> 40) as usize
    }
}

#[cfg(test)]
mod tests;
