//! Ports on kernel network interfaces (a container's veth or tap, the host itself),
//! with the kernel's offload state carried in virtio-net headers: large TCP segments
//! and partial checksums cross without being cut or summed. Two backends:
//! - `tap`: the switch creates the interface (IFF_VNET_HDR, TUNSETOFFLOAD, one queue
//!   per fd) for the caller to move into a namespace;
//! - `packet`: it attaches to an interface that exists (a veth end, a NIC left to the
//!   kernel) with AF_PACKET and PACKET_VNET_HDR.
//!
//! Each packet costs one readv or writev: the kernel gives no batch call for tap, and
//! at 64 KiB a frame the call is not what limits throughput.
mod conf;
mod io;
pub(crate) mod sys;

pub use conf::{Backend, KernelConf};
/// The most buffers a frame sent to a kernel port may be chained from.
pub(crate) use io::TX_SEGS;

use crate::{mbuf::Mbuf, mempool::PktPool, stats::PortCounters};
use dpdk_sys::rte_mbuf;
use pipelines::offload::vnet;
use std::{os::fd::OwnedFd, sync::Arc};

/// A kernel-interface port.
pub struct KernelPort {
    pub id: u16,
    pub iface: String,
    pub backend: Backend,
    /// Checksum and TSO offloads are on (the kernel took TUNSETOFFLOAD, or AF_PACKET).
    pub offloads: bool,
    /// TCP segments inside VXLAN cross too (a tap on Linux 6.17 or later).
    pub tunnel: bool,
    /// Our side's MAC (a tap's far side and a veth have their own).
    pub mac: [u8; 6],
    mtu: u16,
    /// The interface we attached to with AF_PACKET (it may be renamed).
    ifindex: Option<u32>,
    queues: Box<[io::Queue]>,
    pool: Arc<PktPool>,
}

