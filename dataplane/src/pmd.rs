//! The poll-mode loop each worker lcore runs.
use crate::{eal::Eal, snapshot::Rcu, stats::CoreCounters, txbuf::TxBuffers, DpdkError};
use dpdk_sys::rte_mbuf;
use pipelines::{DropReason, BURST};
use std::sync::{
    atomic::{AtomicBool, Ordering::Relaxed},
    Arc,
};

/// What the cores and the control plane share.
pub struct Shared {
    pub rcu: Rcu,
    /// Per core index.
    pub counters: Box<[CoreCounters]>,
    pub lcores: Vec<u32>,
    stop: AtomicBool,
    /// Sleep this long after `IDLE_ROUNDS` empty rounds; 0 polls without pause.
    idle_sleep_us: u32,
}

/// Empty rounds before an idle core may sleep (when sleeping is enabled).
const IDLE_ROUNDS: u32 = 1024;

impl Shared {
    pub fn new(lcores: Vec<u32>, idle_sleep_us: u32) -> Arc<Shared> {
        Arc::new(Shared {
            rcu: Rcu::new(lcores.len()),
            counters: (0..lcores.len()).map(|_| CoreCounters::default()).collect(),
            lcores,
            stop: AtomicBool::new(false),
            idle_sleep_us,
        })
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

fn poll(shared: &Shared, me: usize) {
    let counters = &shared.counters[me];
    let mut tx = TxBuffers::new(me as u16);
    let mut reader = shared.rcu.reader(me);
    let mut pkts: [*mut rte_mbuf; BURST] = [std::ptr::null_mut(); BURST];
    let mut idle_rounds = 0u32;
    while !shared.stop.load(Relaxed) {
        reader.refresh();
        let snap = reader.snapshot();
        // SAFETY: reads the TSC; no preconditions.
        let t0 = unsafe { dpdk_sys::vs_rdtsc() };
        let mut got = 0u64;
        for rxq in &snap.rx[me] {
            // SAFETY: the snapshot lists only started ports and queues assigned to this
            // core alone; `pkts` has room for BURST pointers.
            let n = unsafe { dpdk_sys::vs_eth_rx_burst(rxq.port, rxq.queue, pkts.as_mut_ptr(), BURST as u16) } as usize;
            if n == 0 {
                continue;
            }
            got += n as u64;
            let pc = &counters.ports[rxq.port as usize];
            let mut bytes = 0u64;
            for &m in &pkts[..n] {
                // SAFETY: rx_burst returned n valid mbufs, now owned by this core.
                bytes += unsafe { (*m).pkt_len } as u64;
            }
            pc.rx_packets.add(n as u64);
            pc.rx_bytes.add(bytes);
            match snap.ports[rxq.port as usize].xconnect {
                Some(peer) if snap.ports[peer as usize].active => tx.push(peer, &pkts[..n], counters),
                _ => {
                    // SAFETY: the n mbufs are ours; nothing else references them.
                    unsafe { dpdk_sys::rte_pktmbuf_free_bulk(pkts.as_mut_ptr(), n as u32) };
                    pc.drop(DropReason::NoXconnect, n as u64);
                }
            }
        }
        tx.flush_all(counters);
        // SAFETY: reads the TSC.
        let t1 = unsafe { dpdk_sys::vs_rdtsc() };
        counters.rounds.add(1);
        if got > 0 {
            counters.busy_cycles.add(t1.wrapping_sub(t0));
            counters.packets.add(got);
            idle_rounds = 0;
        } else {
            counters.idle_cycles.add(t1.wrapping_sub(t0));
            idle_rounds = idle_rounds.saturating_add(1);
        }
        reader.quiescent();
        if shared.idle_sleep_us > 0 && idle_rounds >= IDLE_ROUNDS {
            // Only an idle core sleeps; a busy one never makes a syscall.
            std::thread::sleep(std::time::Duration::from_micros(shared.idle_sleep_us as u64));
        }
    }
    tx.flush_all(counters);
}
