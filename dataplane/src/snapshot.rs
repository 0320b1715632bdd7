//! Tables reach the PMD cores as immutable snapshots, published RCU-style.
//!
//! The control plane builds a new `Snapshot`, stores it, and bumps a generation
//! number. Each core checks the generation (a plain load) once per poll round and
//! picks up the new snapshot only when it changed; at the end of every round, with
//! its tx buffers flushed and no packet or port reference held, it records the
//! generation it ran on: its quiescent point. The control plane never pauses a core;
//! it waits until every running core has recorded the new generation before it frees
//! what the old snapshot referenced (a removed port, an old table).
use crate::{capture::CaptureTap, kernel::KernelPort, nic::NicOffloads, vhost::VhostOffloads, MAX_PORTS};
use arc_swap::ArcSwap;
use crossbeam::utils::CachePadded;
use pipelines::{offload, tables::L2Tables, DropReason};
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering::*},
    Arc,
};

/// One rx queue a core polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxQueue {
    pub port: u16,
    pub queue: u16,
}

/// What a port is for in the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// Only a cross-connect forwards from it.
    #[default]
    None,
    /// A VM port in tenant network `vni`.
    Vm { vni: u32 },
    /// The underlay uplink that carries VXLAN.
    Uplink,
}

/// What a core needs to know about one ethdev port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortSlot {
    /// The port exists and may be transmitted on.
    pub active: bool,
    /// The port exists but is administratively down: not polled, not sent to.
    pub down: bool,
    /// Static cross-connect: everything received goes out this port, bypassing the
    /// pipeline.
    pub xconnect: Option<u16>,
    pub role: Role,
}

/// Everything the PMD cores read, frozen.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub generation: u64,
    /// Per core index: the rx queues it polls.
    pub rx: Vec<Vec<RxQueue>>,
    /// Per ethdev port id.
    pub ports: [PortSlot; MAX_PORTS],
    /// Networks, FIB, VTEP: shared between snapshots while unchanged.
    pub l2: Arc<L2Tables>,
    /// sFlow packet sampling: 1 in `sampling` (0: off) on every pipeline port.
    pub sflow_sampling: u32,
    pub sflow_header_bytes: u16,
    /// A running packet capture, if any.
    pub capture: Option<CaptureTap>,
    /// Per port id: the kernel-interface port behind it (else it is an ethdev port).
    pub kernel: Vec<Option<Arc<KernelPort>>>,
    /// Per port id: the guest offloads of a vhost-user port.
    pub vhost: Vec<Option<Arc<VhostOffloads>>>,
    /// Per port id: what a NIC does itself.
    pub nic: Vec<Option<NicOffloads>>,
}

impl PortSlot {
    /// Why a frame for this port, which is not active, is dropped.
    pub fn unsendable(&self) -> DropReason {
        if self.down {
            DropReason::PortDown
        } else {
            DropReason::NoXconnect
        }
    }
}

impl Snapshot {
    pub fn empty(cores: usize) -> Snapshot {
        Snapshot {
            generation: 0,
            rx: vec![Vec::new(); cores],
            ports: [PortSlot::default(); MAX_PORTS],
            l2: Arc::new(L2Tables::default()),
            sflow_sampling: 0,
            sflow_header_bytes: 128,
            capture: None,
            kernel: vec![None; MAX_PORTS],
            vhost: vec![None; MAX_PORTS],
            nic: vec![None; MAX_PORTS],
        }
    }

    /// How egress `port` takes a frame that owes offload work `o`, `len` bytes in
    /// `segs` buffers: whole (a kernel port or a guest does the work, or the NIC with
    /// its extra flags), or done in software first. The one answer for the egress and
    /// for `trace`.
    pub fn egress(&self, port: u16, o: &offload::Offload, len: usize, segs: u16) -> Egress {
        let p = port as usize;
        let whole = self.kernel.get(p).and_then(Option::as_ref).is_some_and(|k| k.takes(o, len))
            || self.vhost.get(p).and_then(Option::as_ref).is_some_and(|v| v.takes(o, len));
        if whole {
            return Egress::Whole;
        }
        match self.nic.get(p).copied().flatten().filter(|n| n.takes(o, len, segs)) {
            Some(nic) => Egress::Nic(nic.extra_flags(o)),
            None => Egress::Software,
        }
    }
}

/// How an egress port takes a frame that owes offload work (`Snapshot::egress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// As it is: the port does the work.
    Whole,
    /// As it is, with these mbuf flags added: the NIC does the work.
    Nic(u64),
    /// Segmented or summed in software first.
    Software,
}

#[derive(Debug, Default)]
struct CoreSync {
    /// Generation of the snapshot the core ran its last complete round on.
    seen: AtomicU64,
    /// The core is inside its loop; an offline core holds nothing and is not waited for.
    online: AtomicBool,
}

/// The publication point shared by the control plane and the cores.
pub struct Rcu {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
    cores: Box<[CachePadded<CoreSync>]>,
}

impl Rcu {
    pub fn new(cores: usize) -> Rcu {
        Rcu {
            current: ArcSwap::from_pointee(Snapshot::empty(cores)),
            generation: AtomicU64::new(0),
            cores: (0..cores).map(|_| CachePadded::new(CoreSync::default())).collect(),
        }
    }

    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// The snapshot now in force (control plane side).
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Installs `snap` as the next generation and returns that generation. The
    /// previous snapshot stays alive for as long as the caller or a core holds it.
    /// Publications must come from one thread (the control plane serialises them).
    pub fn publish(&self, mut snap: Snapshot) -> u64 {
        let generation = self.generation.load(Relaxed) + 1;
        snap.generation = generation;
        self.current.store(Arc::new(snap));
        // Release: a core that sees the new number also sees the stored pointer.
        self.generation.store(generation, Release);
        generation
    }

