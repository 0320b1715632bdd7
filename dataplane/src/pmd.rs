//! The poll-mode loop each worker lcore runs: rx bursts, hand them to the stages of the
//! port's role (or its cross-connect), dispatch the verdicts, flush, quiescent point.
use crate::{
    capture::{Capture, CaptureTap},
    eal::Eal,
    latency,
    mbuf::Mbuf,
    mempool::PktPool,
    snapshot::{Rcu, Role, Snapshot},
    stats::CoreCounters,
    txbuf::TxBuffers,
    vhost::VhostOffloads,
    DpdkError,
};
use crossbeam::queue::ArrayQueue;
use dpdk_sys::rte_mbuf;
use pipelines::{
    acl::{AclCache, Direction},
    learn::{Clock, LearnEvent, Sink},
    qos::ColorAction,
    sflow::{FlowSample, Sampler, OUTPUT_DISCARDED, OUTPUT_MULTIPLE},
    stages::{self, Ctx, PerCore},
    vxlan, Action, DropReason, Frame, Meta, BURST,
};
use std::sync::{
    atomic::{AtomicBool, Ordering::Relaxed},
    Arc,
};

/// Learn events a core may queue before the control plane drains them.
pub const LEARN_RING: usize = 4096;
/// ARP packets a core may queue for the control plane.
pub const PUNT_RING: usize = 256;
/// Packets the control plane may queue for transmission.
pub const CTL_TX_RING: usize = 1024;
/// sFlow samples a core may queue for the control plane.
pub const SFLOW_RING: usize = 4096;

/// A packet (the first `len` bytes) handed to the control plane.
#[derive(Clone, Copy)]
pub struct Punted {
    pub port: u16,
    pub len: u16,
    pub data: [u8; 128],
}

impl Punted {
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

/// What the cores and the control plane share.
pub struct Shared {
    pub rcu: Rcu,
    /// Per core index.
    pub counters: Box<[CoreCounters]>,
    pub lcores: Vec<u32>,
    /// Per core: learn events for the control plane.
    pub learn: Box<[ArrayQueue<LearnEvent>]>,
    /// Per core: ARP replies for the control plane.
    pub punt: Box<[ArrayQueue<Punted>]>,
    /// Per core: sFlow samples for the control plane.
    pub sflow: Box<[ArrayQueue<FlowSample>]>,
    /// Per core: the latency histogram exchange.
    pub latency: Box<[latency::Exchange]>,
    /// Buffers for a running packet capture.
    pub capture: Capture,
    /// Packets from the control plane (ARP requests), sent by core 0.
    pub ctl_tx: ArrayQueue<(u16, Mbuf)>,
    pub pool: Arc<PktPool>,
    pub tsc_hz: u64,
    stop: AtomicBool,
    /// Sleep this long after `IDLE_ROUNDS` empty rounds; 0 polls without pause.
    idle_sleep_us: u32,
    /// Coalesce TCP segments for ports that take TSO (`offload::coalesce`).
    gro: bool,
}

// SAFETY: an Mbuf in a ring is owned by the ring until popped; only one thread pops it.
unsafe impl Send for Mbuf {}

/// Sessions a core looks at for expiry per poll round, at most.
const CT_EXPIRE_BUDGET: u32 = 64;
/// Empty rounds before an idle core may sleep (when sleeping is enabled).
const IDLE_ROUNDS: u32 = 1024;
/// A core offers its latency histogram to the control plane every this many rounds.
const LATENCY_EXCHANGE_ROUNDS: u32 = 1024;

impl Shared {
    pub fn new(lcores: Vec<u32>, idle_sleep_us: u32, gro: bool, pool: Arc<PktPool>, tsc_hz: u64) -> Arc<Shared> {
        let n = lcores.len();
        Arc::new(Shared {
            rcu: Rcu::new(n),
            counters: (0..n).map(|_| CoreCounters::default()).collect(),
            learn: (0..n).map(|_| ArrayQueue::new(LEARN_RING)).collect(),
            punt: (0..n).map(|_| ArrayQueue::new(PUNT_RING)).collect(),
            sflow: (0..n).map(|_| ArrayQueue::new(SFLOW_RING)).collect(),
            latency: (0..n).map(|_| latency::Exchange::default()).collect(),
            capture: Capture::new(n),
            ctl_tx: ArrayQueue::new(CTL_TX_RING),
            pool,
            tsc_hz,
            lcores,
            stop: AtomicBool::new(false),
            idle_sleep_us,
            gro,
        })
    }

