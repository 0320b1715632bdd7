//! An `rte_mbuf` seen as a `pipelines::Frame`.
use crate::mempool::PktPool;
use dpdk_sys::rte_mbuf;
use pipelines::{
    offload::{Gso, L4Csum, Offload},
    Frame,
};

/// The `ol_flags` bits that carry pending offload work.
/// `RTE_MBUF_MAX_NB_SEGS`: a chain's most segments.
const RTE_MBUF_MAX_NB_SEGS: usize = u16::MAX as usize;

pub const TX_OFFLOAD_FLAGS: u64 = dpdk_sys::RTE_MBUF_F_TX_TCP_SEG
    | dpdk_sys::RTE_MBUF_F_TX_L4_MASK
    | dpdk_sys::RTE_MBUF_F_TX_IPV4
    | dpdk_sys::RTE_MBUF_F_TX_IPV6
    | dpdk_sys::RTE_MBUF_F_TX_TUNNEL_MASK
    | dpdk_sys::RTE_MBUF_F_TX_OUTER_IPV4;
/// VXLAN's UDP and VXLAN headers, which DPDK counts in a tunnelled frame's `l2_len`.
const TUNNEL_L2: u16 = 16;

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

    /// Iterates over the segments of a chain.
    #[inline]
    fn segs(&self) -> impl Iterator<Item = &rte_mbuf> {
        let mut p = self.0;
        std::iter::from_fn(move || {
            // SAFETY: every `next` of an owned chain is null or a segment of it, owned alike.
            let m = unsafe { p.as_ref()? };
            p = m.next;
            Some(m)
        })
    }

    /// A full copy (every segment into a fresh mbuf from `pool`), with fresh headroom.
    #[inline]
    pub fn copy(&self, pool: &PktPool) -> Option<Mbuf> {
        // SAFETY: self is a valid mbuf; pool is the process-lifetime packet pool.
        let c = unsafe { dpdk_sys::rte_pktmbuf_copy(self.0, pool.as_ptr(), 0, u32::MAX) };
        (!c.is_null()).then_some(Mbuf(c))
    }

    /// The driver's mark of a frame whose L4 checksum it left partial
    /// (`RX_L4_CKSUM_NONE`): `Some`, with the segment size if it also came coalesced
    /// (`RX_LRO`, a guest's TSO frame).
    #[inline(always)]
    pub fn rx_partial(&self) -> Option<Option<u16>> {
        let m = self.m();
        let mask = dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_MASK as u64;
        if m.ol_flags & mask != dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_NONE as u64 {
            return None;
        }
        // SAFETY: tx_offload is a plain u64 view of the bitfields.
        let segsz = (unsafe { m.__bindgen_anon_3.tx_offload } >> dpdk_sys::RTE_MBUF_TSO_SEGSZ_OFS) as u16;
        Some((m.ol_flags & dpdk_sys::RTE_MBUF_F_RX_LRO as u64 != 0).then_some(segsz))
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
    fn prefetch(p: *const u8) {
        // SAFETY: a prefetch is a hint: it never faults, whatever the address.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast()) }
    }

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

    fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.segs().map(|m| {
            // SAFETY: each segment holds data_len initialised bytes at buf_addr + data_off.
            unsafe { std::slice::from_raw_parts(m.buf_addr.cast::<u8>().add(m.data_off as usize), m.data_len as usize) }
        })
    }

    /// Fills the last segment, then chains new ones from the same pool.
    fn append(&mut self, mut bytes: &[u8]) -> bool {
        // SAFETY: self.0 is an mbuf this core owns; &mut self makes the access unique.
        let head = unsafe { &mut *self.0 };
        let mut last: *mut rte_mbuf = self.0;
        // SAFETY: walking `next` of an owned chain.
        while let Some(n) = unsafe { (*last).next.as_mut() } {
            last = n;
        }
        while !bytes.is_empty() {
            // SAFETY: `last` is the chain's last segment, owned.
            let l = unsafe { &mut *last };
            let room = (l.buf_len - l.data_off - l.data_len) as usize;
            if room == 0 {
                // SAFETY: the pool of an mbuf is valid while the mbuf lives.
                let n = unsafe { dpdk_sys::vs_pktmbuf_alloc(l.pool) };
                if n.is_null() {
                    return false;
                }
                l.next = n;
                head.nb_segs += 1;
                last = n;
                continue;
            }
            let k = room.min(bytes.len());
            // SAFETY: `room` bytes after the data are inside the segment's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    l.buf_addr.cast::<u8>().add((l.data_off + l.data_len) as usize),
                    k,
                )
            };
            l.data_len += k as u16;
            head.pkt_len += k as u32;
            bytes = &bytes[k..];
        }
        true
    }

    fn absorb(&mut self, tail: &mut Self, skip: usize) -> bool {
        let room = RTE_MBUF_MAX_NB_SEGS - self.m().nb_segs as usize;
        if tail.m().nb_segs as usize > room || !tail.strip(skip) {
            return false;
        }
        // SAFETY: both are mbufs this core owns, distinct chains; the segment count was
        // checked, so the chain cannot fail and the tail now belongs to self's chain.
        unsafe { dpdk_sys::vs_pktmbuf_chain(self.0, tail.0) == 0 }
    }

    #[inline(always)]
    fn segs(&self) -> usize {
        self.m().nb_segs as usize
    }

    /// From `ol_flags` and `tx_offload`, in DPDK's terms (a tunnelled frame's `l2_len`
    /// counts VXLAN's UDP and VXLAN headers).
    #[inline(always)]
    fn offload(&self) -> Offload {
        if self.m().ol_flags & TX_OFFLOAD_FLAGS == 0 {
            return Offload::NONE;
        }
        offload_of(self.m())
    }

    /// A frame owes nothing unless its flags say so: one load, no decoding.
    #[inline(always)]
    fn wire_len(&self) -> usize {
        let m = self.m();
        if m.ol_flags & dpdk_sys::RTE_MBUF_F_TX_TCP_SEG == 0 {
            return m.pkt_len as usize;
        }
        offload_of(m).wire_len(m.pkt_len as usize)
    }

    fn set_offload(&mut self, o: Offload) {
        // A driver that fills in the pseudo-header itself (vhost) picks it by this flag.
        let mut ip6 = !o.is_none() && self.head().get((o.outer + o.l2) as usize).is_some_and(|b| b >> 4 == 6);
        // SAFETY: self.0 is an mbuf this core owns; &mut self makes the access unique.
        let m = unsafe { &mut *self.0 };
        m.ol_flags &= !TX_OFFLOAD_FLAGS;
        if o.is_none() {
            return;
        }
        let mut flags = match o.csum {
            L4Csum::Tcp => dpdk_sys::RTE_MBUF_F_TX_TCP_CKSUM,
            L4Csum::Udp => dpdk_sys::RTE_MBUF_F_TX_UDP_CKSUM,
            L4Csum::None => 0,
        };
        let mut mss = 0;
        if let Some(g) = o.gso {
            flags |= dpdk_sys::RTE_MBUF_F_TX_TCP_SEG;
            mss = g.mss as u64;
            ip6 = g.ip_version == 6;
        }
        flags |= if ip6 { dpdk_sys::RTE_MBUF_F_TX_IPV6 } else { dpdk_sys::RTE_MBUF_F_TX_IPV4 };
        let (mut l2, mut outer_l2, mut outer_l3) = (o.l2 as u64, 0u64, 0u64);
        if o.outer != 0 {
            flags |= dpdk_sys::RTE_MBUF_F_TX_TUNNEL_VXLAN | dpdk_sys::RTE_MBUF_F_TX_OUTER_IPV4;
            l2 += TUNNEL_L2 as u64;
            outer_l2 = 14;
            outer_l3 = (o.outer - TUNNEL_L2 - 14) as u64;
        }
        m.ol_flags |= flags;
        m.__bindgen_anon_3.tx_offload = l2 << dpdk_sys::RTE_MBUF_L2_LEN_OFS
            | (o.l3 as u64) << dpdk_sys::RTE_MBUF_L3_LEN_OFS
            | (o.l4 as u64) << dpdk_sys::RTE_MBUF_L4_LEN_OFS
            | mss << dpdk_sys::RTE_MBUF_TSO_SEGSZ_OFS
            | outer_l3 << dpdk_sys::RTE_MBUF_OUTL3_LEN_OFS
            | outer_l2 << dpdk_sys::RTE_MBUF_OUTL2_LEN_OFS;
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

/// `Frame::offload` of a frame whose flags say it owes work, out of line so the stages'
/// loops carry only the flag test.
#[cold]
#[inline(never)]
fn offload_of(m: &rte_mbuf) -> Offload {
    let flags = m.ol_flags;
    // SAFETY: tx_offload is a plain u64 view of the bitfields.
    let t = unsafe { m.__bindgen_anon_3.tx_offload };
    let bits = |ofs: u32, n: u32| ((t >> ofs) & ((1 << n) - 1)) as u16;
    let mut o = Offload {
        outer: 0,
        l2: bits(dpdk_sys::RTE_MBUF_L2_LEN_OFS, dpdk_sys::RTE_MBUF_L2_LEN_BITS),
        l3: bits(dpdk_sys::RTE_MBUF_L3_LEN_OFS, dpdk_sys::RTE_MBUF_L3_LEN_BITS),
        l4: bits(dpdk_sys::RTE_MBUF_L4_LEN_OFS, dpdk_sys::RTE_MBUF_L4_LEN_BITS),
        csum: match flags & dpdk_sys::RTE_MBUF_F_TX_L4_MASK {
            dpdk_sys::RTE_MBUF_F_TX_TCP_CKSUM => L4Csum::Tcp,
            dpdk_sys::RTE_MBUF_F_TX_UDP_CKSUM => L4Csum::Udp,
            _ => L4Csum::None,
        },
        gso: None,
    };
    if flags & dpdk_sys::RTE_MBUF_F_TX_TCP_SEG != 0 {
        o.csum = L4Csum::Tcp;
        let ip_version = if flags & dpdk_sys::RTE_MBUF_F_TX_IPV6 != 0 { 6 } else { 4 };
        o.gso =
            Some(Gso { ip_version, mss: bits(dpdk_sys::RTE_MBUF_TSO_SEGSZ_OFS, dpdk_sys::RTE_MBUF_TSO_SEGSZ_BITS) });
    }
    if flags & dpdk_sys::RTE_MBUF_F_TX_TUNNEL_MASK != 0 {
        let outer_l2 = bits(dpdk_sys::RTE_MBUF_OUTL2_LEN_OFS, dpdk_sys::RTE_MBUF_OUTL2_LEN_BITS);
        let outer_l3 = bits(dpdk_sys::RTE_MBUF_OUTL3_LEN_OFS, dpdk_sys::RTE_MBUF_OUTL3_LEN_BITS);
        o.outer = outer_l2 + outer_l3 + TUNNEL_L2;
        o.l2 = o.l2.saturating_sub(TUNNEL_L2);
    }
    o
}
