//! The thin safe layer over DPDK and the poll-mode cores.
//!
//! `unsafe` is confined to the modules that call `dpdk-sys` or the kernel (`eal`, `kernel`,
//! `log`, `mbuf`, `mempool`, `port`, `pmd`, `txbuf`); each block says why it is sound. Nothing here decides what
//! happens to a packet beyond moving it: decisions are `pipelines` stages.

pub mod capture;
pub mod eal;
pub mod error;
pub mod kernel;
pub mod latency;
pub mod log;
pub mod mbuf;
pub mod mempool;
pub mod pmd;
pub mod port;
pub mod snapshot;
pub mod stats;
mod txbuf;

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

/// The most ethdev ports DPDK was built for (`RTE_MAX_ETHPORTS`); port ids index
/// per-core arrays of this size.
pub const MAX_PORTS: usize = dpdk_sys::RTE_MAX_ETHPORTS as usize;