    /// Queues `bytes` for transmission on `port` by a PMD core. False if no mbuf or the
    /// ring is full.
    pub fn transmit(&self, port: u16, bytes: &[u8]) -> bool {
        let Some(m) = Mbuf::from_bytes(&self.pool, bytes) else { return false };
        if let Err((_, m)) = self.ctl_tx.push((port, m)) {
            // SAFETY: the mbuf never left this thread.
            unsafe { dpdk_sys::vs_pktmbuf_free(m.0) };
            return false;
        }
        true
    }
}

struct Launch {
    shared: Arc<Shared>,
    index: usize,
}

/// Starts one PMD loop on every worker lcore.
pub fn launch(eal: &Eal, shared: &Arc<Shared>) -> Result<(), DpdkError> {
    for (index, &lcore) in eal.workers.iter().enumerate() {
        // Online before launch, so a publication right after this waits for the core.
        shared.rcu.set_online(index, true);
        let arg = Box::into_raw(Box::new(Launch { shared: shared.clone(), index }));
        // SAFETY: `lcore` is an idle worker lcore; `arg` is a leaked Box that
        // `lcore_main` takes back exactly once.
        let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(lcore_main), arg.cast(), lcore) };
        if ret < 0 {
            // SAFETY: the launch failed, so the lcore never took ownership of `arg`.
            drop(unsafe { Box::from_raw(arg) });
            shared.rcu.set_online(index, false);
            return Err(DpdkError::from_ret("rte_eal_remote_launch", ret));
        }
    }
    Ok(())
}

/// Asks every core to leave its loop (flushing its tx buffers) and waits for them.
pub fn stop(shared: &Shared) {
    shared.stop.store(true, Relaxed);
    // SAFETY: called from the main lcore; waits for the workers launched above.
    unsafe { dpdk_sys::rte_eal_mp_wait_lcore() };
}

unsafe extern "C" fn lcore_main(arg: *mut libc::c_void) -> i32 {
    // SAFETY: `arg` is the Box leaked by `launch` for this lcore alone.
    let launch = unsafe { Box::from_raw(arg.cast::<Launch>()) };
    tracing::info!("PMD core {} running on lcore {}", launch.index, launch.shared.lcores[launch.index]);
    poll(&launch.shared, launch.index);
    0
}

/// A learn-event sink over this core's ring.
struct Ring<'a>(&'a ArrayQueue<LearnEvent>);

impl Sink<LearnEvent> for Ring<'_> {
    #[inline(always)]
    fn push(&mut self, ev: LearnEvent) -> bool {
        self.0.push(ev).is_ok()
    }
}

/// One core's private state.
struct Core<'a> {
    me: usize,
    shared: &'a Shared,
    counters: &'a CoreCounters,
    tx: TxBuffers<'a>,
    stage: PerCore,
    sampler: Sampler,
    learn_lost_seen: u64,
    acl_misses_seen: u64,
    frames: [Mbuf; BURST],
    meta: [Meta; BURST],
    /// Mbufs to free at the end of a batch, in one bulk call.
    dead: [*mut rte_mbuf; BURST],
    ndead: usize,
    /// TSC at the start of the current round.
    now: u64,
    /// TSC when the current rx burst arrived (at the latest).
    rx_tsc: u64,
    /// A burst of this round already carries `rx_tsc`.
    rx_tsc_used: bool,
}

