//! The devices ports run on: PCI functions (driver, IOMMU, NUMA node), vhost-user
//! sockets, and kernel interfaces read raw by DPDK drivers.
use super::{cpus::list, Backing};
use crate::doctor::{
    host::Host,
    plan::{Plan, PlanPort},
    Finding, Severity,
};
use std::{
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::Path,
};

pub fn check(plan: &Plan, host: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut vfio = Vec::new();
    for p in &plan.ports {
        match Backing::of(&p.devargs) {
            Backing::Pci(addr) => pci(plan, host, p, &addr, &mut vfio, &mut out),
            b @ Backing::Vdev { driver: "net_vhost", .. } => vhost(plan, host, p, &b, &mut out),
            b @ Backing::Vdev { driver: "net_af_packet" | "net_pcap" | "net_af_xdp", .. } => {
                if let Some(iface) = b.arg("iface").or(b.arg("rx_iface")) {
                    raw_peer(host, p, iface, &mut out);
                }
            }
            _ => {}
        }
    }
    if !vfio.is_empty() {
        out.push(iommu(host, &vfio));
    }
    out
}

fn pci(plan: &Plan, host: &Host, p: &PlanPort, addr: &str, vfio: &mut Vec<String>, out: &mut Vec<Finding>) {
    let Some(dev) = host.pci(addr) else {
        out.push(
            Finding::bad(
                "pci",
                Severity::Error,
                format!("port {}: no PCI device {addr} on this host", p.name),
                "the port cannot start",
            )
            .fix("lspci -D lists the host's devices; correct the port's devargs"),
        );
        return;
    };
    let bind = format!("modprobe vfio-pci && dpdk-devbind.py --bind=vfio-pci {addr}");
    match dev.driver.as_deref() {
        Some("vfio-pci") => {
            vfio.push(addr.to_string());
            out.push(Finding::ok("pci", format!("port {}: {addr} is bound to vfio-pci", p.name)));
        }
        Some(d @ ("mlx5_core" | "mlx4_core" | "mana")) => out.push(Finding::ok(
            "pci",
            format!("port {}: {addr} stays with {d} (a bifurcated driver DPDK shares)", p.name),
        )),
        Some(d @ ("uio_pci_generic" | "igb_uio")) => out.push(
            Finding::bad(
                "pci",
                Severity::Warn,
                format!("port {}: {addr} is bound to {d}", p.name),
                "no IOMMU keeps the device's DMA inside the switch's memory, and it needs root",
            )
            .fix(bind),
        ),
        Some(d) => out.push(
            Finding::bad(
                "pci",
                Severity::Error,
                format!("port {}: {addr} is bound to the kernel's {d} driver", p.name),
                "DPDK cannot drive a device the kernel holds; the port fails to start",
            )
            .fix(format!("ip link set <its interface> down; {bind}")),
        ),
        None => out.push(
            Finding::bad(
                "pci",
                Severity::Error,
                format!("port {}: {addr} is bound to no driver", p.name),
                "DPDK reaches PCI devices through vfio-pci",
            )
            .fix(bind),
        ),
    }
    let Some(node) = dev.node else { return };
    let pollers = if p.polled_by.is_empty() { &plan.pmd_lcores } else { &p.polled_by };
    let far: Vec<u32> = pollers.iter().copied().filter(|&c| host.cpu_node(c).is_some_and(|n| n != node)).collect();
    if !far.is_empty() {
        out.push(
            Finding::bad(
                "numa",
                Severity::Warn,
                format!("port {} ({addr}) is on NUMA node {node}; lcores {} polling it are not", p.name, list(&far)),
                "every packet crosses the socket interconnect twice: up to half the rate",
            )
            .fix(format!("port add ... --cores with PMD lcores of node {node}")),
        );
    } else if host.cpu_node(plan.main_lcore).is_some_and(|n| n != node) {
        out.push(
            Finding::bad(
                "numa",
                Severity::Warn,
                format!(
                    "port {} ({addr}) is on NUMA node {node}; the packet buffers are on the main lcore's node",
                    p.name
                ),
                "the NIC writes every frame across the socket interconnect",
            )
            .fix(format!("EAL -l with a main lcore of node {node}")),
        );
    } else {
        out.push(Finding::ok("numa", format!("port {} ({addr}) and its lcores are on node {node}", p.name)));
    }
}

