//! An ethdev port made from a DPDK devargs string at run time.
use crate::{log, mempool::PktPool, nic::NicOffloads, vhost::VhostOffloads, DpdkError, MAX_ETHDEVS};
use std::{
    ffi::{CStr, CString},
    sync::Arc,
};

/// How to set a port up. Tx queues are one per PMD core so no core ever locks a queue.
#[derive(Debug, Clone, Copy)]
pub struct PortConf {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub mtu: Option<u16>,
    /// Bytes of packet data one mbuf holds (after headroom).
    pub mbuf_data_room: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("devargs {0:?} is not valid: {1}")]
    BadDevargs(String, &'static str),
    #[error("device {device:?} is already attached{}", owner_hint(.port_id))]
    AlreadyAttached { device: String, port_id: Option<u16> },
    #[error("could not attach {devargs:?}{}{} (rte_dev_probe errno {})", said(.log), probe_hint(.log), .err.errno)]
    Probe { devargs: String, err: DpdkError, log: Vec<String> },
    #[error("{devargs:?} was attached but gave no ethdev port (is it a network device?)")]
    NoEthdev { devargs: String },
    #[error("{devargs:?} gave {count} ethdev ports; vswitch ports are one ethdev each")]
    ManyEthdevs { devargs: String, count: usize },
    #[error("{what}: {err}{}", said(.log))]
    Setup { what: String, err: DpdkError, log: Vec<String> },
    #[error(
        "{what}: the device cannot share the switch's memory with its vhost-user end (vhost-user takes at most 8 \
         memory files, and each hugepage is a file of its own): start vswitchd with --single-file-segments after \
         `--`, or without hugepages (--no-huge -m 512){}",
        said(.log)
    )]
    SharedMemory { what: String, log: Vec<String> },
    #[error("{driver} supports at most {max} {kind} queues, {wanted} were asked for{hint}")]
    TooManyQueues { driver: String, kind: &'static str, max: u16, wanted: u16, hint: &'static str },
}

fn said(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; DPDK said: {}", lines.join(" | "))
    }
}

fn probe_hint(lines: &[String]) -> &'static str {
    if lines.iter().any(|l| l.contains("failed to parse device")) {
        "; no DPDK driver or bus knows that device name: virtual devices are named like net_tap0, net_pcap0, \
         net_vhost0, net_null0, net_ring0, net_virtio_user0; PCI devices by address, like 0000:00:04.0"
    } else {
        ""
    }
}

fn owner_hint(port_id: &Option<u16>) -> String {
    match port_id {
        Some(id) => format!(" as ethdev port {id}; delete the port that uses it first, or give another device name"),
        None => String::new(),
    }
}

/// The device name part of a devargs string: `net_pcap0` of `net_pcap0,rx_pcap=x`.
pub fn device_name(devargs: &str) -> Result<&str, PortError> {
    if devargs.is_empty() {
        return Err(PortError::BadDevargs(devargs.into(), "it is empty"));
    }
    if devargs.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(PortError::BadDevargs(devargs.into(), "it contains whitespace or control characters"));
    }
    let name = devargs.split(',').next().unwrap_or("");
    if name.is_empty() {
        return Err(PortError::BadDevargs(
            devargs.into(),
            "it must start with a device name such as net_tap0 or 0000:00:04.0",
        ));
    }
    Ok(name)
}

/// An attached, owned ethdev port.
#[derive(Debug)]
pub struct EthPort {
    pub id: u16,
    pub devargs: String,
    device: *mut dpdk_sys::rte_device,
    started: bool,
    /// A vhost-user port's guest offloads, kept current by the PMD's link event.
    vhost: Option<Arc<VhostOffloads>>,
    /// A NIC's own offloads, fixed when it is configured.
    nic: Option<NicOffloads>,
}

// SAFETY: the rte_device pointer is only used by the control thread that owns the
// EthPort, to detach the device; DPDK's hotplug API is safe to call from it.
unsafe impl Send for EthPort {}

/// Static facts about a port.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub driver: String,
    pub device: String,
    pub mac: [u8; 6],
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub mtu: u16,
}

