//! A DPDK call that failed: which call, and DPDK's own description of the errno.
use std::ffi::CStr;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {message} (errno {errno})")]
pub struct DpdkError {
    pub call: &'static str,
    pub errno: i32,
    pub message: String,
}

impl DpdkError {
    /// From a DPDK return value that is a negative errno (most ethdev calls).
    pub fn from_ret(call: &'static str, ret: i32) -> Self {
        Self::from_errno(call, ret.abs())
    }

    /// From `rte_errno` after a call that returns NULL or -1.
    pub fn last(call: &'static str) -> Self {
        // SAFETY: vs_errno reads the calling thread's rte_errno; no preconditions.
        Self::from_errno(call, unsafe { dpdk_sys::vs_errno() })
    }

    pub fn from_errno(call: &'static str, errno: i32) -> Self {
        // SAFETY: rte_strerror returns a pointer to a static or thread-local
        // NUL-terminated string for any errno value.
        let message = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(errno)) }.to_string_lossy().into_owned();
        DpdkError { call, errno, message }
    }
}