fn poll(shared: &Shared, me: usize) {
    let mut core = Core {
        me,
        shared,
        counters: &shared.counters[me],
        tx: TxBuffers::new(me as u16, &shared.capture, &shared.pool, shared.gro),
        stage: PerCore { core: me, acl: AclCache::with_flows(), ..PerCore::default() },
        // The TSC only seeds this core's sampler.
        sampler: Sampler::new(crate::tsc() ^ ((me as u64) << 48)),
        learn_lost_seen: 0,
        acl_misses_seen: 0,
        frames: [Mbuf::NULL; BURST],
        meta: [Meta::default(); BURST],
        dead: [std::ptr::null_mut(); BURST],
        ndead: 0,
        now: 0,
        rx_tsc: 0,
        rx_tsc_used: false,
    };
    let mut reader = shared.rcu.reader(me);
    let mut idle_rounds = 0u32;
    let mut exchange_in = LATENCY_EXCHANGE_ROUNDS;
    // One TSC read per round (each costs tens of cycles, a few percent of a burst): the
    // start of a round ends the previous one, which is counted busy or idle then; a round
    // that sent packets starts with the TSC read after its last tx burst.
    let mut round_start = crate::tsc();
    let mut last_got = 0u64;
    while !shared.stop.load(Relaxed) {
        reader.refresh();
        let snap = reader.snapshot();
        core.tx.tap = snap.capture.filter(|t| t.tx);
        // A round that sent packets ended with a TSC read; nothing of note ran since.
        let t0 = match std::mem::take(&mut core.tx.sent_tsc) {
            0 => crate::tsc(),
            t => t,
        };
        let c = core.counters;
        if last_got > 0 {
            c.busy_cycles.add(t0.wrapping_sub(round_start));
        } else {
            c.idle_cycles.add(t0.wrapping_sub(round_start));
        }
        round_start = t0;
        core.now = t0;
        // The first burst of the round is stamped with the round's start.
        core.rx_tsc = t0;
        core.rx_tsc_used = false;
        if me == 0 && !shared.ctl_tx.is_empty() {
            core.send_from_control(snap);
        }
        let mut got = 0u64;
        for rxq in &snap.rx[me] {
            got += core.rx_burst(snap, rxq.port, rxq.queue, t0) as u64;
        }
        core.tx.flush_all(snap, core.counters);
        if let Some(ct) = &snap.l2.ct.table {
            // Expiry: this core's own sessions, a bounded number per round.
            let now = pipelines::conntrack::now_ms(Clock { now: t0, hz: shared.tsc_hz });
            ct.expire(me, now, CT_EXPIRE_BUDGET);
        }
        c.rounds.add(1);
        if got > 0 {
            c.packets.add(got);
            idle_rounds = 0;
        } else {
            idle_rounds = idle_rounds.saturating_add(1);
        }
        last_got = got;
        reader.quiescent();
        exchange_in -= 1;
        if exchange_in == 0 {
            exchange_in = LATENCY_EXCHANGE_ROUNDS;
            shared.latency[me].swap(&mut core.tx.latency);
        }
        if shared.idle_sleep_us > 0 && idle_rounds >= IDLE_ROUNDS {
            // Only an idle core sleeps; a busy one never makes a syscall.
            std::thread::sleep(std::time::Duration::from_micros(shared.idle_sleep_us as u64));
        }
    }
    core.tx.flush_all(reader.snapshot(), core.counters);
}

