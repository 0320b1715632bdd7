//! The thin safe layer over DPDK and the poll-mode cores.
//!
//! `unsafe` is confined to the modules that call `dpdk-sys` or the kernel (`eal`, `kernel`,
//! `log`, `mbuf`, `mempool`, `port`, `pmd`, `txbuf`, `vhost`); each block says why it is sound. Nothing here decides what
//! happens to a packet beyond moving it: decisions are `pipelines` stages.

pub mod capture;
pub mod eal;
pub mod error;
pub mod kernel;
pub mod latency;
pub mod log;
pub mod mbuf;
pub mod mempool;
pub mod nic;
pub mod pmd;
pub mod port;
pub mod snapshot;
pub mod stats;
mod txbuf;
pub mod vhost;

pub use error::DpdkError;

/// The TSC now (the clock PMD cores stamp packets and captures with).
#[inline(always)]
pub fn tsc() -> u64 {
    // Inline rather than through the shim: the cores read it every round.
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC has no preconditions; every x86_64 CPU has it.
    return unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the TSC; no preconditions.
    unsafe {
        dpdk_sys::vs_rdtsc()
    }
}

/// The most ethdev ports DPDK was built for (`RTE_MAX_ETHPORTS`): ethdevs take the
/// port ids below it.
pub const MAX_ETHDEVS: usize = dpdk_sys::RTE_MAX_ETHPORTS as usize;
/// The most ports the switch holds: ethdevs, and kernel ports (a container host's
/// pods) above them. Port ids index per-core arrays of this size.
pub const MAX_PORTS: usize = 256;
const _: () = assert!(MAX_ETHDEVS <= MAX_PORTS && MAX_PORTS <= u16::MAX as usize);

/// Raises the soft limit on open files to the hard one and returns it: every API
/// client, kernel-port queue and journal holds a descriptor, and the soft limit is
/// often 1,024.
pub fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the local struct only.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r = want;
            }
        }
    }
    r.rlim_cur
}

/// Asks the kernel to back `len` bytes at `start` (memory not written yet) with 2 MB
/// pages where it can: a table the cores probe at random (the connection-tracking
/// sessions) then costs a TLB entry per 2 MB instead of per 4 KB. THP is madvise-only
/// on most distributions; where it is off this does nothing. Returns the bytes advised.
pub fn advise_huge_pages(start: *const u8, len: usize) -> usize {
    const HUGE: usize = 2 << 20;
    let lo = (start as usize).next_multiple_of(HUGE);
    let hi = (start as usize).saturating_add(len) / HUGE * HUGE;
    if hi <= lo {
        return 0;
    }
    // SAFETY: MADV_HUGEPAGE changes only how the kernel pages the range in; it neither
    // reads nor writes memory, and a range that is not a mapping of ours fails with an
    // error instead of touching anything.
    let rc = unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
    if rc == 0 {
        hi - lo
    } else {
        0
    }
}
