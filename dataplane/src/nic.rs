//! A NIC's offloads: the checksums and TCP segmentation an ethdev does itself, so a
//! frame that owes them leaves whole instead of being cut and summed on the PMD core.
//! Turned on at configure time from what the driver says it can do. A virtio device
//! (a VM's NIC, or `net_virtio_user`) also hands over what its peer sent whole: large
//! frames and partial checksums, marked as the vhost PMD marks them.
//!
//! Not for vhost-user ports (their guest negotiates, `vhost`) nor for `net_tap`, whose
//! "offloads" are the same software work done inside its PMD.
use dpdk_sys::{
    RTE_ETH_RX_OFFLOAD_TCP_CKSUM as RX_TCP_CKSUM, RTE_ETH_RX_OFFLOAD_TCP_LRO as RX_LRO,
    RTE_ETH_RX_OFFLOAD_UDP_CKSUM as RX_UDP_CKSUM, RTE_ETH_TX_OFFLOAD_IPV4_CKSUM as IPV4_CKSUM,
    RTE_ETH_TX_OFFLOAD_MULTI_SEGS as MULTI_SEGS, RTE_ETH_TX_OFFLOAD_TCP_CKSUM as TCP_CKSUM,
    RTE_ETH_TX_OFFLOAD_TCP_TSO as TCP_TSO, RTE_ETH_TX_OFFLOAD_UDP_CKSUM as UDP_CKSUM,
};
use pipelines::offload::{self, L4Csum};

/// The largest frame TSO takes: an IP packet's most, behind its Ethernet header.
const MAX_TSO_FRAME: usize = u16::MAX as usize + pipelines::wire::ethernet::HEADER_LEN;

/// What one NIC port does for the switch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicOffloads {
    /// The `RTE_ETH_TX_OFFLOAD_*` bits configured.
    tx: u64,
    /// The device marks partial checksums and large frames it receives (virtio).
    pub rx_marks: bool,
    /// The most mbufs a frame may be chained from (0: the driver names no limit).
    max_segs: u16,
}

/// What `NicOffloads::choose` turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    pub offloads: NicOffloads,
    pub tx_conf: u64,
    pub rx_conf: u64,
}

impl NicOffloads {
    /// The offloads to configure on a `driver` that can do `tx_capa`/`rx_capa`; None
    /// when the port gets nothing from them.
    pub fn choose(driver: &str, tx_capa: u64, rx_capa: u64, max_segs: u16) -> Option<Chosen> {
        if matches!(driver, "net_vhost" | "net_tap") {
            return None;
        }
        let mut tx = tx_capa & (TCP_CKSUM | UDP_CKSUM | IPV4_CKSUM | MULTI_SEGS);
        // Segmentation sums every segment's TCP checksum: both or neither.
        if tx_capa & TCP_TSO != 0 && tx & TCP_CKSUM != 0 {
            tx |= TCP_TSO;
        }
        // Virtio's "LRO" is its peer's TSO handed over as it was sent, exact; a
        // hardware NIC's LRO merges what it likes, which a switch must not forward.
        let virtio = matches!(driver, "net_virtio" | "net_virtio_user");
        let rx = if virtio { rx_capa & (RX_TCP_CKSUM | RX_UDP_CKSUM | RX_LRO) } else { 0 };
        let offloads = NicOffloads { tx, rx_marks: rx != 0, max_segs };
        (tx & (TCP_CKSUM | UDP_CKSUM) != 0 || rx != 0).then_some(Chosen { offloads, tx_conf: tx, rx_conf: rx })
    }

    /// Whether the device takes a frame of `len` bytes in `segs` mbufs owing `o`.
    #[inline]
    pub fn takes(&self, o: &offload::Offload, len: usize, segs: u16) -> bool {
        // Tunnel offloads (VXLAN_TNL_TSO, OUTER_IPV4_CKSUM) are not used yet: VXLAN
        // frames are segmented and summed in software.
        if o.outer != 0 {
            return false;
        }
        let csum = match o.csum {
            L4Csum::Tcp => TCP_CKSUM,
            L4Csum::Udp => UDP_CKSUM,
            L4Csum::None => 0,
        };
        if self.tx & csum != csum {
            return false;
        }
        if (segs > 1 && self.tx & MULTI_SEGS == 0) || (self.max_segs != 0 && segs > self.max_segs) {
            return false;
        }
        o.gso.is_none() || (self.tx & TCP_TSO != 0 && len <= MAX_TSO_FRAME)
    }