fn iommu(host: &Host, vfio: &[String]) -> Finding {
    if host.iommu_groups() > 0 {
        Finding::ok("iommu", format!("the IOMMU is on ({} groups)", host.iommu_groups()))
    } else if host.vfio_noiommu() {
        Finding::bad(
            "iommu",
            Severity::Warn,
            "vfio runs in no-IOMMU mode",
            "a device's DMA can reach any host memory; the kernel is tainted",
        )
        .fix("intel_iommu=on iommu=pt (AMD: amd_iommu=on) in GRUB_CMDLINE_LINUX, update-grub, reboot")
    } else {
        Finding::bad(
            "iommu",
            Severity::Error,
            format!("no IOMMU, and {} need one for vfio-pci", vfio.join(", ")),
            "vfio-pci cannot map the device's DMA: the ports fail to start",
        )
        .fix("intel_iommu=on iommu=pt (AMD: amd_iommu=on) in GRUB_CMDLINE_LINUX, update-grub, reboot; without an IOMMU, modprobe vfio enable_unsafe_noiommu_mode=1")
    }
}

fn vhost(plan: &Plan, host: &Host, p: &PlanPort, b: &Backing, out: &mut Vec<Finding>) {
    let Some(path) = b.arg("iface") else { return };
    let client = b.arg("client").is_some_and(|c| c == "1");
    let sock = Path::new(path);
    let dir = sock.parent().unwrap_or(Path::new("/"));
    let meta = host.metadata(sock);
    if client {
        if meta.is_none() {
            out.push(Finding::bad(
                "vhost",
                Severity::Info,
                format!("port {}: QEMU has not made {path} yet", p.name),
                "in client mode the switch connects to QEMU's socket; the port comes up once the guest starts",
            ));
        }
        return;
    }
    let Some(d) = host.metadata(dir) else {
        out.push(
            Finding::bad(
                "vhost",
                Severity::Error,
                format!("port {}: directory {} does not exist", p.name, dir.display()),
                "the switch cannot create the vhost-user socket there",
            )
            .fix(format!("mkdir -p {}", dir.display())),
        );
        return;
    };
    let mode = d.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        out.push(
            Finding::bad(
                "vhost",
                Severity::Warn,
                format!("port {}: {} is writable by everyone (mode {mode:o})", p.name, dir.display()),
                "any local user can replace the socket a guest connects to",
            )
            .fix(format!("chmod 755 {} (or 1777 with the sticky bit)", dir.display())),
        );
    }
    match meta {
        Some(m) if m.file_type().is_socket() => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o022 == 0 {
                out.push(
                    Finding::bad(
                        "vhost",
                        Severity::Info,
                        format!("port {}: only its owner may connect to {path} (mode {mode:o})", p.name),
                        "QEMU run by libvirt as libvirt-qemu gets \"Permission denied\" connecting",
                    )
                    .fix(format!("chgrp kvm {path} && chmod 660 {path} once the port is added, or run QEMU as root")),
                );
            } else {
                out.push(Finding::ok("vhost", format!("port {}: {path}, mode {mode:o}", p.name)));
            }
        }
        Some(_) => out.push(
            Finding::bad(
                "vhost",
                Severity::Error,
                format!("port {}: {path} exists and is not a socket", p.name),
                "the switch cannot listen there",
            )
            .fix(format!("rm {path}, or give the port another iface=")),
        ),
        None if plan.running => out.push(Finding::bad(
            "vhost",
            Severity::Warn,
            format!("port {}: no socket at {path}", p.name),
            "the running switch should be listening there: the port failed (vswitchctl port list shows why)",
        )),
        None => {}
    }
}

/// DPDK drivers that read a kernel interface raw take frames as the kernel hands
/// them: a veth's peer leaves checksums for the hardware it does not have.
fn raw_peer(host: &Host, p: &PlanPort, iface: &str, out: &mut Vec<Finding>) {
    match host.iface(iface) {
        None => out.push(
            Finding::bad(
                "interface",
                Severity::Error,
                format!("port {}: no interface {iface} in this network namespace", p.name),
                "the driver attaches only to an interface that exists",
            )
            .fix(format!("create {iface} first, or correct the port's devargs")),
        ),
        Some((index, link)) if index != link => out.push(
            Finding::bad(
                "offloads",
                Severity::Warn,
                format!("port {}: {iface} has a peer (a veth) whose frames leave with partial checksums", p.name),
                "the peer's checksum offload is on by default and this DPDK driver passes such frames on unfinished: receivers drop them",
            )
            .fix(format!("ethtool -K <peer of {iface}> tx off in the peer's namespace, or use kernel:iface={iface}, which carries the offload state")),
        ),
        Some(_) => out.push(Finding::ok("interface", format!("port {}: {iface}", p.name))),
    }
}
