//! Kernel features the configured ports need.
use super::Backing;
use crate::doctor::{host::Host, plan::Plan, Finding, Severity};

pub fn check(plan: &Plan, host: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    let backings: Vec<(String, Backing)> =
        plan.ports.iter().map(|p| (p.name.clone(), Backing::of(&p.devargs))).collect();
    let users = |pred: &dyn Fn(&Backing) -> bool| -> Vec<&str> {
        backings.iter().filter(|(_, b)| pred(b)).map(|(n, _)| n.as_str()).collect()
    };
    let need = |out: &mut Vec<Finding>, ports: Vec<&str>, dev: &str, what: &str, module: &str| {
        if ports.is_empty() {
            return;
        }
        if host.exists(dev) {
            out.push(Finding::ok("kernel", format!("{dev} for {what} ({})", ports.join(", "))));
        } else {
            out.push(
                Finding::bad(
                    "kernel",
                    Severity::Error,
                    format!("no {dev}: ports {} need {what}", ports.join(", ")),
                    "those ports fail to start",
                )
                .fix(format!("modprobe {module} (and add it to /etc/modules)")),
            );
        }
    };
    let tun = users(&|b| matches!(b, Backing::Kernel { .. } | Backing::Vdev { driver: "net_tap", .. }));
    need(&mut out, tun.clone(), "/dev/net/tun", "tap interfaces", "tun");
    let vhost_net = users(&|b| {
        matches!(b, Backing::Vdev { driver: "net_virtio_user", .. })
            && b.arg("path").is_some_and(|p| p.starts_with("/dev/vhost-net"))
    });
    need(&mut out, vhost_net, "/dev/vhost-net", "the kernel's vhost-net", "vhost_net");
    let xdp = users(&|b| matches!(b, Backing::Vdev { driver: "net_af_xdp", .. }));
    let kernel = host.kernel();
    if !xdp.is_empty() {
        match kernel {
            Some(v) if v >= (5, 4) => out.push(Finding::ok("kernel", format!("AF_XDP for {}", xdp.join(", ")))),
            _ => out.push(
                Finding::bad(
                    "kernel",
                    Severity::Error,
                    format!("ports {} use AF_XDP, which needs Linux 5.4 or later", xdp.join(", ")),
                    "the ports fail to start",
                )
                .fix("upgrade the kernel, or attach with kernel:iface=IF"),
            ),
        }
    }
    let kernel_ports = users(&|b| matches!(b, Backing::Kernel { .. }));
    if let (false, Some(v)) = (kernel_ports.is_empty(), kernel) {
        if v < (6, 17) {
            out.push(Finding::bad(
                "kernel",
                Severity::Info,
                format!("Linux {}.{}: taps take no TCP segments inside VXLAN", v.0, v.1),
                "container traffic to other hosts is cut into MTU-sized VXLAN packets in software (Linux 6.17 takes them whole)",
            ));
        }
    }
    out
}
