//! Ports: DPDK devices attached from devargs, configured, started, and placed on PMD
//! cores; their views and counters. Every other feature sees a port as a `PortRef`.
pub mod api;
pub mod cli;
pub mod device;
pub mod validate;

use api::{PortRole, PortSpec, PortStatsView, PortView, RxQueueView};
use dataplane::{
    kernel::{KernelConf, KernelPort},
    mempool::PktPool,
    pmd::Shared,
    port::{EthPort, PortConf, PortInfo},
    snapshot::{Role, RxQueue, Snapshot},
    stats::PortTotals,
    MAX_PORTS,
};
use device::Device;
use pipelines::{wire::Mac, DropReason, PortId};
use std::sync::Arc;

/// Descriptors per rx and tx queue.
pub(crate) const RX_DESC: u16 = 1024;
pub(crate) const TX_DESC: u16 = 1024;

/// What the other features need to know about a port.
#[derive(Debug, Clone)]
pub struct PortRef {
    pub name: String,
    /// None while the port is not running (failed at restore).
    pub id: Option<PortId>,
    pub role: Option<PortRole>,
    pub vni: Option<u32>,
    pub mtu: u16,
    pub mac: Mac,
    /// How many PMD cores poll its rx queues.
    pub rx_cores: u64,
}

impl PortRef {
    /// A port that exists only as a spec (not running yet).
    pub fn of_spec(p: &PortSpec) -> PortRef {
        PortRef {
            name: p.name.clone(),
            id: None,
            role: p.role,
            vni: p.vni,
            mtu: p.mtu.unwrap_or(1500),
            mac: Mac::default(),
            rx_cores: 1,
        }
    }
}

/// A running port for unit tests and fuzz targets: MTU 1500, MAC 02:00:00:00:00:a0 + id.
pub(crate) fn port_ref(name: &str, id: u16, role: PortRole, vni: Option<u32>) -> PortRef {
    PortRef {
        name: name.into(),
        id: Some(id),
        role: Some(role),
        vni,
        mtu: 1500,
        mac: Mac([2, 0, 0, 0, 0, 0xa0 + id as u8]),
        rx_cores: 1,
    }
}

/// A port the switch made real.
pub struct Running {
    pub dev: Device,
    pub info: PortInfo,
    /// (rx queue, core index).
    pub rxq: Vec<(u16, usize)>,
    /// Counters of the port id when this port took it: a reused id starts at zero.
    baseline: PortTotals,
}

/// A port of the desired state: running, or failed (at restore) with the reason.
pub struct Port {
    pub spec: PortSpec,
    pub run: Result<Running, String>,
}

/// Every port, in the order added.
pub struct Ports {
    pub list: Vec<Port>,
    workers: Vec<u32>,
    pool: Arc<PktPool>,
    shared: Arc<Shared>,
}

impl Ports {
    pub fn new(workers: Vec<u32>, pool: Arc<PktPool>, shared: Arc<Shared>) -> Ports {
        Ports { list: Vec::new(), workers, pool, shared }
    }

    pub fn find(&self, name: &str) -> Option<&Port> {
        self.list.iter().find(|p| p.spec.name == name)
    }

    pub fn must_find(&self, field: &str, name: &str) -> Result<&Port, String> {
        self.position(field, name).map(|i| &self.list[i])
    }

    /// Where the port named `name` is in `list`; `must_find`'s error if nowhere.
    pub fn position(&self, field: &str, name: &str) -> Result<usize, String> {
        let i = self.list.iter().position(|p| p.spec.name == name);
        i.ok_or_else(|| format!("{field}: no port named {name:?} (vswitchctl port list shows the ports)"))
    }

    /// The ethdev id of a running port.
    pub fn running_id(&self, field: &str, name: &str) -> Result<PortId, String> {
        match &self.must_find(field, name)?.run {
            Ok(r) => Ok(r.dev.id()),
            Err(e) => Err(format!("{field}: {name:?} is not running: {e}")),
        }
    }

