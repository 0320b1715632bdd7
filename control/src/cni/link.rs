//! A container's interface: a veth pair whose host end the switch attaches to with
//! AF_PACKET and whose other end lives in the container's network namespace, with its
//! name, MAC, MTU, addresses and routes. A veth outlives vswitchd (a restart leaves
//! the container's interface, addresses and routes alone; the switch only attaches
//! again), and deleting the host end takes the container's end with it.
//!
//! All of it is rtnetlink; requests inside the container's namespace go over a netlink
//! socket opened there by a short-lived thread (a socket stays in the namespace it was
//! made in, whichever thread uses it).
use super::api::{IpConfig, Route};
use futures_util::TryStreamExt;
use ipnetwork::IpNetwork;
use pipelines::wire::Mac;
use rtnetlink::{
    packet_route::{
        address::{AddressAttribute, AddressFlags},
        link::{InfoData, InfoVeth, LinkAttribute},
    },
    Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use std::{fs::File, net::IpAddr, os::fd::AsRawFd};

const ENODEV: i32 = libc::ENODEV;
const EEXIST: i32 = libc::EEXIST;

/// What ADD builds.
pub struct Plumb<'a> {
    pub netns: &'a str,
    pub host: &'a str,
    pub ifname: &'a str,
    pub mac: Mac,
    pub mtu: u16,
    pub ips: &'a [IpConfig],
    pub routes: &'a [Route],
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn text(what: &str, e: rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => format!("{what}: {}", m.to_io()),
        e => format!("{what}: {e}"),
    }
}

/// A netlink connection in this process's own namespace.
pub fn host() -> Result<Handle, String> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
    tokio::spawn(conn);
    Ok(handle)
}

/// A netlink connection inside the namespace `ns` is.
fn inside(ns: &File) -> Result<Handle, String> {
    let rt = tokio::runtime::Handle::current();
    let opened = std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("cannot enter the network namespace: {e}"))?;
            let _rt = rt.enter();
            rtnetlink::new_connection().map_err(|e| format!("cannot open a netlink socket in the namespace: {e}"))
        })
        .join()
        .map_err(|_| "the thread that enters the namespace failed".to_string())?
    })?;
    let (conn, handle, _) = opened;
    tokio::spawn(conn);
    Ok(handle)
}

fn open_netns(path: &str) -> Result<File, String> {
    File::open(path).map_err(|e| format!("network namespace {path}: {e}"))
}

/// The index of interface `name`, if it exists where `h` looks.
pub async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, String> {
    Ok(link(h, name).await?.map(|(index, _)| index))
}

/// Interface `name`'s MAC, if it exists where `h` looks.
pub async fn mac_of_iface(h: &Handle, name: &str) -> Result<Option<Mac>, String> {
    Ok(link(h, name).await?.map(|(_, mac)| mac))
}

fn mac_of(m: &rtnetlink::packet_route::link::LinkMessage) -> Option<Mac> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) if b.len() == 6 => Some(Mac([b[0], b[1], b[2], b[3], b[4], b[5]])),
        _ => None,
    })
}

/// Interface `name`'s index and MAC, if it exists where `h` looks.
async fn link(h: &Handle, name: &str) -> Result<Option<(u32, Mac)>, String> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(Some((m.header.index, mac_of(&m).unwrap_or_default()))),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(text(&format!("looking up interface {name}"), e)),
    }
}