/// The driver's own counters (`rte_eth_stats`): what the NIC saw, including what
/// never reached a core.
#[derive(Debug, Clone, Copy, Default)]
pub struct HwStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Dropped by the device because its rx ring was full.
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Link {
    pub up: bool,
    /// The device really reports its link; false for drivers that call themselves up
    /// whatever happens (see `Device::link` in control).
    pub known: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

impl EthPort {
    /// Attaches the device `devargs` describes (`rte_dev_probe`) and returns its port.
    pub fn attach(devargs: &str) -> Result<EthPort, PortError> {
        let name = device_name(devargs)?;
        if let Some(id) = port_by_name(name) {
            return Err(PortError::AlreadyAttached { device: name.into(), port_id: Some(id) });
        }
        let c = CString::new(devargs).map_err(|_| PortError::BadDevargs(devargs.into(), "it contains a NUL byte"))?;
        // SAFETY: EAL is initialised; c is a valid C string. Probe runs on the control thread.
        let (ret, log) = log::capture(|| unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) });
        if ret == -libc::EEXIST {
            return Err(PortError::AlreadyAttached { device: name.into(), port_id: None });
        }
        if ret < 0 {
            return Err(PortError::Probe {
                devargs: devargs.into(),
                err: DpdkError::from_ret("rte_dev_probe", ret),
                log,
            });
        }
        let ids = ports_matching(&c);
        let device = ids.first().map(|&id| device_of(id)).unwrap_or(std::ptr::null_mut());
        let port = EthPort {
            id: ids.first().copied().unwrap_or(0),
            devargs: devargs.into(),
            device,
            started: false,
            vhost: None,
            nic: None,
        };
        match ids.len() {
            1 => Ok(port),
            0 => {
                detach_device(device, name);
                Err(PortError::NoEthdev { devargs: devargs.into() })
            }
            count => {
                for &id in &ids {
                    // SAFETY: id is a valid port of the device we just attached.
                    unsafe { dpdk_sys::rte_eth_dev_close(id) };
                }
                detach_device(device, name);
                Err(PortError::ManyEthdevs { devargs: devargs.into(), count })
            }
        }
    }

    pub fn info(&self) -> PortInfo {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        let mut mac = dpdk_sys::rte_ether_addr::default();
        let mut mtu = 0u16;
        // SAFETY: self.id is an attached port; the out-pointers are valid locals.
        unsafe {
            dpdk_sys::rte_eth_dev_info_get(self.id, &mut info);
            dpdk_sys::rte_eth_macaddr_get(self.id, &mut mac);
            dpdk_sys::rte_eth_dev_get_mtu(self.id, &mut mtu);
        }
        let cstr = |p: *const libc::c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: DPDK's names are NUL-terminated strings owned by the driver.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let mut name = [0 as libc::c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: the buffer is RTE_ETH_NAME_MAX_LEN bytes, as the call requires.
        unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(self.id, name.as_mut_ptr()) };
        PortInfo {
            driver: cstr(info.driver_name),
            device: cstr(name.as_ptr()),
            mac: mac.addr_bytes,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            mtu,
        }
    }

    /// Configures queues (rx from `pool`) and starts the port.
    pub fn configure_and_start(&mut self, pool: &PktPool, conf: PortConf) -> Result<(), PortError> {
        let info = self.info();
        if conf.rx_queues > info.max_rx_queues {
            return Err(PortError::TooManyQueues {
                driver: info.driver,
                kind: "rx",
                max: info.max_rx_queues,
                wanted: conf.rx_queues,
                hint: "; lower --queues",
            });
        }
        if conf.tx_queues > info.max_tx_queues {
            return Err(PortError::TooManyQueues {
                driver: info.driver,
                kind: "tx",
                max: info.max_tx_queues,
                wanted: conf.tx_queues,
                hint: " (one per PMD core); for net_vhost/net_virtio_user add queues=N to the devargs, or run fewer PMD lcores",
            });
        }
        let id = self.id;
        let setup = |what: &str, f: &mut dyn FnMut() -> i32| -> Result<(), PortError> {
            let (ret, log) = log::capture(f);
            // virtio-user logs this and carries on, with a device that moves nothing.
            if log.iter().any(|l| l.contains("Too many memory regions")) {
                return Err(PortError::SharedMemory { what: what.into(), log });
            }
            if ret < 0 {
                Err(PortError::Setup { what: what.into(), err: DpdkError::from_ret("ethdev", ret), log })
            } else {
                Ok(())
            }
        };
        let mut eth_conf = dpdk_sys::rte_eth_conf::default();
        // 0 keeps the driver's default (1500). ethdev checks the MTU against the
        // driver's largest frame at configure time.
        eth_conf.rxmode.mtu = conf.mtu.map(u32::from).unwrap_or(0);
        let mut dev_info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: id is an attached port; dev_info a valid out-pointer.
        unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut dev_info) };
        // A frame larger than one mbuf needs scatter on rx and chained mbufs on tx.
        let frame = conf.mtu.unwrap_or(1500) as u32 + 14 + 4 + 4;
        if frame > conf.mbuf_data_room {
            if dev_info.rx_offload_capa & dpdk_sys::RTE_ETH_RX_OFFLOAD_SCATTER != 0 {
                eth_conf.rxmode.offloads |= dpdk_sys::RTE_ETH_RX_OFFLOAD_SCATTER;
            }
            if dev_info.tx_offload_capa & dpdk_sys::RTE_ETH_TX_OFFLOAD_MULTI_SEGS != 0 {
                eth_conf.txmode.offloads |= dpdk_sys::RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
            }
        }
        let vhost = info.driver == "net_vhost";
        let max_segs = dev_info.tx_desc_lim.nb_seg_max;
        self.nic =
            NicOffloads::choose(&info.driver, dev_info.tx_offload_capa, dev_info.rx_offload_capa, max_segs).map(|c| {
                eth_conf.txmode.offloads |= c.tx_conf;
                eth_conf.rxmode.offloads |= c.rx_conf;
                c.offloads
            });
        if vhost {
            // The guest's partial checksums reach us as they are (else the PMD completes
            // them), and ours reach a guest that takes them (else the PMD completes them).
            let csum = dpdk_sys::RTE_ETH_RX_OFFLOAD_TCP_CKSUM | dpdk_sys::RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
            eth_conf.rxmode.offloads |= dev_info.rx_offload_capa & csum;
            let csum = dpdk_sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM
                | dpdk_sys::RTE_ETH_TX_OFFLOAD_UDP_CKSUM
                | dpdk_sys::RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
            eth_conf.txmode.offloads |= dev_info.tx_offload_capa & csum;
        }
        // SAFETY (all closures below): `id` is an attached, stopped port owned by this
        // control thread; pointers are to live locals or to the process-lifetime pool.
        setup("configuring the port", &mut || unsafe {
            dpdk_sys::rte_eth_dev_configure(id, conf.rx_queues, conf.tx_queues, &eth_conf)
        })?;
        let (mut nb_rx, mut nb_tx) = (conf.rx_desc, conf.tx_desc);
        setup("adjusting descriptor counts", &mut || unsafe {
            dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nb_rx, &mut nb_tx)
        })?;
        // SAFETY: reads the NUMA socket of an attached port.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) }.max(0) as u32;
        for q in 0..conf.rx_queues {
            setup(&format!("setting up rx queue {q}"), &mut || unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(id, q, nb_rx, socket, std::ptr::null(), pool.as_ptr())
            })?;
        }
        for q in 0..conf.tx_queues {
            setup(&format!("setting up tx queue {q}"), &mut || unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(id, q, nb_tx, socket, std::ptr::null())
            })?;
        }
        if vhost {
            let v = Arc::new(VhostOffloads::new(id));
            // SAFETY: the callback's argument lives as long as `self.vhost`, and Drop
            // unregisters it before the port closes.
            let ret = unsafe {
                dpdk_sys::rte_eth_dev_callback_register(
                    id,
                    dpdk_sys::RTE_ETH_EVENT_INTR_LSC,
                    Some(crate::vhost::on_link_event),
                    Arc::as_ptr(&v) as *mut libc::c_void,
                )
            };
            if ret < 0 {
                return Err(PortError::Setup {
                    what: "watching for the guest".into(),
                    err: DpdkError::from_ret("rte_eth_dev_callback_register", ret),
                    log: Vec::new(),
                });
            }
            self.vhost = Some(v);
        }
        setup("starting the port", &mut || unsafe { dpdk_sys::rte_eth_dev_start(id) })?;
        self.started = true;
        if let Some(v) = &self.vhost {
            // A guest that attached before the callback was in place.
            v.refresh();
        }
        // A switch port takes every destination MAC. Drivers without the notion
        // (vhost, pcap, ring) answer ENOTSUP, which is fine.
        // SAFETY: started port owned by this thread.
        unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        Ok(())
    }

    /// A vhost-user port's guest offloads.
    pub fn vhost(&self) -> Option<&Arc<VhostOffloads>> {
        self.vhost.as_ref()
    }

    /// A NIC's offloads, once the port is configured.
    pub fn nic(&self) -> Option<NicOffloads> {
        self.nic
    }

    pub fn link(&self) -> Link {
        let mut l = dpdk_sys::rte_eth_link::default();
        // SAFETY: attached port; l is a valid out-pointer.
        unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut l) };
        let known = reports_link(&self.devargs);
        Link { up: l.link_status() != 0, known, speed_mbps: l.link_speed, full_duplex: l.link_duplex() != 0 }
    }

    /// Takes the device's link down (or up) where its driver can (a NIC, DPDK's tap
    /// and af_packet): Ok(false) where it cannot (vhost-user, null, pcap), whose peer
    /// keeps seeing the link up.
    pub fn set_link(&self, up: bool) -> Result<bool, DpdkError> {
        // SAFETY: attached, started port.
        let rc = unsafe {
            if up {
                dpdk_sys::rte_eth_dev_set_link_up(self.id)
            } else {
                dpdk_sys::rte_eth_dev_set_link_down(self.id)
            }
        };
        match rc {
            0 => Ok(true),
            rc if rc == -libc::ENOTSUP => Ok(false),
            rc => {
                Err(DpdkError::from_ret(if up { "rte_eth_dev_set_link_up" } else { "rte_eth_dev_set_link_down" }, rc))
            }
        }
    }

    pub fn hw_stats(&self) -> HwStats {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: attached port; s is a valid out-pointer.
        unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        HwStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }
}

