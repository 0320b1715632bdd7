//! A vhost-user port's offloads. The guest negotiates them when it attaches, and may
//! attach again with others: what it negotiated decides which frames leave toward it
//! whole, and the vhost PMD marks what the guest hands over as partial
//! (`RX_L4_CKSUM_NONE`) or unsegmented (`RX_LRO`), which `rx_fixup` turns into the
//! pending work the pipeline carries.
use crate::{mbuf::Mbuf, stats::PortCounters};
use pipelines::{offload, Frame};
use std::{
    borrow::Cow,
    sync::atomic::{AtomicU64, Ordering},
};

/// virtio-net feature bits (virtio 1.x section 5.1.3): what the guest takes.
const GUEST_CSUM: u64 = 1 << 1;
const GUEST_TSO4: u64 = 1 << 7;
const GUEST_TSO6: u64 = 1 << 8;

/// Whether `devargs` name a vhost-user port (`net_vhost0,iface=...`).
fn is_vhost(devargs: &str) -> bool {
    devargs.starts_with("net_vhost")
}

/// `devargs` with the guest's TSO offered (`tso=1`) unless the user said otherwise:
/// the PMD withholds HOST_TSO4/6 by default, and every frame the switch takes can be
/// segmented again at an egress that needs it.
pub fn devargs(devargs: &str) -> Cow<'_, str> {
    if !is_vhost(devargs) || devargs.split(',').any(|kv| kv.starts_with("tso=")) {
        return Cow::Borrowed(devargs);
    }
    Cow::Owned(format!("{devargs},tso=1"))
}

/// What the guest on one vhost-user port negotiated; 0 while none is attached.
#[derive(Debug)]
pub struct VhostOffloads {
    port: u16,
    features: AtomicU64,
}

impl VhostOffloads {
    pub(crate) fn new(port: u16) -> VhostOffloads {
        VhostOffloads { port, features: AtomicU64::new(0) }
    }

    /// Reads what the attached guest negotiated, or 0 if the link is down. Runs on
    /// the vhost thread at each attach and detach (the PMD's link-state event) and
    /// on the control thread when the port starts. A detach clears it before the
    /// next guest's queues run, so a frame never leaves whole for a guest that did
    /// not ask for it; until the new guest's event, its frames are done in software.
    pub(crate) fn refresh(&self) {
        let mut link = dpdk_sys::rte_eth_link::default();
        let mut features = 0u64;
        // SAFETY: the port is attached (the callback is unregistered before it is
        // closed); the out-pointers are locals. Neither call takes a lock the PMD
        // holds while it raises the event.
        unsafe {
            dpdk_sys::rte_eth_link_get_nowait(self.port, &mut link);
            let vid = dpdk_sys::rte_eth_vhost_get_vid_from_port_id(self.port);
            if link.link_status() == 0
                || vid < 0
                || dpdk_sys::rte_vhost_get_negotiated_features(vid, &mut features) != 0
            {
                features = 0;
            }
        }
        self.features.store(features, Ordering::Release);
        tracing::debug!("vhost port {}: guest features {features:#x}", self.port);
    }

    /// Whether the guest takes a frame of `len` bytes owing `o` as it is.
    #[inline]
    pub fn takes(&self, o: &offload::Offload, len: usize) -> bool {
        let f = self.features.load(Ordering::Acquire);
        if f & GUEST_CSUM == 0 || o.outer != 0 {
            return false;
        }
        match o.gso {
            None => true,
            Some(g) => {
                let tso = if g.ip_version == 4 { GUEST_TSO4 } else { GUEST_TSO6 };
                f & tso != 0 && len <= u16::MAX as usize + pipelines::wire::ethernet::HEADER_LEN
            }
        }
    }

    /// The offloads frames keep toward the guest, for `port list`.
    pub fn names(&self) -> Vec<&'static str> {
        let f = self.features.load(Ordering::Acquire);
        [(GUEST_CSUM, "csum"), (GUEST_CSUM | GUEST_TSO4, "tso4"), (GUEST_CSUM | GUEST_TSO6, "tso6")]
            .into_iter()
            .filter(|&(bits, _)| f & bits == bits)
            .map(|(_, name)| name)
            .collect()
    }

    /// Turns the PMD's marks on `frames` into pending work (the virtio PMD marks what
    /// a NIC's peer hands over the same way); frames whose marks do not
    /// match their headers are freed and counted. Returns how many frames are left,
    /// in order, at the front. Out of line: the other ports' rx path stays as small as
    /// it was.
    #[inline(never)]
    pub fn rx_fixup(frames: &mut [Mbuf], counters: &PortCounters) -> usize {
        let mut kept = 0;
        for i in 0..frames.len() {
            let mut m = frames[i];
            if let Some(mss) = m.rx_partial() {
                match offload::partial(m.head(), mss) {
                    Ok(o) => m.set_offload(o),
                    Err(reason) => {
                        counters.drop(reason, 1);
                        // SAFETY: ours, and not kept.
                        unsafe { dpdk_sys::vs_pktmbuf_free(m.0) };
                        continue;
                    }
                }
            }
            frames[kept] = m;
            kept += 1;
        }
        kept
    }
}

/// The link-state event of a vhost port: a guest attached or went away.
pub(crate) unsafe extern "C" fn on_link_event(
    _port: u16,
    _event: dpdk_sys::rte_eth_event_type,
    arg: *mut libc::c_void,
    _ret: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `arg` is the VhostOffloads the EthPort registered and keeps alive until
    // it unregisters this callback.
    let v = unsafe { &*(arg as *const VhostOffloads) };
    v.refresh();
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tso_is_offered_unless_the_user_chose() {
        assert_eq!(devargs("net_vhost0,iface=/tmp/a.sock"), "net_vhost0,iface=/tmp/a.sock,tso=1");
        assert_eq!(devargs("net_vhost0,iface=/tmp/a.sock,tso=0"), "net_vhost0,iface=/tmp/a.sock,tso=0");
        assert_eq!(devargs("net_tap0,iface=x"), "net_tap0,iface=x");
    }

    #[test]
    fn a_guest_takes_only_what_it_negotiated() {
        let v = VhostOffloads::new(0);
        let csum = offload::Offload { l2: 14, l3: 20, csum: offload::L4Csum::Tcp, ..offload::Offload::NONE };
        let tso6 = offload::Offload { gso: Some(offload::Gso { ip_version: 6, mss: 1440 }), l4: 20, ..csum };
        assert!(!v.takes(&csum, 100), "no guest, no offloads");
        v.features.store(GUEST_CSUM | GUEST_TSO4, Ordering::Release);
        assert!(v.takes(&csum, 100));
        assert!(!v.takes(&tso6, 60000), "TSO4 only");
        assert!(!v.takes(&offload::Offload { outer: 50, ..csum }, 100), "no tunnel offloads");
        v.features.store(GUEST_CSUM | GUEST_TSO4 | GUEST_TSO6, Ordering::Release);
        assert!(v.takes(&tso6, 60000));
        assert!(!v.takes(&tso6, 70000), "larger than an IP packet");
        assert_eq!(v.names(), ["csum", "tso4", "tso6"]);
        v.features.store(GUEST_TSO4, Ordering::Release);
        assert!(!v.takes(&tso6, 60000) && v.names().is_empty(), "TSO without CSUM is not TSO");
    }
}
