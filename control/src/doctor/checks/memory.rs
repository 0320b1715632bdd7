//! Hugepages and packet buffers: enough of each, where the switch allocates them.
use super::Backing;
use crate::{
    doctor::{host::Host, plan::Plan, Finding, Severity},
    ports::{RX_DESC, TX_DESC},
};

/// Bytes of hugepage memory one mbuf costs in the packet mempool (2,176 bytes of data
/// room, the mbuf header and the mempool's own header), and what EAL takes besides:
/// measured on DPDK 22.11, 78 MiB at 32,768 mbufs and 22 MiB at 8,192.
const BYTES_PER_MBUF: u64 = 2432;
const EAL_BASE: u64 = 8 << 20;
/// Buffers each lcore's mempool cache may hold (as vswitchd creates the pool).
const CACHE: u64 = 256;
/// Data bytes one mbuf carries (RTE_MBUF_DEFAULT_DATAROOM).
const DATAROOM: u64 = 2048;
const MIB: u64 = 1 << 20;

pub fn check(plan: &Plan, host: &Host) -> Vec<Finding> {
    let mut out = mbufs(plan);
    out.extend(hugepages(plan, host));
    out
}

/// Buffers the rings can hold at once: each rx descriptor keeps one waiting for a
/// frame, and a NIC's tx ring keeps those it sent until it frees them.
fn mbufs(plan: &Plan) -> Vec<Finding> {
    let cores = plan.pmd_lcores.len() as u64;
    let (mut rx, mut tx) = (0u64, 0u64);
    for p in &plan.ports {
        match Backing::of(&p.devargs) {
            Backing::Pci(_) => {
                rx += p.queues as u64 * RX_DESC as u64;
                tx += cores * TX_DESC as u64;
            }
            Backing::Vdev { driver: "net_tap" | "net_virtio_user" | "net_memif", .. } => {
                rx += p.queues as u64 * RX_DESC as u64
            }
            _ => {}
        }
    }
    let cache = (cores + 1) * CACHE;
    let have = plan.mbufs as u64;
    let mut out = Vec::new();
    let need = format!(
        "rx rings {rx}, tx rings {tx}, per-lcore caches {cache} of --mbufs {have} ({} ports on {cores} PMD lcores)",
        plan.ports.len()
    );
    if have < rx + cache {
        out.push(
            Finding::bad(
                "mbufs",
                Severity::Error,
                format!("the rx rings alone hold more buffers than the pool has: {need}"),
                "ports fail to start or drop every frame as rx_nombuf",
            )
            .fix(format!("vswitchd --mbufs {}", round_up(2 * (rx + tx + cache)))),
        );
    } else if have < rx + tx + cache {
        out.push(
            Finding::bad(
                "mbufs",
                Severity::Warn,
                format!("full rings would hold every buffer: {need}"),
                "under load the tx rings starve rx: rx_nombuf drops while the links are not full",
            )
            .fix(format!("vswitchd --mbufs {}", round_up(2 * (rx + tx + cache)))),
        );
    } else {
        out.push(Finding::ok("mbufs", need));
    }
    for p in plan.ports.iter().filter(|p| p.mtu.is_some_and(|m| m as u64 + 18 > DATAROOM)) {
        let per = (p.mtu.unwrap_or(0) as u64 + 18).div_ceil(DATAROOM);
        out.push(Finding::bad(
            "jumbo",
            Severity::Info,
            format!("port {} has MTU {}: a full-size frame takes {per} buffers", p.name, p.mtu.unwrap_or(0)),
            "buffers hold 2,048 bytes; jumbo frames are chained, so the pool runs out that much sooner",
        ));
    }
    out
}

fn round_up(n: u64) -> u64 {
    n.next_power_of_two()
}

fn hugepages(plan: &Plan, host: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    if plan.no_huge {
        out.push(
            Finding::bad(
                "hugepages",
                Severity::Info,
                "EAL runs without hugepages (--no-huge)",
                "fine for tests; in 4 KiB pages the buffers cost a TLB miss at nearly every packet, and vhost-user needs shared hugepage memory",
            )
            .fix("reserve hugepages (below) and drop --no-huge"),
        );
        return out;
    }
    let mounts = host.hugetlbfs_mounts();
    if mounts.is_empty() {
        out.push(
            Finding::bad("hugetlbfs", Severity::Error, "no hugetlbfs is mounted", "EAL finds no hugepages and stops")
                .fix("mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages"),
        );
    } else {
        out.push(Finding::ok("hugetlbfs", format!("mounted on {}", mounts.join(", "))));
    }
    // The packet mempool is allocated on the main lcore's node.
    let node = host.cpu_node(plan.main_lcore).unwrap_or(0);
    let pages = host.hugepages(node);
    let bytes =
        |f: fn(&crate::doctor::host::Hugepages) -> u64| pages.iter().map(|p| f(p) * p.size_kb * 1024).sum::<u64>();
    let (total, free) = (bytes(|p| p.total), bytes(|p| p.free));
    let estimate = EAL_BASE + plan.mbufs as u64 * BYTES_PER_MBUF;
    let need = plan.memory_mb.map_or(estimate, |m| (m * MIB).max(estimate));
    let summary = format!("node {node}: {} MiB of hugepages, {} MiB free", total / MIB, free / MIB);
    if plan.running {
        out.push(Finding::ok("hugepages", format!("{summary}; the running switch holds its own")));
    } else if free < need {
        let page = 2048 * 1024;
        let two_mb = pages.iter().find(|p| p.size_kb == 2048).map_or(0, |p| p.total);
        let more = (need - free).div_ceil(page);
        out.push(
            Finding::bad(
                "hugepages",
                Severity::Error,
                format!("{summary}; the switch needs about {} MiB there ({} mbufs)", need.div_ceil(MIB), plan.mbufs),
                "EAL cannot create the packet mempool and vswitchd stops at start",
            )
            .fix(format!(
                "echo {} > /sys/devices/system/node/node{node}/hugepages/hugepages-2048kB/nr_hugepages (to keep it: vm.nr_hugepages in /etc/sysctl.d/), or lower --mbufs",
                two_mb + more
            )),
        );
    } else {
        out.push(Finding::ok("hugepages", format!("{summary}; the switch needs about {} MiB", need.div_ceil(MIB))));
    }
    out
}
