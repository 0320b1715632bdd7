//! What doctor reads of the host: /sys, /proc and /dev, under a root directory that
//! is `/` except in tests.
use std::{
    fs,
    path::{Path, PathBuf},
};

pub struct Host {
    root: PathBuf,
}

/// Hugepages of one size on one NUMA node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hugepages {
    pub size_kb: u64,
    pub total: u64,
    pub free: u64,
}

/// A PCI function as sysfs shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pci {
    /// The kernel driver bound to it, if any.
    pub driver: Option<String>,
    /// Its NUMA node; None where the platform does not say (-1).
    pub node: Option<u32>,
}

impl Default for Host {
    fn default() -> Host {
        Host { root: PathBuf::from("/") }
    }
}

impl Host {
    pub fn at(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    pub fn read(&self, p: &str) -> Option<String> {
        fs::read_to_string(self.path(p)).ok().map(|s| s.trim().to_string())
    }

    pub fn exists(&self, p: &str) -> bool {
        self.path(p).exists()
    }

    fn entries(&self, p: &str) -> Vec<String> {
        let Ok(dir) = fs::read_dir(self.path(p)) else { return Vec::new() };
        let mut names: Vec<String> = dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        names
    }

    pub fn online_cpus(&self) -> Vec<u32> {
        self.read("/sys/devices/system/cpu/online").map(|s| cpu_list(&s)).unwrap_or_default()
    }

    /// CPUs the scheduler leaves alone: isolcpus= (as the kernel took it).
    pub fn isolated(&self) -> Vec<u32> {
        self.read("/sys/devices/system/cpu/isolated").map(|s| cpu_list(&s)).unwrap_or_default()
    }

    pub fn nohz_full(&self) -> Vec<u32> {
        self.read("/sys/devices/system/cpu/nohz_full").map(|s| cpu_list(&s)).unwrap_or_default()
    }

    /// The value of `name=` on the kernel command line.
    pub fn cmdline(&self, name: &str) -> Option<String> {
        let line = self.read("/proc/cmdline")?;
        line.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('=').map(String::from))
    }

    /// The CPUs sharing `cpu`'s physical core, itself included.
    pub fn siblings(&self, cpu: u32) -> Vec<u32> {
        self.read(&format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"))
            .map(|s| cpu_list(&s))
            .unwrap_or_else(|| vec![cpu])
    }

    /// NUMA nodes; one (0) on a kernel without NUMA.
    pub fn nodes(&self) -> Vec<u32> {
        let nodes: Vec<u32> = self
            .entries("/sys/devices/system/node")
            .iter()
            .filter_map(|n| n.strip_prefix("node")?.parse().ok())
            .collect();
        if nodes.is_empty() {
            vec![0]
        } else {
            nodes
        }
    }

    pub fn cpu_node(&self, cpu: u32) -> Option<u32> {
        let nodes = self.nodes();
        if nodes.len() == 1 {
            return nodes.first().copied();
        }
        nodes.into_iter().find(|n| {
            self.read(&format!("/sys/devices/system/node/node{n}/cpulist")).is_some_and(|l| cpu_list(&l).contains(&cpu))
        })
    }

    /// Hugepages of every size on `node`.
    pub fn hugepages(&self, node: u32) -> Vec<Hugepages> {
        let per_node = format!("/sys/devices/system/node/node{node}/hugepages");
        let dir = if self.exists(&per_node) { per_node } else { "/sys/kernel/mm/hugepages".to_string() };
        self.entries(&dir)
            .iter()
            .filter_map(|e| {
                let size_kb = e.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
                let num = |f: &str| self.read(&format!("{dir}/{e}/{f}")).and_then(|v| v.parse().ok());
                Some(Hugepages { size_kb, total: num("nr_hugepages")?, free: num("free_hugepages")? })
            })
            .collect()
    }

    /// Mount points of hugetlbfs.
    pub fn hugetlbfs_mounts(&self) -> Vec<String> {
        let mounts = self.read("/proc/mounts").unwrap_or_default();
        mounts
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"hugetlbfs")).then(|| f[1].to_string())
            })
            .collect()
    }

    pub fn pci(&self, addr: &str) -> Option<Pci> {
        let dev = format!("/sys/bus/pci/devices/{addr}");
        if !self.exists(&dev) {
            return None;
        }
        let driver = fs::read_link(self.path(&format!("{dev}/driver")))
            .ok()
            .and_then(|l| l.file_name()?.to_str().map(String::from));
        let node = self
            .read(&format!("{dev}/numa_node"))
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|n| u32::try_from(n).ok());
        Some(Pci { driver, node })
    }

    pub fn iommu_groups(&self) -> usize {
        self.entries("/sys/kernel/iommu_groups").len()
    }

    pub fn vfio_noiommu(&self) -> bool {
        self.read("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode").is_some_and(|v| v == "Y" || v == "1")
    }

    /// A network interface's index and that of its link (a veth's peer): differ for
    /// an interface with a peer.
    pub fn iface(&self, name: &str) -> Option<(u32, u32)> {
        let num = |f: &str| self.read(&format!("/sys/class/net/{name}/{f}"))?.parse().ok();
        Some((num("ifindex")?, num("iflink")?))
    }

    /// The running kernel's version, as (major, minor).
    pub fn kernel(&self) -> Option<(u32, u32)> {
        let r = self.read("/proc/sys/kernel/osrelease")?;
        let mut it = r.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
        Some((it.next()?, it.next()?))
    }

    pub fn metadata(&self, p: &Path) -> Option<fs::Metadata> {
        fs::metadata(self.path(&p.to_string_lossy())).ok()
    }
}

/// "0-3,5,7-8" as the CPUs it names.
pub fn cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        // isolcpus= may carry flags first (isolcpus=domain,managed_irq,2-3).
        let range = part.split_once('-').map_or((part, part), |(a, b)| (a, b));
        if let (Ok(a), Ok(b)) = (range.0.parse::<u32>(), range.1.parse::<u32>()) {
            if b >= a && b - a < 4096 {
                out.extend(a..=b);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_as_the_kernel_writes_them() {
        assert_eq!(cpu_list("0-3,5,7-8\n"), vec![0, 1, 2, 3, 5, 7, 8]);
        assert_eq!(cpu_list(""), Vec::<u32>::new());
        assert_eq!(cpu_list("managed_irq,domain,2-3"), vec![2, 3]);
        assert_eq!(cpu_list("3-1"), Vec::<u32>::new());
    }
}