    /// True once every running core has completed a round on `generation` or later.
    pub fn passed(&self, generation: u64) -> bool {
        self.cores.iter().all(|c| !c.online.load(Acquire) || c.seen.load(Acquire) >= generation)
    }

    /// The reader handle of core `index`, marking it online.
    pub fn reader(&self, index: usize) -> Reader<'_> {
        let sync = &self.cores[index];
        sync.online.store(true, Release);
        let snap = self.current.load_full();
        Reader { rcu: self, sync, generation: snap.generation, snap }
    }

    /// Marks a core that has not started (or failed to launch) as not participating.
    pub fn set_online(&self, index: usize, online: bool) {
        self.cores[index].online.store(online, Release);
    }
}

/// A core's cached view of the current snapshot.
pub struct Reader<'a> {
    rcu: &'a Rcu,
    sync: &'a CoreSync,
    generation: u64,
    snap: Arc<Snapshot>,
}

impl Reader<'_> {
    /// Picks up a newer snapshot if one was published. One plain load when nothing
    /// changed; when something did, the old Arc is released here, but the control
    /// plane still holds it until quiescence, so the core never frees a table.
    #[inline(always)]
    pub fn refresh(&mut self) {
        if self.rcu.generation.load(Acquire) != self.generation {
            self.snap = self.rcu.current.load_full();
            self.generation = self.snap.generation;
        }
    }

    #[inline(always)]
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// The core holds no reference into any snapshot older than its current one.
    #[inline(always)]
    pub fn quiescent(&self) {
        self.sync.seen.store(self.generation, Release);
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        self.sync.online.store(false, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_waits_for_every_online_core() {
        let rcu = Rcu::new(2);
        let mut a = rcu.reader(0);
        let b = rcu.reader(1);
        let mut s = Snapshot::empty(2);
        s.ports[3].active = true;
        let g = rcu.publish(s);
        assert!(!rcu.passed(g));
        a.refresh();
        assert!(a.snapshot().ports[3].active);
        a.quiescent();
        assert!(!rcu.passed(g), "core 1 has not passed a quiescent point");
        drop(b); // an offline core holds nothing
        assert!(rcu.passed(g));
    }

    /// A NIC with a chain limit takes a TSO frame whole only as a short chain; a port
    /// with no offloads gets it cut in software.
    #[test]
    fn the_egress_asks_a_nic_about_the_frame_as_it_is_chained() {
        use pipelines::offload::{Gso, L4Csum, Offload};
        let caps = dpdk_sys::RTE_ETH_TX_OFFLOAD_MULTI_SEGS
            | dpdk_sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM
            | dpdk_sys::RTE_ETH_TX_OFFLOAD_TCP_TSO
            | dpdk_sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
        let mut s = Snapshot::empty(1);
        s.nic[2] = crate::nic::NicOffloads::choose("net_i40e", caps, 0, 8).map(|c| c.offloads);
        let tso = Offload {
            l2: 14,
            l3: 20,
            l4: 20,
            csum: L4Csum::Tcp,
            gso: Some(Gso { ip_version: 4, mss: 1448 }),
            ..Offload::NONE
        };
        let len: usize = 60_054;
        let chained = len.div_ceil(crate::mempool::SEG_BYTES) as u16;
        assert_eq!(s.egress(2, &tso, len, 1), Egress::Nic(dpdk_sys::RTE_MBUF_F_TX_IP_CKSUM));
        assert_eq!(s.egress(2, &tso, len, chained), Egress::Software, "{chained} buffers, more than 8");
        assert_eq!(s.egress(3, &tso, len, 1), Egress::Software, "a port with no offloads");
    }

    #[test]
    fn old_snapshot_outlives_publication_until_released() {
        let rcu = Rcu::new(1);
        let mut r = rcu.reader(0);
        let old = rcu.load();
        let g = rcu.publish(Snapshot::empty(1));
        r.refresh();
        r.quiescent();
        assert!(rcu.passed(g));
        // The control plane's clone is now the only one: dropping it frees the table
        // on the control thread, never on a core.
        assert_eq!(Arc::strong_count(&old), 1);
    }

    #[test]
    fn readers_see_snapshots_in_order_under_concurrent_publication() {
        let rcu = Arc::new(Rcu::new(1));
        let stop = Arc::new(AtomicBool::new(false));
        // As `pmd::launch` does: online before the core runs, so no publication is missed.
        rcu.set_online(0, true);
        let core = {
            let (rcu, stop) = (rcu.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut r = rcu.reader(0);
                let mut last = 0;
                while !stop.load(Relaxed) {
                    r.refresh();
                    let g = r.snapshot().generation;
                    assert!(g >= last, "generation went backwards");
                    last = g;
                    r.quiescent();
                }
                last
            })
        };
        for _ in 0..1000 {
            let g = rcu.publish(Snapshot::empty(1));
            while !rcu.passed(g) {
                std::hint::spin_loop();
            }
        }
        stop.store(true, Relaxed);
        assert_eq!(core.join().unwrap(), 1000);
    }
}