    /// The mbuf flags a taken frame needs besides the ones it carries: an IPv4
    /// segment's header checksum is the device's too, where it can.
    #[inline]
    pub fn extra_flags(&self, o: &offload::Offload) -> u64 {
        match o.gso {
            Some(g) if g.ip_version == 4 && self.tx & IPV4_CKSUM != 0 => dpdk_sys::RTE_MBUF_F_TX_IP_CKSUM,
            _ => 0,
        }
    }

    /// The offloads frames keep toward the device, for `port list`.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.tx & (TCP_CKSUM | UDP_CKSUM) == TCP_CKSUM | UDP_CKSUM {
            names.push("csum");
        }
        if self.tx & TCP_TSO != 0 {
            names.extend(["tso4", "tso6"]);
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipelines::offload::{Gso, Offload};

    const VIRTIO_TX: u64 = MULTI_SEGS | TCP_CKSUM | UDP_CKSUM | TCP_TSO;

    #[test]
    fn a_nic_takes_what_it_can_do_and_no_more() {
        let csum = Offload { l2: 14, l3: 20, csum: L4Csum::Tcp, ..Offload::NONE };
        let tso4 = Offload { l4: 20, gso: Some(Gso { ip_version: 4, mss: 1448 }), ..csum };
        let c = NicOffloads::choose("net_virtio_user", VIRTIO_TX, RX_TCP_CKSUM | RX_LRO, 0).unwrap();
        assert_eq!(c.tx_conf, VIRTIO_TX);
        assert_eq!(c.rx_conf, RX_TCP_CKSUM | RX_LRO);
        let n = c.offloads;
        assert!(n.rx_marks);
        assert!(n.takes(&csum, 100, 1) && n.takes(&tso4, 60000, 30));
        assert!(!n.takes(&tso4, 70000, 35), "larger than an IP packet");
        assert!(!n.takes(&Offload { outer: 50, ..csum }, 150, 1), "no tunnel offloads");
        assert_eq!(n.extra_flags(&tso4), 0, "virtio sums the IPv4 header itself");
        assert_eq!(n.names(), ["csum", "tso4", "tso6"]);

        // Checksums only: a large frame is cut in software.
        let n = NicOffloads::choose("net_ice", TCP_CKSUM | UDP_CKSUM | IPV4_CKSUM, 0, 8).unwrap().offloads;
        assert!(!n.rx_marks, "no LRO from hardware");
        assert!(n.takes(&csum, 100, 1));
        assert!(!n.takes(&csum, 100, 2), "chained, without MULTI_SEGS");
        assert!(!n.takes(&tso4, 60000, 1));
        // TSO without a TCP checksum is not TSO.
        let n = NicOffloads::choose("net_x", TCP_TSO | UDP_CKSUM | MULTI_SEGS, 0, 8).unwrap().offloads;
        assert!(!n.takes(&tso4, 60000, 8) && !n.takes(&csum, 100, 1));
        // A driver's chain limit.
        let n = NicOffloads::choose("net_i40e", VIRTIO_TX | IPV4_CKSUM, RX_LRO, 8).unwrap().offloads;
        assert!(n.takes(&tso4, 16000, 8) && !n.takes(&tso4, 60000, 30));
        assert_eq!(n.extra_flags(&tso4), dpdk_sys::RTE_MBUF_F_TX_IP_CKSUM);
        assert!(!n.rx_marks);
    }

    #[test]
    fn ports_with_their_own_offload_path_or_none_get_nothing() {
        assert_eq!(NicOffloads::choose("net_vhost", VIRTIO_TX, RX_LRO, 0), None);
        assert_eq!(NicOffloads::choose("net_tap", VIRTIO_TX, RX_LRO, 0), None);
        assert_eq!(NicOffloads::choose("net_pcap", MULTI_SEGS, 0, 0), None);
    }
}