    /// The name of the running port with this id.
    pub fn name_of(&self, id: PortId) -> String {
        self.list
            .iter()
            .find(|p| p.run.as_ref().is_ok_and(|r| r.dev.id() == id))
            .map(|p| p.spec.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    pub fn specs(&self) -> Vec<PortSpec> {
        self.list.iter().map(|p| p.spec.clone()).collect()
    }

    /// How every other feature sees the ports.
    pub fn refs(&self) -> Vec<PortRef> {
        self.list
            .iter()
            .map(|p| {
                let run = p.run.as_ref().ok();
                PortRef {
                    name: p.spec.name.clone(),
                    id: run.map(|r| r.dev.id()),
                    role: p.spec.role,
                    vni: p.spec.vni,
                    mtu: run.map(|r| r.info.mtu).unwrap_or(1500),
                    mac: run.map(|r| Mac(r.info.mac)).unwrap_or_default(),
                    rx_cores: run.map_or(1, |r| {
                        r.rxq.iter().map(|&(_, c)| c).collect::<std::collections::BTreeSet<_>>().len() as u64
                    }),
                }
            })
            .collect()
    }

    /// The snapshot's port slots and each core's rx queues.
    pub fn compile(&self, snap: &mut Snapshot) {
        for p in &self.list {
            if let Ok(r) = &p.run {
                let slot = &mut snap.ports[r.dev.id() as usize];
                // (Down, its device runs on: its rx ring fills and the device drops,
                // counted as rx_missed.)
                let up = p.spec.admin.is_up();
                slot.active = up;
                slot.down = !up;
                slot.role = match (p.spec.role, p.spec.vni) {
                    (Some(PortRole::Vm), Some(vni)) => Role::Vm { vni },
                    (Some(PortRole::Uplink), _) => Role::Uplink,
                    _ => Role::None,
                };
                for &(queue, core) in r.rxq.iter().filter(|_| up) {
                    snap.rx[core].push(RxQueue { port: r.dev.id(), queue });
                }
                snap.kernel[r.dev.id() as usize] = r.dev.kernel().cloned();
                snap.vhost[r.dev.id() as usize] = r.dev.vhost().cloned();
                snap.nic[r.dev.id() as usize] = r.dev.nic();
            }
        }
    }

    /// Attaches, configures and starts the device, and picks cores for its rx queues;
    /// a port that is administratively down has its link taken down for the far end.
    /// Publishes nothing.
    pub fn bring_up(&self, spec: &PortSpec) -> Result<Running, String> {
        let run = match KernelConf::parse(&spec.devargs) {
            Some(conf) => self.bring_up_kernel(spec, &conf?)?,
            None => self.bring_up_eth(spec)?,
        };
        if !spec.admin.is_up() {
            signal_admin(&spec.name, &run.dev, spec.admin);
        }
        Ok(run)
    }

    fn bring_up_eth(&self, spec: &PortSpec) -> Result<Running, String> {
        let queues = spec.queues.unwrap_or(1);
        let mut eth = EthPort::attach(&dataplane::vhost::devargs(&spec.devargs)).map_err(|e| e.to_string())?;
        if self.kernel_ids().contains(&eth.id) {
            // `eth` drops here, which detaches the device.
            return Err(format!(
                "devargs: DPDK gave this device port id {}, which a kernel port holds: the switch has room for {MAX_PORTS} ports in all; delete one first",
                eth.id
            ));
        }
        let conf = PortConf {
            rx_queues: queues,
            tx_queues: self.workers.len() as u16,
            rx_desc: RX_DESC,
            tx_desc: TX_DESC,
            mtu: spec.mtu,
            mbuf_data_room: dpdk_sys::RTE_MBUF_DEFAULT_DATAROOM,
        };
        // On failure `eth` drops here, which stops, closes and detaches the device.
        eth.configure_and_start(&self.pool, conf).map_err(|e| e.to_string())?;
        let info = eth.info();
        let rxq = (0..queues).map(|q| (q, self.pick_core(spec, q))).collect();
        let baseline = self.totals(eth.id);
        Ok(Running { dev: Device::Eth(eth), info, rxq, baseline })
    }

    /// Ids of the running kernel ports.
    fn kernel_ids(&self) -> Vec<u16> {
        self.list
            .iter()
            .filter_map(|p| p.run.as_ref().ok())
            .filter(|r| r.dev.kernel().is_some())
            .map(|r| r.dev.id())
            .collect()
    }

    /// A kernel port takes the highest port id that no port and no ethdev holds (DPDK
    /// hands ethdevs the lowest free ones).
    fn bring_up_kernel(&self, spec: &PortSpec, conf: &KernelConf) -> Result<Running, String> {
        let used: Vec<u16> = self.list.iter().filter_map(|p| p.run.as_ref().ok()).map(|r| r.dev.id()).collect();
        let id = (0..MAX_PORTS as u16)
            .rev()
            .find(|id| !used.contains(id) && !dataplane::port::is_ethdev(*id))
            .ok_or_else(|| {
                format!("devargs: the switch has room for {MAX_PORTS} ports and they are all taken; delete one first")
            })?;
        let queues = conf.queues.or(spec.queues).unwrap_or(1);
        let k = KernelPort::open(id, conf, queues, spec.mtu, self.pool.clone()).map_err(|e| e.to_string())?;
        tracing::info!(
            "port {}: kernel interface {} over {} (offloads: {})",
            spec.name,
            k.iface,
            k.backend.name(),
            if k.offloads { "csum, tso4, tso6" } else { "none" }
        );
        let dev = Device::Kernel(Arc::new(k));
        let info = dev.info();
        let rxq = (0..queues).map(|q| (q, self.pick_core(spec, q))).collect();
        let baseline = self.totals(id);
        Ok(Running { dev, info, rxq, baseline })
    }

    fn pick_core(&self, spec: &PortSpec, queue: u16) -> usize {
        if let Some(cores) = &spec.cores {
            let lcore = cores[queue as usize % cores.len()];
            return self.workers.iter().position(|&w| w == lcore).unwrap_or(0);
        }
        // Least loaded by rx queue count; ties to the lowest index.
        let mut load = vec![0usize; self.workers.len()];
        for p in &self.list {
            if let Ok(r) = &p.run {
                for &(_, c) in &r.rxq {
                    load[c] += 1;
                }
            }
        }
        (0..load.len()).min_by_key(|&c| (load[c], c)).unwrap_or(0)
    }

    /// Current totals of a port id, summed over cores.
    pub fn totals(&self, id: u16) -> PortTotals {
        let mut t = PortTotals::default();
        for c in self.shared.counters.iter() {
            t.add(&c.ports[id as usize]);
        }
        t
    }

    pub fn view(&self, p: &Port, xconnect: Option<String>) -> PortView {
        let mut v = PortView {
            name: p.spec.name.clone(),
            devargs: p.spec.devargs.clone(),
            state: "error".into(),
            admin: p.spec.admin,
            error: None,
            port_id: None,
            driver: None,
            mac: None,
            mtu: None,
            link_speed_mbps: None,
            rx_queues: Vec::new(),
            xconnect,
            role: p.spec.role,
            vni: p.spec.vni,
            backend: None,
            offloads: None,
        };
        match &p.run {
            Ok(r) => {
                let link = r.dev.link();
                v.state = match (link.known, link.up) {
                    (false, _) => "unknown",
                    (true, true) => "up",
                    (true, false) => "down",
                }
                .into();
                v.port_id = Some(r.dev.id());
                v.driver = Some(r.info.driver.clone());
                v.mac = Some(Mac(r.info.mac).to_string());
                v.mtu = Some(r.dev.info().mtu);
                if let Some(k) = r.dev.kernel() {
                    v.backend = Some(k.backend.name().into());
                    v.offloads = Some(k.offload_names().into_iter().map(String::from).collect());
                }
                if let Some(g) = r.dev.vhost() {
                    v.offloads = Some(g.names().into_iter().map(String::from).collect());
                }
                if let Some(n) = r.dev.nic() {
                    v.offloads = Some(n.names().into_iter().map(String::from).collect());
                }
                v.link_speed_mbps = Some(link.speed_mbps);
                v.rx_queues = r.rxq.iter().map(|&(queue, c)| RxQueueView { queue, lcore: self.workers[c] }).collect();
            }
            Err(e) => v.error = Some(e.clone()),
        }
        v
    }

    pub fn stats(&self, name: Option<&str>) -> Result<Vec<PortStatsView>, String> {
        if let Some(n) = name {
            self.must_find("name", n)?;
        }
        Ok(self
            .list
            .iter()
            .filter(|p| name.is_none_or(|n| n == p.spec.name))
            .map(|p| {
                let mut v = PortStatsView { name: p.spec.name.clone(), ..Default::default() };
                if let Ok(r) = &p.run {
                    let t = self.totals(r.dev.id()).since(&r.baseline);
                    v.rx_packets = t.rx_packets;
                    v.rx_bytes = t.rx_bytes;
                    v.tx_packets = t.tx_packets;
                    v.tx_bytes = t.tx_bytes;
                    for reason in DropReason::ALL {
                        let n = t.drops[reason.index()];
                        if n > 0 {
                            v.drops.insert(reason.name().to_owned(), n);
                        }
                    }
                    let hw = r.dev.hw_stats();
                    v.rx_missed = hw.rx_missed;
                    v.rx_errors = hw.rx_errors;
                    v.tx_errors = hw.tx_errors;
                    v.rx_nombuf = hw.rx_nombuf;
                }
                v
            })
            .collect())
    }
}

/// Tells port `name`'s far end that it is out of service (or back in): what a pulled
/// cable would tell it. Where the device has no link to take down (vhost-user: the
/// guest's virtio link is QEMU's), the switch alone stops using the port, and says so.
pub fn signal_admin(name: &str, dev: &Device, admin: api::AdminState) {
    match dev.set_link(admin.is_up()) {
        Ok(true) => tracing::info!("port {name}: link {}", admin.name()),
        Ok(false) => tracing::info!(
            "port {name}: its device has no link to take {}: the far end is not told, the switch alone {}",
            admin.name(),
            if admin.is_up() { "uses it again" } else { "stops using it" }
        ),
        Err(e) => tracing::warn!("port {name}: taking its link {}: {e}", admin.name()),
    }
}