impl Drop for EthPort {
    /// Stops, closes and detaches. The caller must have made sure no PMD core polls or
    /// transmits on this port any more (a quiescent point after the snapshot that
    /// dropped it); `Switch` does, by construction.
    fn drop(&mut self) {
        let name = self.info().device;
        if let Some(v) = self.vhost.take() {
            let arg = Arc::as_ptr(&v) as *mut libc::c_void;
            loop {
                // SAFETY: the callback and argument registered in configure_and_start.
                let ret = unsafe {
                    dpdk_sys::rte_eth_dev_callback_unregister(
                        self.id,
                        dpdk_sys::RTE_ETH_EVENT_INTR_LSC,
                        Some(crate::vhost::on_link_event),
                        arg,
                    )
                };
                // EAGAIN: the callback is running right now on the vhost thread.
                if ret != -libc::EAGAIN {
                    break;
                }
                std::thread::yield_now();
            }
        }
        // SAFETY: the port is attached and, per the contract above, idle on every core.
        unsafe {
            if self.started {
                dpdk_sys::rte_eth_dev_stop(self.id);
            }
            dpdk_sys::rte_eth_dev_close(self.id);
        }
        detach_device(self.device, &name);
    }
}

fn detach_device(device: *mut dpdk_sys::rte_device, name: &str) {
    if device.is_null() {
        return;
    }
    // SAFETY: device came from rte_eth_dev_info of a port we attached; every ethdev
    // port of it is closed.
    let ret = unsafe { dpdk_sys::rte_dev_remove(device) };
    if ret < 0 {
        tracing::warn!("detaching {name}: {}", DpdkError::from_ret("rte_dev_remove", ret));
    }
}

