//! What a port runs on: a DPDK ethdev, or a kernel interface reached through our own
//! backend. The rest of the switch sees a port id either way.
use dataplane::{
    kernel::KernelPort,
    nic::NicOffloads,
    port::{EthPort, HwStats, Link, PortInfo},
    vhost::VhostOffloads,
};
use std::sync::Arc;

pub enum Device {
    Eth(EthPort),
    Kernel(Arc<KernelPort>),
}

impl Device {
    pub fn id(&self) -> u16 {
        match self {
            Device::Eth(e) => e.id,
            Device::Kernel(k) => k.id,
        }
    }

    pub fn info(&self) -> PortInfo {
        match self {
            Device::Eth(e) => e.info(),
            Device::Kernel(k) => PortInfo {
                driver: format!("kernel/{}", k.backend.name()),
                device: k.iface.clone(),
                mac: k.mac,
                max_rx_queues: k.queues(),
                max_tx_queues: u16::MAX,
                mtu: k.mtu(),
            },
        }
    }

    pub fn link(&self) -> Link {
        match self {
            Device::Eth(e) => e.link(),
            // A kernel interface has no speed of its own to report.
            Device::Kernel(k) => {
                let up = k.link_up();
                Link { up: up.unwrap_or(true), known: up.is_some(), speed_mbps: 0, full_duplex: true }
            }
        }
    }

    /// Takes the link down (or up) for the far end to see; false where the device
    /// cannot (its peer keeps seeing the link up, and only the switch ignores it).
    pub fn set_link(&self, up: bool) -> Result<bool, String> {
        match self {
            Device::Eth(e) => e.set_link(up).map_err(|e| e.to_string()),
            Device::Kernel(k) => k.set_link(up).map(|_| true).map_err(|e| format!("interface {}: {e}", k.iface)),
        }
    }

    /// The driver's own counters; a kernel interface's are the kernel's (ip -s link).
    pub fn hw_stats(&self) -> HwStats {
        match self {
            Device::Eth(e) => e.hw_stats(),
            Device::Kernel(_) => HwStats::default(),
        }
    }

    /// The kernel backend and the offloads frames keep across it.
    pub fn kernel(&self) -> Option<&Arc<KernelPort>> {
        match self {
            Device::Kernel(k) => Some(k),
            Device::Eth(_) => None,
        }
    }

    /// A vhost-user port's guest offloads.
    pub fn vhost(&self) -> Option<&Arc<VhostOffloads>> {
        match self {
            Device::Eth(e) => e.vhost(),
            Device::Kernel(_) => None,
        }
    }

    /// A NIC's own offloads.
    pub fn nic(&self) -> Option<NicOffloads> {
        match self {
            Device::Eth(e) => e.nic(),
            Device::Kernel(_) => None,
        }
    }
}
