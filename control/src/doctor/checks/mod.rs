//! The checks, one file per part of the host.
pub mod cpus;
pub mod daemon;
pub mod devices;
pub mod kernel;
pub mod memory;

/// What a port's devargs say it runs on.
#[derive(Debug, Clone, PartialEq)]
pub enum Backing<'a> {
    /// A PCI function, by its full address (0000:03:00.0).
    Pci(String),
    /// A DPDK virtual device (`net_vhost0,iface=...`): its driver and arguments.
    Vdev { driver: &'a str, args: Vec<(&'a str, &'a str)> },
    /// Our own kernel-interface port (`kernel:iface=...`).
    Kernel { iface: &'a str },
}

impl<'a> Backing<'a> {
    pub fn of(devargs: &'a str) -> Backing<'a> {
        if let Some(rest) = devargs.strip_prefix("kernel:") {
            let iface = rest.split(',').find_map(|a| a.strip_prefix("iface=")).unwrap_or("");
            return Backing::Kernel { iface };
        }
        let mut parts = devargs.split(',');
        let name = parts.next().unwrap_or("");
        if let Some(addr) = pci_address(name) {
            return Backing::Pci(addr);
        }
        // The vdev bus finds drivers by prefix: net_vhost0, net_tap_vm1.
        const DRIVERS: [&str; 9] = [
            "net_vhost",
            "net_virtio_user",
            "net_tap",
            "net_af_packet",
            "net_af_xdp",
            "net_pcap",
            "net_null",
            "net_ring",
            "net_memif",
        ];
        let driver = DRIVERS.into_iter().find(|d| name.starts_with(d)).unwrap_or(name);
        Backing::Vdev { driver, args: parts.filter_map(|a| a.split_once('=')).collect() }
    }

    pub fn arg(&self, name: &str) -> Option<&'a str> {
        match self {
            Backing::Vdev { args, .. } => args.iter().find(|(k, _)| *k == name).map(|(_, v)| *v),
            _ => None,
        }
    }
}

/// "0000:03:00.0" or "03:00.0", as the full address sysfs uses.
fn pci_address(s: &str) -> Option<String> {
    let full = if s.len() == 7 { format!("0000:{s}") } else { s.to_string() };
    let b = full.as_bytes();
    let hex = |r: std::ops::Range<usize>| b.get(r.clone()).is_some_and(|x| x.iter().all(u8::is_ascii_hexdigit));
    let shape = full.len() == 12 && b[4] == b':' && b[7] == b':' && b[10] == b'.';
    (shape && hex(0..4) && hex(5..7) && hex(8..10) && b[11].is_ascii_digit()).then(|| full.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devargs_name_what_a_port_runs_on() {
        assert_eq!(Backing::of("03:00.1"), Backing::Pci("0000:03:00.1".into()));
        assert_eq!(Backing::of("0000:AF:00.0,rxq_pkt_pad_en=1"), Backing::Pci("0000:af:00.0".into()));
        assert_eq!(Backing::of("kernel:iface=c1,queues=2"), Backing::Kernel { iface: "c1" });
        let v = Backing::of("net_vhost1,iface=/run/vm.sock,client=1");
        assert_eq!((v.arg("iface"), v.arg("client")), (Some("/run/vm.sock"), Some("1")));
        assert!(matches!(Backing::of("net_tap_vm1x,iface=t"), Backing::Vdev { driver: "net_tap", .. }));
        assert!(matches!(Backing::of("net_null0"), Backing::Vdev { driver: "net_null", .. }));
    }
}

/// The checks on a made-up host: a two-node machine with a NIC on node 1.
#[cfg(test)]
mod on_a_made_up_host {
    use crate::doctor::{examine, exit_status, host::Host, plan::Plan, Finding, Severity};
    use std::{fs, path::PathBuf};

    struct Root(PathBuf);

    impl Root {
        fn new(tag: &str) -> Root {
            let p = std::env::temp_dir().join(format!("vswitch-doctor-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            Root(p)
        }

        fn put(&self, path: &str, text: &str) -> &Root {
            let p = self.0.join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
            self
        }

        fn link(&self, path: &str, to: &str) -> &Root {
            let p = self.0.join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(to, p).unwrap();
            self
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn machine(tag: &str) -> Root {
        let r = Root::new(tag);
        r.put("/sys/devices/system/cpu/online", "0-3\n")
            .put("/sys/devices/system/cpu/isolated", "2-3\n")
            .put("/sys/devices/system/cpu/nohz_full", "2-3\n")
            .put("/proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 rcu_nocbs=2-3 quiet\n")
            .put("/sys/devices/system/cpu/cpu2/topology/thread_siblings_list", "0,2\n")
            .put("/sys/devices/system/node/node0/cpulist", "0-1\n")
            .put("/sys/devices/system/node/node1/cpulist", "2-3\n")
            .put("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages", "10\n")
            .put("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages", "10\n")
            .put("/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages", "1024\n")
            .put("/sys/devices/system/node/node1/hugepages/hugepages-2048kB/free_hugepages", "1024\n")
            .put("/proc/mounts", "sysfs /sys sysfs rw 0 0\nhugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n")
            .put("/sys/bus/pci/devices/0000:03:00.0/numa_node", "1\n")
            .put("/sys/bus/pci/drivers/ixgbe/.keep", "");
        r
    }

    fn plan(root: &Root, eal: &str, devargs: &str) -> Vec<Finding> {
        let host = Host::at(&root.0);
        let eal: Vec<String> = eal.split_whitespace().map(String::from).collect();
        let mut plan = Plan::configured("test".into(), &[], &eal, &host.online_cpus());
        plan.db = root.0.join("none.json");
        let port = crate::ports::api::PortSpec {
            name: "nic".into(),
            devargs: devargs.into(),
            queues: Some(2),
            cores: None,
            mtu: None,
            role: None,
            vni: None,
            admin: Default::default(),
        };
        examine(&plan.with_ports(&[port]), &host)
    }

    fn find<'a>(f: &'a [Finding], check: &str) -> Vec<&'a Finding> {
        f.iter().filter(|x| x.check == check).collect()
    }

    #[test]
    fn a_nic_the_kernel_holds_on_a_far_node_with_hugepages_on_the_near_one() {
        let r = machine("far");
        r.link("/sys/bus/pci/devices/0000:03:00.0/driver", "../../../bus/pci/drivers/ixgbe");
        let f = plan(&r, "-l 0,2-3", "0000:03:00.0");
        // Bound to the kernel's driver: the port cannot start.
        let pci = find(&f, "pci");
        assert_eq!((pci[0].severity, pci[0].what.contains("ixgbe")), (Severity::Error, true), "{f:#?}");
        assert!(pci[0].fix.as_deref().unwrap().contains("dpdk-devbind.py --bind=vfio-pci 0000:03:00.0"));
        // The buffers go on node 0 (the main lcore's), which has 20 MiB.
        let huge = find(&f, "hugepages");
        assert_eq!(huge[0].severity, Severity::Error, "{f:#?}");
        assert!(huge[0].fix.as_deref().unwrap().starts_with("echo 42 > /sys/devices/system/node/node0/"), "{f:#?}");
        // The NIC is on node 1 with its PMD lcores, but the buffers are not.
        assert_eq!(find(&f, "numa")[0].severity, Severity::Warn, "{f:#?}");
        // Isolated, but lcore 2 shares a core with the control lcore 0.
        assert_eq!(find(&f, "isolation")[0].severity, Severity::Ok);
        assert_eq!(find(&f, "hyperthreads")[0].severity, Severity::Warn);
        assert_eq!(exit_status(&f), 2);
    }

    #[test]
    fn a_nic_on_vfio_needs_the_iommu_and_near_lcores() {
        let r = machine("vfio");
        r.link("/sys/bus/pci/devices/0000:03:00.0/driver", "../../../bus/pci/drivers/vfio-pci");
        let f = plan(&r, "-l 2-3", "03:00.0");
        assert_eq!(find(&f, "pci")[0].severity, Severity::Ok, "{f:#?}");
        assert_eq!(find(&f, "iommu")[0].severity, Severity::Error, "no IOMMU groups: {f:#?}");
        r.put("/sys/kernel/iommu_groups/7/type", "DMA\n");
        let f = plan(&r, "-l 2-3", "03:00.0");
        assert_eq!(find(&f, "iommu")[0].severity, Severity::Ok);
        assert_eq!(find(&f, "numa")[0].severity, Severity::Ok, "{f:#?}");
        assert_eq!(find(&f, "hugepages")[0].severity, Severity::Ok, "node 1 has 2 GiB: {f:#?}");
        // Two rx queues of 1,024 descriptors and a tx ring per PMD lcore fit 32,768 buffers.
        assert_eq!(find(&f, "mbufs")[0].severity, Severity::Ok);
        assert_eq!(find(&f, "isolation")[0].severity, Severity::Ok, "{f:#?}");
        assert!(find(&f, "hyperthreads").is_empty(), "{f:#?}");
    }
}
