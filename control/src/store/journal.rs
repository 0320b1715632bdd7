//! The journal file: a header naming the snapshot it extends, then records appended one
//! per commit. Every record carries a checksum of its header and of its payload, so a
//! record cut short by a crash (the only one that can be: it was never acknowledged) is
//! told apart from damage to a record that was.
//!
//! ```text
//! header:  "VSWJ" | version u32 | snapshot length u64 | snapshot crc32 u32 | crc32 of the 20 bytes before
//! record:  "VSWR" | payload length u32 | payload crc32 u32 | crc32 of the 12 bytes before | payload
//! ```
//! All integers little-endian; a payload is the JSON of one `Record`.
use super::change::Change;
use serde::{Deserialize, Serialize};

pub const FILE_MAGIC: &[u8; 4] = b"VSWJ";
pub const RECORD_MAGIC: &[u8; 4] = b"VSWR";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 16;
/// A record larger than this is damage, not data (a whole `apply` is written as a snapshot).
pub const MAX_RECORD: u32 = 256 << 20;

/// What one commit wrote: the changes of every request in it, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub changes: Vec<Change>,
}

/// Which snapshot a journal extends: its length and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    pub len: u64,
    pub crc: u32,
}

impl Base {
    pub fn of(snapshot: &[u8]) -> Base {
        Base { len: snapshot.len() as u64, crc: crc32fast::hash(snapshot) }
    }
}

pub fn header(base: Base) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(FILE_MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&base.len.to_le_bytes());
    h.extend_from_slice(&base.crc.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

pub fn record(r: &Record) -> Vec<u8> {
    let payload = serde_json::to_vec(r).unwrap_or_default();
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The snapshot a journal file extends, or why its header cannot be read.
pub fn read_header(bytes: &[u8]) -> Result<Base, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!("the header is {} bytes long, not {HEADER_LEN}", bytes.len()));
    }
    if &bytes[0..4] != FILE_MAGIC {
        return Err("it does not start with a vswitch journal header".into());
    }
    if crc32fast::hash(&bytes[0..20]) != u32_at(bytes, 20) {
        return Err("the header's checksum does not match".into());
    }
    let version = u32_at(bytes, 4);
    if version != VERSION {
        return Err(format!("journal version {version}; this vswitchd reads version {VERSION}"));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or([0; 8]));
    Ok(Base { len, crc: u32_at(bytes, 16) })
}

/// What a scan found.
#[derive(Debug)]
pub struct Scan {
    pub records: Vec<Record>,
    /// Where the last whole record ends: the next append goes here.
    pub good_len: u64,
    /// Bytes past `good_len`: a record a crash cut short (never acknowledged).
    pub torn: u64,
}

/// Damage to an acknowledged record: where, and what.
#[derive(Debug, PartialEq)]
pub struct Damage {
    pub offset: u64,
    pub what: String,
}

/// Reads every record after the header. A bad record with nothing but zeros (or
/// nothing) after it is a torn tail; anything else bad is damage.
pub fn scan(bytes: &[u8]) -> Result<Scan, Damage> {
    let mut at = HEADER_LEN;
    let mut records: Vec<Record> = Vec::new();
    let torn = |records, at: usize| Ok(Scan { records, good_len: at as u64, torn: (bytes.len() - at) as u64 });
    loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            return Ok(Scan { records, good_len: at as u64, torn: 0 });
        }
        let tail_is_blank = rest.iter().all(|&b| b == 0);
        let damage = |what: String| Err(Damage { offset: at as u64, what });
        if rest.len() < RECORD_HEADER_LEN || tail_is_blank {
            return torn(records, at);
        }
        if &rest[0..4] != RECORD_MAGIC || crc32fast::hash(&rest[0..12]) != u32_at(rest, 12) {
            return damage("a record header is damaged (its magic or checksum does not match)".into());
        }
        let len = u32_at(rest, 4);
        if len > MAX_RECORD {
            return damage(format!("a record claims {len} bytes"));
        }
        let end = RECORD_HEADER_LEN + len as usize;
        if rest.len() < end {
            return torn(records, at);
        }
        let payload = &rest[RECORD_HEADER_LEN..end];
        if crc32fast::hash(payload) != u32_at(rest, 8) {
            if rest[end..].iter().all(|&b| b == 0) {
                return torn(records, at);
            }
            return damage("a record's checksum does not match its contents".into());
        }
        let r: Record = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => return damage(format!("a record is not one this vswitchd can read: {e}")),
        };
        let want = records.last().map_or(r.seq, |p| p.seq + 1);
        if r.seq != want {
            return damage(format!("record {} follows record {}", r.seq, want.saturating_sub(1)));
        }
        records.push(r);
        at += end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(seq: u64) -> Record {
        Record { seq, changes: vec![Change::put("networks", &json!({"vni": seq}))] }
    }

    fn journal(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut b = header(Base::of(b"{}"));
        let mut starts = Vec::new();
        for s in 1..=n {
            starts.push(b.len());
            b.extend(record(&rec(s)));
        }
        (b, starts)
    }

    #[test]
    fn whole_journal_reads_back() {
        let (b, _) = journal(3);
        assert_eq!(read_header(&b).unwrap(), Base::of(b"{}"));
        let s = scan(&b).unwrap();
        assert_eq!(s.records, vec![rec(1), rec(2), rec(3)]);
        assert_eq!((s.good_len, s.torn), (b.len() as u64, 0));
    }

    #[test]
    fn a_cut_or_blank_tail_is_torn_not_damage() {
        let (b, starts) = journal(3);
        for cut in starts[2] + 1..b.len() {
            let s = scan(&b[..cut]).unwrap();
            assert_eq!(s.records.len(), 2, "cut at {cut}");
            assert_eq!(s.good_len, starts[2] as u64);
            assert_eq!(s.torn, (cut - starts[2]) as u64);
        }
        // Space the file system extended with zeros, or a last record whose bytes never
        // reached the disk.
        let mut z = b.clone();
        z.extend([0u8; 100]);
        assert_eq!(scan(&z).unwrap().records.len(), 3);
        let mut garbled = b.clone();
        let last = garbled.len() - 3;
        garbled[last] ^= 0x55;
        assert_eq!(scan(&garbled).unwrap().records.len(), 2);
    }

    #[test]
    fn a_flipped_bit_before_the_tail_is_damage_at_its_offset() {
        let (b, starts) = journal(3);
        for at in [starts[0] + 2, starts[0] + 5, starts[0] + 13, starts[1] + 20] {
            let mut f = b.clone();
            f[at] ^= 0x04;
            let d = scan(&f).unwrap_err();
            let rec_start = if at >= starts[1] { starts[1] } else { starts[0] };
            assert_eq!(d.offset, rec_start as u64, "flip at {at}: {d:?}");
        }
        let mut h = b.clone();
        h[9] ^= 1;
        assert!(read_header(&h).unwrap_err().contains("checksum"));
    }
}