impl Core<'_> {
    /// One rx burst from (port, queue) through its role's stages. Returns packets received.
    #[inline]
    fn rx_burst(&mut self, snap: &Snapshot, port: u16, queue: u16, now: u64) -> usize {
        let n = if let Some(k) = &snap.kernel[port as usize] {
            k.rx_burst(queue, &mut self.frames, &self.counters.ports[port as usize])
        } else {
            let frames_ptr = self.frames.as_mut_ptr().cast::<*mut rte_mbuf>();
            // SAFETY: the snapshot lists only started ports and queues assigned to this
            // core alone; `frames` has room for BURST pointers (Mbuf is repr(transparent)).
            let n = unsafe { dpdk_sys::vs_eth_rx_burst(port, queue, frames_ptr, BURST as u16) as usize };
            let marks = || snap.vhost[port as usize].is_some() || snap.nic[port as usize].is_some_and(|c| c.rx_marks);
            if n != 0 && marks() {
                VhostOffloads::rx_fixup(&mut self.frames[..n], &self.counters.ports[port as usize])
            } else {
                n
            }
        };
        if n == 0 {
            return 0;
        }
        self.tx.sent_tsc = 0;
        if self.rx_tsc_used {
            // A later burst of the same round: its own stamp.
            self.rx_tsc = crate::tsc();
        }
        self.rx_tsc_used = true;
        if let Some(tap) = snap.capture.filter(|t| t.rx && t.port == port) {
            self.capture_rx(tap, n);
        }
        let pc = &self.counters.ports[port as usize];
        let bytes: usize = self.frames[..n].iter().map(Frame::len).sum();
        pc.rx_packets.add(n as u64);
        pc.rx_bytes.add(bytes as u64);
        let slot = snap.ports[port as usize];
        if let Some(peer) = slot.xconnect {
            if snap.ports[peer as usize].active {
                self.tx.push(snap, peer, &self.frames[..n], bytes as u64, self.rx_tsc, self.counters);
            } else {
                self.drop_all(n, port, snap.ports[peer as usize].unsendable());
            }
            return n;
        }
        let ctx = Ctx { tables: &snap.l2, clock: Clock { now, hz: self.shared.tsc_hz } };
        let mut ring = Ring(&self.shared.learn[self.me]);
        let (frames, meta) = (&mut self.frames[..n], &mut self.meta[..n]);
        match slot.role {
            Role::None => {
                self.drop_all(n, port, DropReason::NoXconnect);
                return n;
            }
            Role::Vm { vni } => {
                stages::parse_vm_batch(&snap.l2, port, vni, frames, meta);
                stages::from_vm(&ctx, port, vni, frames, meta, &mut self.stage, &mut ring);
            }
            Role::Uplink => {
                stages::parse_batch(frames, meta);
                stages::from_uplink(&ctx, port, frames, meta, &mut self.stage, &mut ring);
            }
        }
        self.counters.learn_lost.follow(self.stage.learner.lost, &mut self.learn_lost_seen);
        let from_vm = matches!(slot.role, Role::Vm { .. });
        let rate = snap.sflow_sampling;
        if rate != 0 {
            let pool = &self.counters.ports[port as usize].sflow_pool;
            let before = pool.get();
            pool.add(n as u64);
            let mut picks = [0u8; BURST];
            let mut np = 0;
            self.sampler.sample_burst(port, rate, n, |i| {
                picks[np] = i as u8;
                np += 1;
            });
            for &i in &picks[..np] {
                // The pool as the sample is taken: collectors renormalise by its growth
                // from one sample to the next.
                self.sample(snap, port, from_vm, i as usize, (before + i as u64 + 1) as u32);
            }
        }
        let mut i = 0;
        while i < n {
            i = self.dispatch(snap, port, from_vm, i, n);
        }
        self.free_dead();
        // (After dispatch: a flood's copies ask each port's group too.)
        self.counters.acl_misses.follow(self.stage.acl.misses(), &mut self.acl_misses_seen);
        n
    }

    /// Carries out packet i's action and that of the packets after it (up to n) with
    /// the same action and rule counters; returns the index after them. A burst is
    /// mostly one run to one port: it is counted and queued in one step.
    #[inline]
    fn dispatch(&mut self, snap: &Snapshot, in_port: u16, from_vm: bool, i: usize, n: usize) -> usize {
        let meta = &self.meta[i];
        let (action, acl_in, acl_out) = (meta.action, meta.acl_in, meta.acl_out);
        let mut end = i + 1;
        if matches!(action, Action::Tx(_)) {
            while end < n {
                let next = &self.meta[end];
                if next.action != action || next.acl_in != acl_in || next.acl_out != acl_out {
                    break;
                }
                end += 1;
            }
        }
        for slot in [acl_in, acl_out] {
            if slot != 0 {
                if let Some(c) = self.counters.acl_hits.get(slot as usize - 1) {
                    c.add((end - i) as u64);
                }
            }
        }
        let m = self.frames[i];
        match action {
            Action::Tx(p) if snap.ports[p as usize].active => {
                let run = &self.frames[i..end];
                let bytes = run.iter().map(|f| f.len() as u64).sum();
                self.tx.push(snap, p, run, bytes, self.rx_tsc, self.counters);
            }
            Action::Tx(p) => {
                let reason = snap.ports[p as usize].unsendable();
                for k in i..end {
                    self.kill(self.frames[k], in_port, reason);
                }
            }
            Action::Drop(r) => self.kill(m, in_port, r),
            Action::Flood { vni } => self.flood(snap, in_port, from_vm, vni, i),
            Action::Punt => self.punt(m, in_port),
            Action::Continue => self.kill(m, in_port, DropReason::NoXconnect),
        }
        end
    }

    /// Broadcast, multicast and unknown unicast: a copy to every other local port of the
    /// VNI and, from a VM, one per remote VTEP of the flood list (never from the uplink
    /// back into the overlay: split horizon).
    #[cold]
    fn flood(&mut self, snap: &Snapshot, in_port: u16, from_vm: bool, vni: u32, i: usize) {
        let m = self.frames[i];
        let pool = &*self.shared.pool;
        let Some(net) = snap.l2.networks.get(&vni) else {
            return self.kill(m, in_port, DropReason::VniUnknown);
        };
        let pc = &self.counters.ports[in_port as usize];
        let mut sent = 0;
        let ctx = Ctx { tables: &snap.l2, clock: Clock { now: self.now, hz: self.shared.tsc_hz } };
        let now = pipelines::conntrack::now_ms(ctx.clock);
        for &p in &net.ports {
            if p == in_port || !snap.ports[p as usize].active {
                continue;
            }
            // Each VM's security group decides on its own copy.
            let (hit, pass) = stages::egress_acl(&ctx, p, &m, &mut self.meta[i], self.me, &mut self.stage.acl, now);
            if let Some(c) = hit.and_then(|h| self.counters.acl_hits.get(h as usize)) {
                c.add(1);
            }
            if let Err(r) = pass {
                pc.drop(r, 1);
                continue;
            }
            let Some(mut c) = m.copy(pool) else {
                pc.drop(DropReason::ReplicaNoMbuf, 1);
                continue;
            };
            // ...and its egress rate limit, on its own copy.
            if let Some(qos) = snap.l2.qos.port(p) {
                match self.stage.meters.act(qos, p, Direction::Out, ctx.clock, c.wire_len() as u64) {
                    ColorAction::Pass => {}
                    ColorAction::Remark(d) => {
                        let mut cm = self.meta[i];
                        pipelines::qos::set_dscp(&mut c, &mut cm, d);
                    }
                    ColorAction::Drop => {
                        self.kill(c, in_port, DropReason::RateLimited);
                        continue;
                    }
                }
            }
            self.tx.push_one(snap, p, c.0, self.rx_tsc, self.counters);
            sent += 1;
        }
        if from_vm {
            if let Some(vtep) = &snap.l2.vtep {
                for ip in &net.flood_vteps {
                    let Some(remote) = snap.l2.remotes.get(ip) else {
                        pc.drop(DropReason::NexthopUnresolved, 1);
                        continue;
                    };
                    let Some(mut c) = m.copy(pool) else {
                        pc.drop(DropReason::ReplicaNoMbuf, 1);
                        continue;
                    };
                    let outer_dscp = snap.l2.qos.port(in_port).and_then(|q| q.outer_dscp);
                    match vxlan::encap(&mut c, &self.meta[i], vni, remote, vtep, outer_dscp) {
                        Ok(()) if snap.ports[vtep.uplink as usize].active => {
                            self.tx.push_one(snap, vtep.uplink, c.0, self.rx_tsc, self.counters);
                            sent += 1;
                        }
                        Ok(()) if snap.ports[vtep.uplink as usize].down => self.kill(c, in_port, DropReason::PortDown),
                        Ok(()) => self.kill(c, in_port, DropReason::NoVtep),
                        Err(r) => self.kill(c, in_port, r),
                    }
                }
            }
        }
        if sent == 0 {
            pc.drop(DropReason::FloodEmpty, 1);
        }
        self.bury(m);
    }

    /// An sFlow sample of packet i, as the VM sent it (before encapsulation) or gets it
    /// (after decapsulation), with where the stages sent it.
    #[cold]
    fn sample(&mut self, snap: &Snapshot, port: u16, from_vm: bool, i: usize, sample_pool: u32) {
        let m = &self.meta[i];
        let f = self.frames[i];
        let uplink = snap.l2.vtep.map(|v| v.uplink);
        let encapsulated = from_vm && matches!(m.action, Action::Tx(p) if Some(p) == uplink);
        let skip = if encapsulated { pipelines::wire::vxlan::OUTER_LEN } else { 0 };
        let output = match m.action {
            Action::Tx(p) => p as u32 + 1,
            Action::Flood { .. } => OUTPUT_MULTIPLE,
            _ => OUTPUT_DISCARDED,
        };
        let head = f.head().get(skip..).unwrap_or(&[]);
        let len = head.len().min(snap.sflow_header_bytes as usize).min(pipelines::sflow::MAX_HEADER);
        let mut s = FlowSample {
            input: port,
            output,
            sampling_rate: snap.sflow_sampling,
            sample_pool,
            drops: 0,
            frame_length: (f.len() - skip) as u32,
            vlan: m.vlan_tci,
            vni_ingress: (!from_vm && m.vni != 0).then_some(m.vni),
            vni_egress: encapsulated.then_some(m.vni),
            header_len: len as u16,
            header: [0; pipelines::sflow::MAX_HEADER],
        };
        s.header[..len].copy_from_slice(&head[..len]);
        if self.shared.sflow[self.me].push(s).is_err() {
            self.counters.ports[port as usize].sflow_drops.add(1);
        }
    }

    /// Copies the burst just received for a running capture.
    #[cold]
    fn capture_rx(&self, tap: CaptureTap, n: usize) {
        for f in &self.frames[..n] {
            if !self.shared.capture.copy(self.me, f.head(), f.len(), false, tap.snaplen, self.rx_tsc) {
                self.counters.capture_lost.add(1);
            }
        }
    }

    /// Hands an ARP packet to the control plane.
    #[cold]
    fn punt(&mut self, m: Mbuf, in_port: u16) {
        let head = m.head();
        let len = head.len().min(128);
        let mut p = Punted { port: in_port, len: len as u16, data: [0; 128] };
        p.data[..len].copy_from_slice(&head[..len]);
        if self.shared.punt[self.me].push(p).is_err() {
            self.counters.ports[in_port as usize].drop(DropReason::PuntRingFull, 1);
        }
        self.bury(m);
    }

    /// Sends what the control plane queued (core 0 only).
    #[cold]
    fn send_from_control(&mut self, snap: &Snapshot) {
        while let Some((port, m)) = self.shared.ctl_tx.pop() {
            if snap.ports[port as usize].active {
                self.tx.push_one(snap, port, m.0, self.now, self.counters);
            } else {
                // SAFETY: popped from the ring, so ours.
                unsafe { dpdk_sys::vs_pktmbuf_free(m.0) };
            }
        }
    }

    #[inline]
    fn kill(&mut self, m: Mbuf, port: u16, reason: DropReason) {
        self.counters.ports[port as usize].drop(reason, 1);
        self.bury(m);
    }

    #[inline]
    fn bury(&mut self, m: Mbuf) {
        if self.ndead == BURST {
            self.free_dead();
        }
        self.dead[self.ndead] = m.0;
        self.ndead += 1;
    }

    #[inline]
    fn free_dead(&mut self) {
        if self.ndead > 0 {
            // SAFETY: every pointer in dead[..ndead] is an mbuf this core owns and no
            // longer references.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.dead.as_mut_ptr(), self.ndead as u32) };
            self.ndead = 0;
        }
    }

    fn drop_all(&mut self, n: usize, port: u16, reason: DropReason) {
        // SAFETY: the n mbufs are ours; nothing else references them.
        unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.frames.as_mut_ptr().cast(), n as u32) };
        self.counters.ports[port as usize].drop(reason, n as u64);
    }
}
