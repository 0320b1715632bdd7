//! What a stage needs from a packet buffer. `dataplane` implements it over `rte_mbuf`;
//! tests implement it over a `Vec`. Stages are generic over it, so no dynamic dispatch.
use crate::offload::Offload;

pub trait Frame {
    /// The bytes of the first segment: every header the switch reads or writes is here.
    fn head(&self) -> &[u8];
    fn head_mut(&mut self) -> &mut [u8];
    /// Length of the whole packet, every segment.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Grows the packet at the front by `n` bytes of headroom and returns them; None if
    /// there is not enough headroom.
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Removes `n` bytes from the front; false (and nothing changed) if the first
    /// segment is shorter.
    fn strip(&mut self, n: usize) -> bool;
    /// Shortens the packet to `len` bytes (drops trailing padding); false (and nothing
    /// changed) if it cannot.
    fn truncate(&mut self, len: usize) -> bool;
    /// Every segment's bytes in order; the first is `head()`.
    fn chunks(&self) -> impl Iterator<Item = &[u8]>;
    /// Adds `bytes` at the end (building a frame); false if there is no room, with
    /// part of them possibly added.
    fn append(&mut self, bytes: &[u8]) -> bool;
    /// Appends `tail`'s bytes after its first `skip` (all in its first segment) to this
    /// frame; the tail is then part of this one (an mbuf chain), never to be used or
    /// freed on its own. False, and nothing changed, if it cannot.
    fn absorb(&mut self, tail: &mut Self, skip: usize) -> bool
    where
        Self: Sized;
    /// How many buffers the frame is chained from.
    fn segs(&self) -> usize {
        self.chunks().count()
    }
    /// The segmentation and checksum work the frame still owes.
    fn offload(&self) -> Offload;
    fn set_offload(&mut self, o: Offload);
    /// Asks the CPU to bring the cache line at `p` in (a table entry a later pass of the
    /// batch will read). A hint: `p` is never dereferenced. The packet type carries it
    /// because the stages are generic over it and `pipelines` has no `unsafe`.
    #[inline(always)]
    fn prefetch(_p: *const u8) {}
    /// Bytes this frame puts on the wire, once segmented if it is to be.
    #[inline(always)]
    fn wire_len(&self) -> usize {
        let o = self.offload();
        if o.gso.is_some() {
            o.wire_len(self.len())
        } else {
            self.len()
        }
    }
}

/// A frame in a `Vec` with headroom, for tests, tracing and fuzzing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecFrame {
    buf: Vec<u8>,
    start: usize,
    pub offload: Offload,
}

impl VecFrame {
    /// The same headroom DPDK gives an mbuf.
    pub const HEADROOM: usize = 128;

    pub fn new(bytes: &[u8]) -> VecFrame {
        let mut buf = vec![0; Self::HEADROOM];
        buf.extend_from_slice(bytes);
        VecFrame { buf, start: Self::HEADROOM, offload: Offload::NONE }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

impl Frame for VecFrame {
    fn head(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn head_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        self.start = self.start.checked_sub(n)?;
        Some(&mut self.buf[self.start..self.start + n])
    }

    fn strip(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.start += n;
        true
    }

    fn truncate(&mut self, len: usize) -> bool {
        if len > self.len() {
            return false;
        }
        self.buf.truncate(self.start + len);
        true
    }

    fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.bytes())
    }

    fn append(&mut self, bytes: &[u8]) -> bool {
        self.buf.extend_from_slice(bytes);
        true
    }

    fn absorb(&mut self, tail: &mut Self, skip: usize) -> bool {
        let Some(b) = tail.bytes().get(skip..) else { return false };
        self.buf.extend_from_slice(b);
        true
    }

    fn offload(&self) -> Offload {
        self.offload
    }

    fn set_offload(&mut self, o: Offload) {
        self.offload = o;
    }
}
