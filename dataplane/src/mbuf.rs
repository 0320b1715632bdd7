//! An `rte_mbuf` seen as a `pipelines::Frame`.
use crate::mempool::PktPool;
use dpdk_sys::rte_mbuf;
use pipelines::Frame;

/// An mbuf the current core owns. `repr(transparent)`, so an array of them is the
/// `struct rte_mbuf **` that rx/tx bursts take.
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub struct Mbuf(pub *mut rte_mbuf);

impl Mbuf {
    pub const NULL: Mbuf = Mbuf(std::ptr::null_mut());

    #[inline(always)]
    fn m(&self) -> &rte_mbuf {
        // SAFETY: an Mbuf is only made from a non-null mbuf that the holder owns (from
        // rx_burst, alloc or copy) and is not used after it is sent or freed.
        unsafe { &*self.0 }
    }

    /// A full copy (every segment into a fresh mbuf from `pool`), with fresh headroom.
    #[inline]
    pub fn copy(&self, pool: &PktPool) -> Option<Mbuf> {
        // SAFETY: self is a valid mbuf; pool is the process-lifetime packet pool.
        let c = unsafe { dpdk_sys::rte_pktmbuf_copy(self.0, pool.as_ptr(), 0, u32::MAX) };
        (!c.is_null()).then_some(Mbuf(c))
    }

    /// Allocates an empty mbuf and fills it with `bytes` (control-plane transmits).
    pub fn from_bytes(pool: &PktPool, bytes: &[u8]) -> Option<Mbuf> {
        let n = u16::try_from(bytes.len()).ok()?;
        // SAFETY: pool is valid; alloc returns an owned mbuf or null.
        let m = unsafe { dpdk_sys::vs_pktmbuf_alloc(pool.as_ptr()) };
        if m.is_null() {
            return None;
        }
        // SAFETY: m is ours; append returns n writable bytes or null.
        let dst = unsafe { dpdk_sys::vs_pktmbuf_append(m, n) };
        if dst.is_null() {
            // SAFETY: m is ours and unused.
            unsafe { dpdk_sys::vs_pktmbuf_free(m) };
            return None;
        }
        // SAFETY: dst has room for n bytes and does not overlap bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.cast::<u8>(), bytes.len()) };
        Some(Mbuf(m))
    }
}

impl Frame for Mbuf {
    #[inline(always)]
    fn head(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: buf_addr + data_off is the start of data_len initialised bytes of the
        // first segment, owned through self for the borrow's lifetime.
        unsafe { std::slice::from_raw_parts(m.buf_addr.cast::<u8>().add(m.data_off as usize), m.data_len as usize) }
    }

    #[inline(always)]
    fn head_mut(&mut self) -> &mut [u8] {
        let m = self.m();
        let (addr, off, len) = (m.buf_addr.cast::<u8>(), m.data_off as usize, m.data_len as usize);
        // SAFETY: as in head(); &mut self makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.m().pkt_len as usize
    }

    /// `rte_pktmbuf_prepend`, in Rust so it inlines into the encap stage (a call into
    /// the C shim per packet showed in the W2 profile).
    #[inline(always)]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: self.0 is an mbuf this core owns; &mut self makes the access unique.
        let m = unsafe { &mut *self.0 };
        if n16 > m.data_off {
            return None;
        }
        m.data_off -= n16;
        m.data_len += n16;
        m.pkt_len += n16 as u32;
        // SAFETY: the n bytes before the old data start are headroom inside the buffer
        // (data_off was at least n), now the front of the first segment.
        Some(unsafe { std::slice::from_raw_parts_mut(m.buf_addr.cast::<u8>().add(m.data_off as usize), n) })
    }

    /// `rte_pktmbuf_adj`, in Rust for the same reason (the decap stage).
    #[inline(always)]
    fn strip(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else { return false };
        // SAFETY: self.0 is an mbuf this core owns; &mut self makes the access unique.
        let m = unsafe { &mut *self.0 };
        if n16 > m.data_len {
            return false;
        }
        m.data_len -= n16;
        m.data_off += n16;
        m.pkt_len -= n16 as u32;
        true
    }

    #[inline]
    fn truncate(&mut self, len: usize) -> bool {
        let Some(cut) = self.len().checked_sub(len) else { return false };
        let Ok(cut16) = u16::try_from(cut) else { return false };
        // SAFETY: owned mbuf; trim fails (returns -1, nothing changed) if the last
        // segment is shorter than `cut`.
        unsafe { dpdk_sys::vs_pktmbuf_trim(self.0, cut16) == 0 }
    }
}