/// Builds the pair and configures the container's end; returns the host end's MAC.
/// On error nothing is left behind.
pub async fn plumb(h: &Handle, p: &Plumb<'_>) -> Result<Mac, String> {
    let ns = open_netns(p.netns)?;
    // The container's end is made inside the namespace, with its final name: no
    // moment where it could clash with a host interface.
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(p.ifname.to_string())
        .address(p.mac.0.to_vec())
        .mtu(p.mtu as u32)
        .setns_by_fd(ns.as_raw_fd())
        .build();
    // A pair of this name that no attachment owns is what a DEL a moment ago is still
    // deleting, or what an ADD that died left: it goes first.
    let mut phases = Phases::new();
    unplumb(h, p.host).await?;
    phases.mark("deleting a pair of that name");
    let pair = LinkVeth::new(p.host, p.ifname).mtu(p.mtu as u32).set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
    if let Err(e) = h.link().add(pair.build()).execute().await {
        return Err(match errno(&e) {
            Some(EEXIST) => {
                format!("cannot create {} (host) and {} (in {}): one of them exists already", p.host, p.ifname, p.netns)
            }
            _ => text(&format!("creating veth {} / {} in {}", p.host, p.ifname, p.netns), e),
        });
    }
    phases.mark("creating the pair");
    let done = async {
        // The host end carries only the container's frames to the switch: no addresses
        // of its own, no IPv6 chatter.
        // (The port brings it up when it attaches.)
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", p.host), "1");
        let mac = mac_of_iface(h, p.host).await?.ok_or_else(|| format!("{} vanished", p.host))?;
        phases.mark("setting up the host end");
        configure_inside(&ns, p).await?;
        phases.mark("configuring the container's end");
        Ok::<Mac, String>(mac)
    }
    .await;
    phases.log_if_slow(p.host);
    if done.is_err() {
        let _ = unplumb(h, p.host).await;
    }
    done
}

/// How long each step of plumbing took, told when the whole was slow: the kernel's
/// netlink calls wait for its locks, and a busy host makes them take seconds.
struct Phases {
    start: std::time::Instant,
    last: std::time::Instant,
    took: Vec<(&'static str, std::time::Duration)>,
}

impl Phases {
    fn new() -> Phases {
        let now = std::time::Instant::now();
        Phases { start: now, last: now, took: Vec::new() }
    }

    fn mark(&mut self, what: &'static str) {
        let now = std::time::Instant::now();
        self.took.push((what, now - self.last));
        self.last = now;
    }

    fn log_if_slow(&self, host: &str) {
        if self.start.elapsed() > std::time::Duration::from_secs(1) {
            let steps: Vec<String> = self.took.iter().map(|(w, d)| format!("{w} {d:.1?}")).collect();
            tracing::info!("{host}: plumbing took {:.1?}: {}", self.start.elapsed(), steps.join(", "));
        }
    }
}

async fn configure_inside(ns: &File, p: &Plumb<'_>) -> Result<(), String> {
    let c = inside(ns)?;
    let idx = index_of(&c, p.ifname).await?.ok_or_else(|| format!("{} did not arrive in {}", p.ifname, p.netns))?;
    if let Some(lo) = index_of(&c, "lo").await? {
        let _ = c.link().set(LinkUnspec::new_with_index(lo).up().build()).execute().await;
    }
    for ip in p.ips {
        let net: IpNetwork = ip.address.parse().map_err(|e| format!("address {}: {e}", ip.address))?;
        let mut add = c.address().add(idx, net.ip(), net.prefix());
        // The switch knows who holds every address of the network: duplicate address
        // detection would only delay the address by a second or two.
        add.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        add.execute().await.map_err(|e| text(&format!("adding {} to {}", ip.address, p.ifname), e))?;
    }
    c.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(|e| text(&format!("bringing {} up", p.ifname), e))?;
    for r in p.routes {
        let dst: IpNetwork = r.dst.parse().map_err(|e| format!("route {}: {e}", r.dst))?;
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.ip(), dst.prefix())
            .map_err(|e| format!("route {}: {e}", r.dst))?
            .output_interface(idx);
        if let Some(gw) = r.gw {
            b = b.gateway(gw).map_err(|e| format!("route {} via {gw}: {e}", r.dst))?;
        }
        match c.route().add(b.build()).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => return Err(text(&format!("adding route {} in {}", r.dst, p.netns), e)),
        }
    }
    Ok(())
}

