//! The Environment Abstraction Layer: initialised once per process with the
//! user's arguments untouched.
use crate::{log, DpdkError};
use std::ffi::{c_char, CString};

/// What EAL told us about the lcores it gave the process.
#[derive(Debug, Clone)]
pub struct Eal {
    pub main_lcore: u32,
    /// Worker lcores, in order; a worker's position is its core index (and the tx
    /// queue it owns on every port).
    pub workers: Vec<u32>,
    pub tsc_hz: u64,
    pub version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EalError {
    #[error("an EAL argument contains a NUL byte: {0:?}")]
    NulInArgument(String),
    #[error("{err}{}", driver_log(.log))]
    InitFailed { err: DpdkError, log: Vec<String> },
    #[error("EAL gave no worker lcore: the main lcore runs the control plane, so give at least two, e.g. `-l 0-1`")]
    NoWorkers,
}

fn driver_log(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; DPDK said: {}", lines.join(" | "))
    }
}

impl Eal {
    /// Calls `rte_eal_init` with `program` as argv[0] followed by `args`. Can only
    /// succeed once per process (DPDK's rule, even after cleanup).
    pub fn init(program: &str, args: &[String]) -> Result<Eal, EalError> {
        log::route_to_tracing();
        let mut argv: Vec<*mut c_char> = Vec::with_capacity(args.len() + 2);
        for a in std::iter::once(program).chain(args.iter().map(String::as_str)) {
            let c = CString::new(a).map_err(|_| EalError::NulInArgument(a.to_owned()))?;
            // EAL keeps pointers into argv for the life of the process.
            argv.push(c.into_raw());
        }
        let argc = argv.len() as i32;
        argv.push(std::ptr::null_mut());
        let argv = argv.leak();
        // SAFETY: argv is a leaked, NULL-terminated array of leaked C strings that
        // outlive the process's use of them; EAL may permute the array.
        let (ret, lines) = log::capture(|| unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) });
        if ret < 0 {
            return Err(EalError::InitFailed { err: DpdkError::last("rte_eal_init"), log: lines });
        }
        // SAFETY: EAL is initialised; these read its lcore configuration.
        let (main_lcore, workers, tsc_hz, version) = unsafe {
            let main = dpdk_sys::rte_get_main_lcore();
            let mut workers = Vec::new();
            let mut l = dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0);
            while l < dpdk_sys::RTE_MAX_LCORE {
                workers.push(l);
                l = dpdk_sys::rte_get_next_lcore(l, 1, 0);
            }
            let version = std::ffi::CStr::from_ptr(dpdk_sys::rte_version()).to_string_lossy().into_owned();
            (main, workers, dpdk_sys::rte_get_tsc_hz(), version)
        };
        if workers.is_empty() {
            return Err(EalError::NoWorkers);
        }
        Ok(Eal { main_lcore, workers, tsc_hz, version })
    }

    /// Releases EAL resources (hugepage files, vhost sockets) at shutdown.
    pub fn cleanup(&self) {
        // SAFETY: called once at exit after every worker has returned.
        unsafe { dpdk_sys::rte_eal_cleanup() };
    }
}
