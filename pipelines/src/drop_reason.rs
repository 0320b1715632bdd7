//! Every reason the switch drops a packet, declared once.
//!
//! Counters are kept per core and per port for each reason; names are what
//! `vswitchctl stats` prints and what the metrics endpoint exports, so they are
//! part of the user interface: add new reasons at the end, never rename.

macro_rules! drop_reasons {
    ($($variant:ident = $name:literal : $help:literal,)*) => {
        /// Why a packet was dropped.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $($variant,)*
        }

        impl DropReason {
            /// Every reason, in declaration (and counter) order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// How many reasons there are: the length of a per-port drop-counter array.
            pub const COUNT: usize = Self::ALL.len();

            /// The stable snake_case name used in counters, logs and the API.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// One line for operators: what happened and where to look.
            pub const fn help(self) -> &'static str {
                match self { $(DropReason::$variant => $help,)* }
            }

            /// Index into a per-port drop-counter array.
            pub const fn index(self) -> usize {
                self as usize
            }

            /// The reason with that stable name, if any.
            pub fn from_name(name: &str) -> Option<DropReason> {
                Self::ALL.iter().copied().find(|r| r.name() == name)
            }
        }
    };
}

drop_reasons! {
    NoXconnect = "no_xconnect": "received on a port that has no cross-connect and no pipeline role",
    PortDown = "port_down": "sent to a port that is administratively down (vswitchctl port set NAME --admin up)",
    TxFull = "tx_full": "the egress driver did not take the packet: its tx queue was full (the peer is not draining it) or, for tap, the interface was down",
    RuntFrame = "runt_frame": "shorter than an Ethernet header",
    BadSrcMac = "bad_src_mac": "the source MAC is a group (multicast/broadcast) address",
    SamePort = "same_port": "the destination MAC is behind the port the frame came in on",
    FloodEmpty = "flood_empty": "flooded, but the VNI has no other local port and no remote VTEP to send to",
    VniUnknown = "vni_unknown": "the port's VNI has no network (add it: vswitchctl network add VNI)",
    MtuExceeded = "mtu_exceeded": "larger than the egress MTU (for VXLAN, the uplink MTU after 36 bytes of outer headers)",
    NoHeadroom = "no_headroom": "the mbuf has no headroom for the outer headers",
    NoVtep = "no_vtep": "needs a VTEP and none is configured (vswitchctl vtep set)",
    NexthopUnresolved = "nexthop_unresolved": "the remote VTEP's next hop has no ARP entry yet (the control plane is resolving it)",
    NotOurMac = "not_our_mac": "uplink frame addressed to another MAC than the VTEP's",
    NotVxlan = "not_vxlan": "uplink traffic that is neither VXLAN to our VTEP nor ARP",
    ArpNotForUs = "arp_not_for_us": "ARP or neighbour discovery on the uplink that neither asks for our address nor answers us",
    NotOurVtepIp = "not_our_vtep_ip": "IPv4 on the uplink to another address than our VTEP IP",
    VxlanBadIp = "vxlan_bad_ip": "outer IPv4 header with a bad checksum, a bad length, or fragmented",
    VxlanWrongPort = "vxlan_wrong_port": "UDP to our VTEP IP on another port than the VXLAN UDP port",
    VxlanTruncated = "vxlan_truncated": "shorter than its outer headers",
    VxlanBadFlags = "vxlan_bad_flags": "VXLAN header without the I (valid VNI) flag",
    VxlanUnknownVni = "vxlan_unknown_vni": "VXLAN for a VNI this switch does not serve",
    VxlanInnerTruncated = "vxlan_inner_truncated": "the frame inside VXLAN is shorter than an Ethernet header",
    SplitHorizon = "split_horizon": "from the uplink toward a MAC behind a remote VTEP: never sent back into the overlay",
    ReplicaNoMbuf = "replica_no_mbuf": "no mbuf left for a flood copy",
    PuntRingFull = "punt_ring_full": "the control plane's ARP queue was full",
    AclDenyIn = "acl_deny_in": "denied by an ACL rule (or the port's default) on the way in from the VM",
    AclDenyOut = "acl_deny_out": "denied by an ACL rule (or the port's default) on the way out to the VM",
    Policed = "policed": "over the port's ingress rate: its policer drops that colour",
    RateLimited = "rate_limited": "over the port's egress rate limit: its meter drops that colour",
    OffloadBadHeaders = "offload_bad_headers": "the frame's segmentation or checksum offload state does not match its headers (a guest or driver bug)",
    SegmentNoMbuf = "segment_no_mbuf": "no mbuf left to segment a large TCP frame in software for a port that cannot take it whole",
    CtInvalid = "ct_invalid": "on a stateful port: not part of a tracked connection and cannot start one (a TCP segment out of window or in the wrong state, a stray ACK or SYN+ACK, an ICMP error about no connection, a malformed header, a non-first fragment)",
    CtFull = "ct_full": "on a stateful port: a new connection, and the session table (this core's share) is full of established sessions (vswitchctl conntrack stats; raise --max-sessions)",
    CtPortLimit = "ct_port_limit": "on a stateful port: a new connection beyond the port's session limit (vswitchctl acl stateful PORT on --max-sessions N)",
    NoGateway = "no_gateway": "sent to the gateway MAC in a network that has no gateway (vswitchctl network add VNI --gateway IP/LEN)",
    GatewayNotIp = "gateway_not_ip": "sent to the gateway MAC, but not IPv4 or IPv6: the gateway routes IP only",
    ToGateway = "to_gateway": "sent to the gateway's own address, and not an echo request (nothing else listens there)",
    NoEndpoint = "no_endpoint": "routed by the gateway to an address no endpoint of the network holds (vswitchctl endpoint list VNI)",
    TtlExceeded = "ttl_exceeded": "routed by the gateway with a TTL or hop limit of 1 or less",
    NoBackend = "no_backend": "a new connection to a service that has no backend with weight (vswitchctl service list)",
    SnatNoPort = "snat_no_port": "a new masqueraded connection found no free port on the host address toward its destination",
    OffloadRefused = "offload_refused": "the port's driver refused the checksum or segmentation work the frame left to it (rte_eth_tx_prepare)",
    CtTaken = "ct_taken": "a new translated connection's address and port were taken at the same instant by another core's connection; its retry gets another port",
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(seen.insert(r.name()), "duplicate name {}", r.name());
            assert!(r.name().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert_eq!(DropReason::from_name(r.name()), Some(*r));
            assert!(!r.help().is_empty());
        }
        assert_eq!(DropReason::from_name("no_such_reason"), None);
    }
}