// SAFETY: a queue's stash (the only interior mutability) is touched only by the one
// core the snapshot assigns that rx queue to; fds are safe to use from any thread.
unsafe impl Sync for KernelPort {}
// SAFETY: the raw mbuf pointers in the stashes are owned by the port.
unsafe impl Send for KernelPort {}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot create tap {iface:?}: {err}{hint}")]
    Tap { iface: String, err: std::io::Error, hint: &'static str },
    #[error("cannot attach to {iface:?} with AF_PACKET: {err}")]
    Packet { iface: String, err: std::io::Error },
    #[error("interface {iface:?}: {what}: {err}")]
    Interface { iface: String, what: &'static str, err: std::io::Error },
    #[error("no interface {iface:?} in this network namespace, and backend=packet attaches only to one that exists")]
    NoInterface { iface: String },
}

impl KernelPort {
    /// Creates (tap) or attaches to (AF_PACKET) the interface `conf` names, with
    /// `queues` rx queues; id is the switch port id it takes.
    pub fn open(
        id: u16,
        conf: &KernelConf,
        queues: u16,
        mtu: Option<u16>,
        pool: Arc<PktPool>,
    ) -> Result<KernelPort, KernelError> {
        let iface = conf.iface.clone();
        let ifindex = sys::ifindex(&iface);
        let backend = match conf.backend {
            Some(b) => b,
            None if ifindex.is_some() => Backend::Packet,
            None => Backend::Tap,
        };
        let (mut offloads, mut tunnel) = (true, true);
        let mut attached = None;
        let mut fds: Vec<OwnedFd> = Vec::new();
        match backend {
            Backend::Tap => {
                for _ in 0..queues {
                    let (fd, took, tunnelled) = sys::open_tap_queue(&iface, queues > 1).map_err(|err| KernelError::Tap {
                        iface: iface.clone(),
                        hint: if err.raw_os_error() == Some(libc::EBUSY) || err.raw_os_error() == Some(libc::EINVAL) {
                            "; an interface of that name exists and is not a tap we may open: leave out backend=tap to attach to it with AF_PACKET"
                        } else {
                            ""
                        },
                        err,
                    })?;
                    offloads &= took;
                    tunnel &= tunnelled;
                    fds.push(fd);
                }
            }
            Backend::Packet => {
                tunnel = false;
                let ifindex = ifindex.ok_or_else(|| KernelError::NoInterface { iface: iface.clone() })?;
                attached = Some(ifindex);
                // The fanout group id only has to be unique on this host among our ports.
                let fanout = (queues > 1).then_some((std::process::id() as u16) ^ (id << 8));
                for _ in 0..queues {
                    let fd = sys::open_packet_socket(ifindex, fanout)
                        .map_err(|err| KernelError::Packet { iface: iface.clone(), err })?;
                    fds.push(fd);
                }
            }
        }
        let iface_err = |what, err| KernelError::Interface { iface: iface.clone(), what, err };
        if let Some(m) = mtu {
            sys::set_mtu(&iface, m).map_err(|e| iface_err("setting the MTU", e))?;
        }
        sys::set_up(&iface).map_err(|e| iface_err("bringing it up", e))?;
        let mtu = sys::mtu(&iface).unwrap_or(1500);
        tunnel &= offloads;
        let vnet_len = if tunnel { vnet::TUNNEL_LEN } else { vnet::LEN };
        let queues = fds.into_iter().map(|fd| io::Queue::new(fd, vnet_len)).collect();
        Ok(KernelPort {
            id,
            iface,
            backend,
            offloads,
            tunnel,
            mac: local_mac(&conf.iface),
            mtu,
            ifindex: attached,
            queues,
            pool,
        })
    }

    pub fn queues(&self) -> u16 {
        self.queues.len() as u16
    }

    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Up with carrier, asked of the interface wherever it is (a tap moved into a
    /// container's namespace included); None when it cannot be asked.
    pub fn link_up(&self) -> Option<bool> {
        match self.backend {
            Backend::Tap => sys::tap_link_up(self.queues.first()?.fd()).ok(),
            Backend::Packet => sys::link_up(&sys::ifname(self.ifindex?)?).ok(),
        }
    }

    /// Tells the far end the port is out of service (or back): a tap loses its carrier,
    /// wherever it lives; the interface an AF_PACKET port is bound to goes down, so a
    /// veth's other end (a container's interface) loses its carrier.
    pub fn set_link(&self, up: bool) -> std::io::Result<()> {
        match self.backend {
            Backend::Tap => match self.queues.first() {
                Some(q) => sys::tap_set_carrier(q.fd(), up),
                None => Ok(()),
            },
            Backend::Packet => {
                let iface = self.ifindex.and_then(sys::ifname).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, format!("interface {} is gone", self.iface))
                })?;
                sys::set_admin(&iface, up)
            }
        }
    }

    /// What `port list` shows: the offloads frames keep across this port.
    pub fn offload_names(&self) -> Vec<&'static str> {
        match (self.offloads, self.tunnel) {
            (true, true) => vec!["csum", "tso4", "tso6", "vxlan-tso"],
            (true, false) => vec!["csum", "tso4", "tso6"],
            _ => Vec::new(),
        }
    }

    /// Whether a frame of `len` bytes with `o` pending may leave here as it is.
    #[inline]
    pub fn takes(&self, o: &pipelines::offload::Offload, len: usize) -> bool {
        self.offloads && vnet::Header::of(o, len, self.tunnel).is_some()
    }

    /// Up to `out.len()` frames from rx queue `queue`. Frames the kernel hands over
    /// with offload state that does not match their headers are dropped and counted.
    #[inline]
    pub fn rx_burst(&self, queue: u16, out: &mut [Mbuf], counters: &PortCounters) -> usize {
        let Some(q) = self.queues.get(queue as usize) else { return 0 };
        // SAFETY: one core polls each rx queue (see `Sync` above).
        unsafe { q.rx(self.id, &self.pool, out, counters) }
    }

    /// Sends `pkts` (on core `core`'s fd) and frees every one; returns how many were
    /// sent and their bytes. A frame must be one `takes` accepts.
    #[inline]
    pub fn tx_burst(&self, core: u16, pkts: &[*mut rte_mbuf]) -> (usize, u64) {
        let q = &self.queues[core as usize % self.queues.len()];
        q.tx(pkts)
    }
}

/// A locally administered MAC for our side of the port, the same after a restart (a
/// VTEP's peers keep the MAC they resolved) and different on every host and interface:
/// a hash of the host's machine-id and the interface's name.
fn local_mac(iface: &str) -> [u8; 6] {
    let host = std::fs::read("/etc/machine-id").unwrap_or_default();
    let h = pipelines::services::maglev::fnv1a(host.into_iter().chain([b'/']).chain(iface.bytes()));
    [0x02, 0x76, (h >> 24) as u8, (h >> 16) as u8, (h >> 8) as u8, h as u8]
}

impl std::fmt::Debug for KernelPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPort")
            .field("id", &self.id)
            .field("iface", &self.iface)
            .field("backend", &self.backend)
            .finish()
    }
}
