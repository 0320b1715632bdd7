//! The packet buffer pool every port receives into.
use crate::DpdkError;
use std::{ffi::CString, ptr::NonNull};

/// The bytes a received frame gets per buffer of the default pool (its data room
/// without the headroom): a 64 KB frame from a kernel port or a guest is a chain of
/// about 34 of them.
pub const SEG_BYTES: usize = (dpdk_sys::RTE_MBUF_DEFAULT_DATAROOM - dpdk_sys::RTE_PKTMBUF_HEADROOM) as usize;

/// A `rte_pktmbuf` pool. Lives until the process exits (ports hold pointers to it).
pub struct PktPool {
    ptr: NonNull<dpdk_sys::rte_mempool>,
    size: u32,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe; the pointer is
// never freed while the process runs.
unsafe impl Send for PktPool {}
// SAFETY: as above; every method only reads the pool through DPDK's thread-safe API.
unsafe impl Sync for PktPool {}

impl PktPool {
    /// `size` mbufs of `data_room` bytes each (headroom included), with a per-lcore cache.
    pub fn create(name: &str, size: u32, cache: u32, data_room: u16) -> Result<PktPool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::from_errno("rte_pktmbuf_pool_create", libc::EINVAL))?;
        // SAFETY: EAL is initialised (the caller holds an Eal); the name is a valid C string.
        let ptr = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                size,
                cache,
                0,
                data_room,
                dpdk_sys::rte_socket_id() as i32,
            )
        };
        NonNull::new(ptr).map(|ptr| PktPool { ptr, size }).ok_or_else(|| DpdkError::last("rte_pktmbuf_pool_create"))
    }

    pub fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr.as_ptr()
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Free mbufs, including those parked in per-lcore caches. Walks every cache:
    /// control plane only.
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid for the process lifetime.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    pub fn in_use(&self) -> u32 {
        self.size - self.available().min(self.size)
    }
}