/// Deletes the pair by its host end and waits until it is gone (on a blocking thread:
/// see `delete_blocking`); a pair already gone is no error.
pub async fn unplumb(h: &Handle, host: &str) -> Result<(), String> {
    let Some(idx) = index_of(h, host).await? else { return Ok(()) };
    tokio::task::spawn_blocking(move || delete_blocking(idx))
        .await
        .map_err(|e| format!("deleting {host}: {e}"))?
        .map_err(|e| format!("{host}: {e}"))
}

/// Deletes the pair by its host end without waiting: DEL answers once the port is out
/// of the tables, and the kernel finishes on a blocking thread (see `delete_blocking`).
pub async fn unplumb_soon(h: &Handle, host: &str) -> Result<(), String> {
    let Some(idx) = index_of(h, host).await? else { return Ok(()) };
    let host = host.to_string();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = delete_blocking(idx) {
            tracing::warn!("{host}: {e}");
        }
    });
    Ok(())
}

/// Whether the container's interface is as ADD left it: name, MAC, addresses.
pub async fn check(netns: &str, ifname: &str, mac: Mac, ips: &[IpConfig]) -> Result<(), String> {
    let ns = open_netns(netns)?;
    let c = inside(&ns)?;
    let (idx, has) = link(&c, ifname).await?.ok_or_else(|| format!("{netns} has no interface {ifname}"))?;
    if has != mac {
        return Err(format!("{ifname} in {netns} has MAC {has}, not {mac}"));
    }
    let mut addrs = c.address().get().set_link_index_filter(idx).execute();
    let mut found = Vec::new();
    while let Some(m) = addrs.try_next().await.map_err(|e| text("listing addresses", e))? {
        for a in &m.attributes {
            if let AddressAttribute::Address(ip) = a {
                found.push(format!("{ip}/{}", m.header.prefix_len));
            }
        }
    }
    for ip in ips {
        if !found.contains(&ip.address) {
            return Err(format!("{ifname} in {netns} lacks address {} (it has {})", ip.address, found.join(", ")));
        }
    }
    Ok(())
}

/// Host interfaces whose names start with `prefix` (what GC looks for).
pub async fn named(h: &Handle, prefix: &str) -> Result<Vec<String>, String> {
    let mut links = h.link().get().execute();
    let mut out = Vec::new();
    while let Some(m) = links.try_next().await.map_err(|e| text("listing interfaces", e))? {
        for a in &m.attributes {
            if let LinkAttribute::IfName(n) = a {
                if n.starts_with(prefix) {
                    out.push(n.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Deletes interface `index` (its pair with it), blocking: deleting a link waits for
/// the kernel's RCU grace periods (tens of ms), so it runs on a blocking thread, never
/// on the runtime's. By index, not name: a pair made again under the same name in the
/// meantime is not touched. A link already gone is no error.
fn delete_blocking(index: u32) -> Result<(), String> {
    use rtnetlink::{
        packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST},
        packet_route::{link::LinkMessage, RouteNetlinkMessage},
        sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr},
    };
    let mut link = LinkMessage::default();
    link.header.index = index;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::DelLink(link));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.finalize();
    let mut buf = vec![0; req.buffer_len()];
    req.serialize(&mut buf);
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| format!("netlink socket: {e}"))?;
    sock.bind_auto().map_err(|e| format!("netlink bind: {e}"))?;
    sock.connect(&SocketAddr::new(0, 0)).map_err(|e| format!("netlink connect: {e}"))?;
    sock.send(&buf, 0).map_err(|e| format!("deleting interface {index}: {e}"))?;
    let mut reply = Vec::with_capacity(8192);
    sock.recv(&mut reply, 0).map_err(|e| format!("deleting interface {index}: {e}"))?;
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| format!("deleting interface {index}: the kernel's answer: {e}"))?;
    match msg.payload {
        NetlinkPayload::Error(e) if e.code.is_some_and(|c| -c.get() != ENODEV) => {
            Err(format!("deleting interface {index}: {}", e.to_io()))
        }
        _ => Ok(()),
    }
}
