//! `kernel:iface=NAME[,queues=N][,backend=tap|packet]`: what a user writes for a port
//! on a kernel interface.

/// How the port reaches the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A tap the switch creates, with virtio-net headers.
    Tap,
    /// AF_PACKET with virtio-net headers on an interface that exists.
    Packet,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Tap => "tap",
            Backend::Packet => "af_packet",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelConf {
    pub iface: String,
    pub queues: Option<u16>,
    /// Forced; by default an existing interface is attached with AF_PACKET and a new
    /// one is created as a tap.
    pub backend: Option<Backend>,
}

pub const PREFIX: &str = "kernel:";

impl KernelConf {
    /// None if `devargs` is not a kernel port's.
    pub fn parse(devargs: &str) -> Option<Result<KernelConf, String>> {
        let rest = devargs.strip_prefix(PREFIX)?;
        Some(Self::parse_args(rest))
    }

    fn parse_args(rest: &str) -> Result<KernelConf, String> {
        let mut c = KernelConf { iface: String::new(), queues: None, backend: None };
        for kv in rest.split(',') {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(format!("devargs: {kv:?} is not KEY=VALUE; a kernel port is kernel:iface=NAME[,queues=N][,backend=tap|packet]"));
            };
            match k {
                "iface" => {
                    if v.is_empty() || v.len() > 15 || v.contains(['/', ' ', ':']) || v == "." || v == ".." {
                        return Err(format!(
                            "devargs: iface={v:?} is not an interface name (1 to 15 characters, no '/', ':' or spaces)"
                        ));
                    }
                    c.iface = v.into();
                }
                "queues" => {
                    let q = v.parse::<u16>().ok().filter(|q| (1..=64).contains(q));
                    c.queues = Some(q.ok_or_else(|| format!("devargs: queues={v:?}; give 1 to 64"))?);
                }
                "backend" => {
                    c.backend = Some(match v {
                        "tap" => Backend::Tap,
                        "packet" | "af_packet" => Backend::Packet,
                        _ => return Err(format!("devargs: backend={v:?}; give tap or packet")),
                    })
                }
                _ => return Err(format!("devargs: unknown key {k:?}; a kernel port takes iface, queues and backend")),
            }
        }
        if c.iface.is_empty() {
            return Err("devargs: a kernel port needs iface=NAME (kernel:iface=NAME)".into());
        }
        Ok(c)
    }

    /// The device a kernel port takes, for uniqueness: its interface.
    pub fn device(&self) -> String {
        format!("{PREFIX}{}", self.iface)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_devargs() {
        assert!(KernelConf::parse("net_tap0,iface=x").is_none());
        let c = KernelConf::parse("kernel:iface=vm1,queues=2").unwrap().unwrap();
        assert_eq!(c, KernelConf { iface: "vm1".into(), queues: Some(2), backend: None });
        let c = KernelConf::parse("kernel:backend=packet,iface=veth0").unwrap().unwrap();
        assert_eq!((c.backend, c.device()), (Some(Backend::Packet), "kernel:veth0".to_string()));
        for bad in [
            "kernel:",
            "kernel:iface=",
            "kernel:iface=a/b",
            "kernel:iface=x,queues=0",
            "kernel:iface=x,mtu=9",
            "kernel:x",
            "kernel:iface=0123456789abcdef",
        ] {
            let e = KernelConf::parse(bad).unwrap().unwrap_err();
            assert!(e.starts_with("devargs:"), "{bad}: {e}");
        }
    }
}