fn device_of(id: u16) -> *mut dpdk_sys::rte_device {
    let mut info = dpdk_sys::rte_eth_dev_info::default();
    // SAFETY: id is a valid port; info is a valid out-pointer.
    unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
    info.device
}

/// The ethdev ports that `devargs` names, as testpmd's attach finds them.
fn ports_matching(devargs: &CStr) -> Vec<u16> {
    let mut ids = Vec::new();
    let mut iter = dpdk_sys::rte_dev_iterator::default();
    // SAFETY: iter is a zeroed iterator and devargs a valid C string; the iterator is
    // cleaned up when next returns RTE_MAX_ETHPORTS (or explicitly if init failed).
    unsafe {
        if dpdk_sys::rte_eth_iterator_init(&mut iter, devargs.as_ptr()) != 0 {
            return ids;
        }
        loop {
            let id = dpdk_sys::rte_eth_iterator_next(&mut iter);
            if id as usize >= MAX_ETHDEVS {
                break;
            }
            ids.push(id);
        }
    }
    ids
}

/// Whether DPDK has an ethdev at `id` (ours or not).
pub fn is_ethdev(id: u16) -> bool {
    // SAFETY: a lookup by id; any id is valid to ask about.
    unsafe { dpdk_sys::rte_eth_dev_is_valid_port(id) == 1 }
}

/// The ethdev port already registered under `name`, if any.
pub fn port_by_name(name: &str) -> Option<u16> {
    let c = CString::new(name).ok()?;
    let mut id = 0u16;
    // SAFETY: c is a valid C string, id a valid out-pointer.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    (ret == 0).then_some(id)
}

/// Whether the driver behind `devargs` really reports its link. net_null, net_ring
/// and net_pcap call themselves up from start to stop whatever is (or is not) behind
/// them; net_tap asks the kernel by name in this network namespace, so once its
/// interface is moved into a container's it reads "down" while traffic flows.
fn reports_link(devargs: &str) -> bool {
    let mut args = devargs.split(',');
    // DPDK's vdev bus finds the driver by prefix (net_tap0, net_tap_vm1, ...); eth_ are
    // the old aliases.
    let name = args.next().unwrap_or("");
    let driver = |d: &str| name.starts_with(&format!("net_{d}")) || name.starts_with(&format!("eth_{d}"));
    if ["null", "ring", "pcap"].into_iter().any(driver) {
        return false;
    }
    if driver("tap") {
        if let Some(iface) = args.find_map(|a| a.strip_prefix("iface=")) {
            return crate::kernel::sys::ifindex(iface).is_some();
        }
    }
    true
}
