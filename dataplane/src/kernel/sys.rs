//! The few Linux calls a kernel-interface port makes: tap and AF_PACKET set-up, and
//! an interface's flags, MTU, index and MAC, by ioctl.
use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// `struct ifreq`: a name and a 24-byte union, of which we use the short, int and
/// sockaddr members.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(iface: &str) -> io::Result<IfReq> {
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut r = IfReq { name: [0; libc::IFNAMSIZ], data: [0; 24] };
        for (d, s) in r.name.iter_mut().zip(iface.bytes()) {
            *d = s as libc::c_char;
        }
        Ok(r)
    }
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A socket for interface ioctls.
fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned by the returned OwnedFd.
    let fd = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_ioctl(req: libc::Ioctl, r: &mut IfReq) -> io::Result<()> {
    let s = ctl_socket()?;
    // SAFETY: `r` is a valid, initialised ifreq for an interface ioctl.
    check(unsafe { libc::ioctl(s.as_raw_fd(), req, r as *mut IfReq) }).map(|_| ())
}

/// The interface's index in this network namespace, if it exists here.
pub fn ifindex(iface: &str) -> Option<u32> {
    let c = CString::new(iface).ok()?;
    // SAFETY: c is a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

pub fn set_up(iface: &str) -> io::Result<()> {
    set_admin(iface, true)
}

/// Sets or clears `IFF_UP` of the interface (`ip link set IFACE up|down`).
pub fn set_admin(iface: &str, up: bool) -> io::Result<()> {
    let mut r = IfReq::new(iface)?;
    ifreq_ioctl(libc::SIOCGIFFLAGS, &mut r)?;
    let old = i16::from_ne_bytes([r.data[0], r.data[1]]);
    let flags = if up { old | libc::IFF_UP as i16 } else { old & !(libc::IFF_UP as i16) };
    r.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ifreq_ioctl(libc::SIOCSIFFLAGS, &mut r)
}

/// `_IOW('T', 226, int)` from linux/if_tun.h (Linux 5.0+).
const TUNSETCARRIER: libc::Ioctl = 0x4004_54e2;

/// Turns the carrier of the tap behind `tap` on or off, wherever the tap now lives
/// (its fd reaches it in a container's namespace too): inside, its link shows
/// NO-CARRIER, as a cable pulled out.
pub fn tap_set_carrier(tap: &OwnedFd, on: bool) -> io::Result<()> {
    let on: libc::c_int = on.into();
    // SAFETY: TUNSETCARRIER reads one int through the pointer, which is valid.
    check(unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETCARRIER, &on as *const libc::c_int) }).map(|_| ())
}

pub fn mtu(iface: &str) -> io::Result<u16> {
    let mut r = IfReq::new(iface)?;
    ifreq_ioctl(libc::SIOCGIFMTU, &mut r)?;
    Ok(i32::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]).clamp(0, u16::MAX as i32) as u16)
}

pub fn set_mtu(iface: &str, mtu: u16) -> io::Result<()> {
    let mut r = IfReq::new(iface)?;
    r.data[..4].copy_from_slice(&(mtu as i32).to_ne_bytes());
    ifreq_ioctl(libc::SIOCSIFMTU, &mut r)
}

/// `IFF_UP` and `IFF_RUNNING` (carrier) of the interface.
pub fn link_up(iface: &str) -> io::Result<bool> {
    let mut r = IfReq::new(iface)?;
    flags_up(&mut r)
}

fn flags_up(r: &mut IfReq) -> io::Result<bool> {
    ifreq_ioctl(libc::SIOCGIFFLAGS, r)?;
    let flags = i16::from_ne_bytes([r.data[0], r.data[1]]) as i32;
    Ok(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
}

/// The name of the interface at `ifindex` in this namespace (a veth may be renamed
/// after we attached to it).
pub fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: buf holds IFNAMSIZ bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    Some(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// `_IOR('T', 210, unsigned int)` and `_IO('T', 227)` from linux/if_tun.h.
const TUNGETIFF: libc::Ioctl = 0x8004_54d2;
const TUNGETDEVNETNS: libc::Ioctl = 0x54e3;

/// Up with carrier, for the tap behind `tap`, wherever it now lives: taps are made
/// to be moved into a container's namespace, where this namespace's ioctls no longer
/// find them. The tap names its current namespace (Linux 5.2+); there a short-lived
/// thread joins it to ask, so the calling thread's own namespace never changes.
pub fn tap_link_up(tap: &OwnedFd) -> io::Result<bool> {
    let mut r = IfReq { name: [0; libc::IFNAMSIZ], data: [0; 24] };
    // SAFETY: TUNGETIFF fills an ifreq; `r` is valid and large enough.
    check(unsafe { libc::ioctl(tap.as_raw_fd(), TUNGETIFF, &mut r as *mut IfReq) })?;
    // SAFETY: TUNGETDEVNETNS takes no argument and returns a new fd we then own.
    let ns = check(unsafe { libc::ioctl(tap.as_raw_fd(), TUNGETDEVNETNS) })?;
    // SAFETY: ns was just opened for us and nothing else owns it.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    if same_file(&ns, c"/proc/thread-self/ns/net")? {
        return flags_up(&mut r);
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns on this thread only, with a namespace fd we own.
            check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
            flags_up(&mut r)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace probe thread panicked")))
    })
}

