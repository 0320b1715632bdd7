//! sFlow version 5, agent side: flow samples and counter samples encoded in XDR and
//! packed into datagrams for the collectors (sFlow Version 5 specification, sflow.org).
use pipelines::sflow::FlowSample;
use std::{collections::HashMap, net::IpAddr, time::Instant};

/// Checks an sFlow setting, returning the collectors' addresses.
pub fn validate(spec: &super::api::SflowSpec) -> Result<Vec<std::net::SocketAddr>, String> {
    if spec.collectors.is_empty() {
        return Err("collectors: give at least one --collector IP:PORT".into());
    }
    let addrs = spec
        .collectors
        .iter()
        .map(|c| {
            c.parse::<std::net::SocketAddr>()
                .map_err(|_| format!("collectors: {c:?} is not IP:PORT (IPv6 as [fd00::1]:6343)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if spec.sampling > 1 << 24 {
        return Err(format!("sampling: 1 in {} is too sparse; give 0 (off) to 16777216", spec.sampling));
    }
    if let Some(p) = spec.polling {
        if p > 3600 {
            return Err(format!("polling: {p} s is too long; give 0 (off) to 3600"));
        }
    }
    if let Some(h) = spec.header_bytes {
        if !(14..=pipelines::sflow::MAX_HEADER as u16).contains(&h) {
            return Err(format!("header_bytes: {h} is out of range; give 14 to {}", pipelines::sflow::MAX_HEADER));
        }
    }
    Ok(addrs)
}

/// Datagrams stay under a common path MTU.
pub const MAX_DATAGRAM: usize = 1400;
const SAMPLE_FLOW: u32 = 1;
const SAMPLE_COUNTERS: u32 = 2;
const FLOW_RAW_HEADER: u32 = 1;
const FLOW_EXT_SWITCH: u32 = 1001;
const FLOW_EXT_VNI_EGRESS: u32 = 1029;
const FLOW_EXT_VNI_INGRESS: u32 = 1030;
const COUNTERS_GENERIC_IF: u32 = 1;
const COUNTERS_ETHERNET: u32 = 2;
const HEADER_PROTOCOL_ETHERNET: u32 = 1;

/// XDR: big-endian 32-bit words, opaque data padded to a word.
#[derive(Default)]
struct Xdr(Vec<u8>);

impl Xdr {
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn opaque(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }
    /// A record: its format, its length, its body.
    fn record(&mut self, format: u32, body: &Xdr) -> &mut Self {
        self.u32(format).u32(body.0.len() as u32);
        self.0.extend_from_slice(&body.0);
        self
    }
}

/// An interface's counters for a counter sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfCounters {
    pub if_index: u32,
    pub speed_bps: u64,
    pub up: bool,
    pub in_octets: u64,
    pub in_packets: u64,
    pub in_discards: u64,
    pub in_errors: u64,
    pub out_octets: u64,
    pub out_packets: u64,
    pub out_discards: u64,
    pub out_errors: u64,
}

/// The agent: its address, sequence numbers, and the datagrams it builds.
pub struct Agent {
    pub address: IpAddr,
    pub sub_agent: u32,
    boot: Instant,
    datagram_seq: u32,
    flow_seq: HashMap<u32, u32>,
    counter_seq: HashMap<u32, u32>,
    /// Encoded samples waiting for a datagram.
    pending: Vec<Vec<u8>>,
}

fn bump(m: &mut HashMap<u32, u32>, k: u32) -> u32 {
    let s = m.entry(k).or_insert(0);
    *s = s.wrapping_add(1);
    *s
}

impl Agent {
    pub fn new(address: IpAddr, sub_agent: u32) -> Agent {
        Agent {
            address,
            sub_agent,
            boot: Instant::now(),
            datagram_seq: 0,
            flow_seq: HashMap::new(),
            counter_seq: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Adds a flow sample. `if_index` maps a port id to its ifIndex; `pool` and `drops`
    /// are the input port's totals.
    pub fn flow(&mut self, s: &FlowSample, if_index: u32, output: u32, pool: u32, drops: u32) {
        let mut records = 0;
        let mut rec = Xdr::default();
        let mut raw = Xdr::default();
        raw.u32(HEADER_PROTOCOL_ETHERNET).u32(s.frame_length).u32(0).opaque(s.header());
        rec.record(FLOW_RAW_HEADER, &raw);
        records += 1;
        if let Some(tci) = s.vlan {
            let mut sw = Xdr::default();
            let (vlan, prio) = ((tci & 0x0fff) as u32, (tci >> 13) as u32);
            sw.u32(vlan).u32(prio).u32(vlan).u32(prio);
            rec.record(FLOW_EXT_SWITCH, &sw);
            records += 1;
        }
        for (format, vni) in [(FLOW_EXT_VNI_INGRESS, s.vni_ingress), (FLOW_EXT_VNI_EGRESS, s.vni_egress)] {
            if let Some(v) = vni {
                let mut x = Xdr::default();
                x.u32(v);
                rec.record(format, &x);
                records += 1;
            }
        }
        let mut body = Xdr::default();
        body.u32(bump(&mut self.flow_seq, if_index))
            .u32(if_index) // source id: type 0 (ifIndex), index
            .u32(s.sampling_rate)
            .u32(pool)
            .u32(drops)
            .u32(if_index)
            .u32(output)
            .u32(records);
        body.0.extend_from_slice(&rec.0);
        let mut sample = Xdr::default();
        sample.record(SAMPLE_FLOW, &body);
        self.pending.push(sample.0);
    }

    /// Adds a counter sample of one interface.
    pub fn counters(&mut self, c: &IfCounters) {
        let lo = |v: u64| v as u32; // sFlow's 32-bit packet counters wrap, as SNMP's do
        let mut generic = Xdr::default();
        generic
            .u32(c.if_index)
            .u32(6) // ethernetCsmacd
            .u64(c.speed_bps)
            .u32(1) // full duplex
            .u32(if c.up { 3 } else { 1 }) // admin up, oper up
            .u64(c.in_octets)
            .u32(lo(c.in_packets))
            .u32(0)
            .u32(0)
            .u32(lo(c.in_discards))
            .u32(lo(c.in_errors))
            .u32(0)
            .u64(c.out_octets)
            .u32(lo(c.out_packets))
            .u32(0)
            .u32(0)
            .u32(lo(c.out_discards))
            .u32(lo(c.out_errors))
            .u32(1); // promiscuous: a switch port takes every MAC
        let mut ethernet = Xdr::default();
        for _ in 0..13 {
            ethernet.u32(0);
        }
        let mut body = Xdr::default();
        body.u32(bump(&mut self.counter_seq, c.if_index)).u32(c.if_index).u32(2);
        body.record(COUNTERS_GENERIC_IF, &generic).record(COUNTERS_ETHERNET, &ethernet);
        let mut sample = Xdr::default();
        sample.record(SAMPLE_COUNTERS, &body);
        self.pending.push(sample.0);
    }

    fn header(&mut self, samples: u32) -> Xdr {
        self.datagram_seq = self.datagram_seq.wrapping_add(1);
        let mut h = Xdr::default();
        h.u32(5);
        match self.address {
            IpAddr::V4(a) => h.u32(1).u32(u32::from(a)),
            IpAddr::V6(a) => {
                h.u32(2);
                h.0.extend_from_slice(&a.octets());
                &mut h
            }
        };
        h.u32(self.sub_agent).u32(self.datagram_seq).u32(self.boot.elapsed().as_millis() as u32).u32(samples);
        h
    }

    /// Packs what is pending into datagrams of at most `MAX_DATAGRAM` bytes.
    pub fn datagrams(&mut self) -> Vec<Vec<u8>> {
        let pending = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut size = 0;
        let head_len = if self.address.is_ipv4() { 28 } else { 40 };
        for s in pending {
            if !batch.is_empty() && head_len + size + s.len() > MAX_DATAGRAM {
                out.push(self.seal(std::mem::take(&mut batch)));
                size = 0;
            }
            size += s.len();
            batch.push(s);
        }
        if !batch.is_empty() {
            out.push(self.seal(batch));
        }
        out
    }

    fn seal(&mut self, samples: Vec<Vec<u8>>) -> Vec<u8> {
        let mut d = self.header(samples.len() as u32).0;
        for s in samples {
            d.extend_from_slice(&s);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(header: &[u8]) -> FlowSample {
        let mut h = [0u8; pipelines::sflow::MAX_HEADER];
        h[..header.len()].copy_from_slice(header);
        FlowSample {
            input: 0,
            output: 2,
            sampling_rate: 100,
            sample_pool: 0,
            drops: 0,
            frame_length: 64,
            vlan: Some(0x2005),
            vni_ingress: None,
            vni_egress: Some(100),
            header_len: header.len() as u16,
            header: h,
        }
    }

    fn be(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn a_datagram_with_one_flow_sample_is_laid_out_per_the_spec() {
        let mut a = Agent::new("10.0.0.1".parse().unwrap(), 7);
        a.flow(&sample(&[0xab; 6]), 1, 3, 1000, 2);
        let d = a.datagrams();
        assert_eq!(d.len(), 1);
        let b = &d[0];
        assert_eq!((be(b, 0), be(b, 4), be(b, 8), be(b, 12), be(b, 16)), (5, 1, 0x0a000001, 7, 1));
        assert_eq!(be(b, 24), 1, "one sample");
        assert_eq!(be(b, 28), SAMPLE_FLOW);
        assert_eq!(be(b, 32) as usize, b.len() - 36, "sample length");
        // seq, source, rate, pool, drops, input, output, records
        assert_eq!(
            (be(b, 36), be(b, 40), be(b, 44), be(b, 48), be(b, 52), be(b, 56), be(b, 60), be(b, 64)),
            (1, 1, 100, 1000, 2, 1, 3, 3)
        );
        // raw header: protocol, frame length, stripped, header length, header (padded)
        assert_eq!((be(b, 68), be(b, 72)), (FLOW_RAW_HEADER, 4 * 4 + 8));
        assert_eq!((be(b, 76), be(b, 80), be(b, 84), be(b, 88)), (1, 64, 0, 6));
        assert_eq!(&b[92..98], &[0xab; 6]);
        assert_eq!(&b[98..100], &[0, 0], "padding");
        assert_eq!((be(b, 100), be(b, 104), be(b, 108), be(b, 112)), (FLOW_EXT_SWITCH, 16, 5, 1));
        assert_eq!((be(b, 124), be(b, 128), be(b, 132)), (FLOW_EXT_VNI_EGRESS, 4, 100));
        assert_eq!(b.len(), 136);
    }

    #[test]
    fn samples_pack_into_datagrams_under_the_mtu_with_sequence_numbers() {
        let mut a = Agent::new("::1".parse().unwrap(), 0);
        for _ in 0..50 {
            a.flow(&sample(&[0u8; 128]), 1, 2, 0, 0);
        }
        a.counters(&IfCounters { if_index: 1, ..Default::default() });
        let d = a.datagrams();
        assert!(d.len() > 1 && d.iter().all(|x| x.len() <= MAX_DATAGRAM));
        assert_eq!(be(&d[0], 4), 2, "IPv6 agent address");
        let seqs: Vec<u32> = d.iter().map(|x| be(x, 28)).collect();
        assert_eq!(seqs, (1..=d.len() as u32).collect::<Vec<_>>(), "datagram sequence");
        let total: u32 = d.iter().map(|x| be(x, 36)).sum();
        assert_eq!(total, 51);
    }
}
