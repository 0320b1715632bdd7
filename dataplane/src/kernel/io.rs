//! One queue of a kernel port: readv of a virtio-net header and a frame into a chain of
//! mbufs, writev of a chain out.
use crate::{mbuf::Mbuf, mempool::PktPool, stats::PortCounters};
use dpdk_sys::rte_mbuf;
use pipelines::{
    offload::vnet::{self, Header},
    DropReason, Frame,
};
use std::{
    cell::UnsafeCell,
    os::fd::{AsRawFd, OwnedFd},
};

/// Mbufs a frame may span: 64 KiB (the largest TSO frame) and its Ethernet header in
/// 2 KiB segments.
pub(super) const SEGS: usize = 34;
/// The most segments a chain may have to be written out (the header takes one iovec).
pub(crate) const TX_SEGS: usize = 63;

/// Mbufs ready to receive into, so a small frame costs no allocation beyond its own
/// replacement.
struct Stash {
    m: [*mut rte_mbuf; SEGS],
    /// Slots at the front used by the last frames and not refilled yet.
    empty: usize,
}

pub(super) struct Queue {
    fd: OwnedFd,
    stash: UnsafeCell<Stash>,
    /// Bytes of virtio-net header before each frame: `vnet::LEN`, or
    /// `vnet::TUNNEL_LEN` on a tap that takes tunnelled segments.
    vnet_len: usize,
}

impl Queue {
    pub(super) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub(super) fn new(fd: OwnedFd, vnet_len: usize) -> Queue {
        Queue { fd, stash: UnsafeCell::new(Stash { m: [std::ptr::null_mut(); SEGS], empty: SEGS }), vnet_len }
    }

    /// # Safety
    /// Only one thread at a time may receive on a queue.
    pub(super) unsafe fn rx(&self, port: u16, pool: &PktPool, out: &mut [Mbuf], counters: &PortCounters) -> usize {
        // SAFETY: the caller makes this thread the queue's only receiver.
        let stash = unsafe { &mut *self.stash.get() };
        let mut n = 0;
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; SEGS + 1];
        let mut hdr = [0u8; vnet::TUNNEL_LEN];
        while n < out.len() {
            if stash.empty > 0 {
                // SAFETY: slots [0, empty) are free; the pool outlives the port.
                if unsafe { dpdk_sys::vs_pktmbuf_alloc_bulk(pool.as_ptr(), stash.m.as_mut_ptr(), stash.empty as u32) }
                    != 0
                {
                    break;
                }
                stash.empty = 0;
            }
            iov[0] = libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: self.vnet_len };
            for (v, &m) in iov[1..].iter_mut().zip(&stash.m) {
                // SAFETY: stash mbufs are fresh from the pool and ours.
                let mb = unsafe { &*m };
                // SAFETY: data_off is inside the buffer of buf_len bytes.
                let base = unsafe { mb.buf_addr.cast::<u8>().add(mb.data_off as usize) };
                *v = libc::iovec { iov_base: base.cast(), iov_len: (mb.buf_len - mb.data_off) as usize };
            }
            // SAFETY: every iovec points into memory we own for its length.
            let r = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as i32) };
            if r < 0 {
                // EAGAIN: nothing waiting. Any other error (a tap whose interface is
                // gone) also ends the burst; the port's owner sees the link state.
                break;
            }
            let Some(len) = (r as usize).checked_sub(self.vnet_len).filter(|&l| l >= 14) else {
                counters.drop(DropReason::RuntFrame, 1);
                continue;
            };
            // Chain the segments the frame filled.
            let mut left = len;
            let mut used = 0;
            while left > 0 {
                // SAFETY: stash mbufs are ours; `used` < SEGS as the iovecs bound the read.
                let mb = unsafe { &mut *stash.m[used] };
                let k = left.min((mb.buf_len - mb.data_off) as usize);
                mb.data_len = k as u16;
                left -= k;
                used += 1;
                mb.next = if left > 0 { stash.m[used] } else { std::ptr::null_mut() };
            }
            // SAFETY: the head of the chain just filled.
            let head = unsafe { &mut *stash.m[0] };
            head.nb_segs = used as u16;
            head.pkt_len = len as u32;
            head.port = port;
            let mut f = Mbuf(stash.m[0]);
            // Take the used mbufs out; the rest move to the back, ready for the next read.
            stash.m.rotate_left(used);
            stash.m[SEGS - used..].fill(std::ptr::null_mut());
            stash.m.rotate_right(used);
            stash.empty = used;
            match Header::parse(&hdr[..self.vnet_len]).offload(f.head()) {
                Ok(o) => {
                    if !o.is_none() {
                        f.set_offload(o);
                    }
                    out[n] = f;
                    n += 1;
                }
                Err(reason) => {
                    counters.drop(reason, 1);
                    // SAFETY: the chain is ours and referenced nowhere else.
                    unsafe { dpdk_sys::vs_pktmbuf_free(f.0) };
                }
            }
        }
        n
    }

    /// Writes each frame with its virtio-net header, then frees them all. Returns
    /// frames and bytes sent; the kernel refusing one (its queue full, the interface
    /// down) ends the burst, and the rest are freed unsent.
    pub(super) fn tx(&self, pkts: &[*mut rte_mbuf]) -> (usize, u64) {
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; TX_SEGS + 1];
        let (mut sent, mut bytes) = (0, 0u64);
        for &m in pkts {
            let f = Mbuf(m);
            // `takes` let only frames through that have a header here.
            let hdr =
                Header::of(&f.offload(), f.len(), self.vnet_len == vnet::TUNNEL_LEN).unwrap_or_default().to_bytes();
            iov[0] = libc::iovec { iov_base: hdr.as_ptr() as *mut libc::c_void, iov_len: self.vnet_len };
            let mut k = 1;
            for c in f.chunks() {
                if k > TX_SEGS {
                    break;
                }
                iov[k] = libc::iovec { iov_base: c.as_ptr() as *mut libc::c_void, iov_len: c.len() };
                k += 1;
            }
            if k > TX_SEGS {
                // Longer chains than any receive makes: not sent.
                continue;
            }
            // SAFETY: the iovecs point at the header and the frame's segments, alive
            // until the mbuf is freed below.
            let r = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), k as i32) };
            if r < 0 {
                break;
            }
            sent += 1;
            bytes += f.len() as u64;
        }
        // SAFETY: every mbuf handed to us is ours to free; writev copied what it sent.
        unsafe { dpdk_sys::rte_pktmbuf_free_bulk(pkts.as_ptr() as *mut *mut rte_mbuf, pkts.len() as u32) };
        (sent, bytes)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let stash = self.stash.get_mut();
        for &m in &stash.m[stash.empty..] {
            // SAFETY: the filled slots hold mbufs the port owns.
            unsafe { dpdk_sys::vs_pktmbuf_free(m) };
        }
    }
}