fn same_file(fd: &OwnedFd, path: &std::ffi::CStr) -> io::Result<bool> {
    // SAFETY: stat is plain data; zero is a valid value.
    let (mut a, mut b): (libc::stat, libc::stat) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: valid fd and out-pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut a) })?;
    // SAFETY: valid C string and out-pointer.
    check(unsafe { libc::stat(path.as_ptr(), &mut b) })?;
    Ok((a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
}

fn nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    let fl = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) }).map(|_| ())
}

/// The offloads we take from a tap: checksums left partial and TCP segments of up
/// to 64 KiB (with ECN), in both directions.
pub const TAP_OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;

/// TCP segments inside UDP tunnels (Linux 6.17), with the longer virtio-net header;
/// `_CSUM`: also those whose outer UDP checksum is left partial (a kernel VXLAN device
/// with udpcsum, the default, sends only those).
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x80;
const TUN_F_UDP_TUNNEL_GSO_CSUM: libc::c_uint = 0x100;

/// Opens a queue of tap `iface` (the first makes it), with virtio-net headers,
/// non-blocking. Returns the fd, whether the kernel took the offloads, and whether it
/// took tunnelled segments too (with `vnet::TUNNEL_LEN`-byte headers).
pub fn open_tap_queue(iface: &str, multi_queue: bool) -> io::Result<(OwnedFd, bool, bool)> {
    // SAFETY: open(2) with a constant path; the fd is owned below.
    let fd = check(unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: fd was just opened and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut r = IfReq::new(iface)?;
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    r.data[..2].copy_from_slice(&(flags as i16).to_ne_bytes());
    // SAFETY: TUNSETIFF takes an ifreq; `r` is valid.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut r as *mut IfReq) })?;
    let set = |len: usize, flags: libc::c_uint| {
        let len = len as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer; TUNSETOFFLOAD takes
        // the flags as the argument value.
        unsafe {
            libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &len as *const libc::c_int) == 0
                && libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) == 0
        }
    };
    let tunnel =
        set(pipelines::offload::vnet::TUNNEL_LEN, TAP_OFFLOADS | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM)
            || set(pipelines::offload::vnet::TUNNEL_LEN, TAP_OFFLOADS | TUN_F_UDP_TUNNEL_GSO);
    let offloads = tunnel || set(pipelines::offload::vnet::LEN, TAP_OFFLOADS);
    nonblocking(&fd)?;
    Ok((fd, offloads, tunnel))
}

/// An AF_PACKET socket on `ifindex` with virtio-net headers, that ignores what this
/// host sends out of the interface (our own transmissions among it), in a fanout
/// group `group` when the port has several queues; non-blocking.
pub fn open_packet_socket(ifindex: u32, fanout: Option<u16>) -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // Protocol 0 at socket(2), the real one at bind(2): a socket opened with a protocol
    // is hooked to every interface at once, and moving it to one then waits for an RCU
    // grace period (synchronize_net, about 10 ms) — most of a container's ADD.
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = check(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just opened and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let setopt = |opt: libc::c_int, val: *const libc::c_void, len: usize| {
        // SAFETY: `val` points to `len` readable bytes for the duration of the call.
        check(unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, opt, val, len as libc::socklen_t) })
    };
    let int = |v: &libc::c_int| (v as *const libc::c_int).cast::<libc::c_void>();
    setopt(libc::PACKET_VNET_HDR, int(&one), 4)?;
    setopt(libc::PACKET_IGNORE_OUTGOING, int(&one), 4)?;
    // SAFETY: sockaddr_ll is plain data; zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: binds our socket to a valid sockaddr_ll of the right size.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    // SAFETY: packet_mreq is plain data; zero is a valid value.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex as i32;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    setopt(
        libc::PACKET_ADD_MEMBERSHIP,
        (&mreq as *const libc::packet_mreq).cast(),
        std::mem::size_of::<libc::packet_mreq>(),
    )?;
    if let Some(group) = fanout {
        let v: libc::c_int = group as libc::c_int | ((libc::PACKET_FANOUT_HASH as libc::c_int) << 16);
        setopt(libc::PACKET_FANOUT, int(&v), 4)?;
    }
    nonblocking(&fd)?;
    Ok(fd)
}
