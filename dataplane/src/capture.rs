//! Packet capture on a running port: copies of what a port receives or sends, made by
//! the PMD core into buffers the control plane lends it, without stopping forwarding.
//!
//! Off (the normal case), it costs a core one predictable branch per rx burst and per
//! tx burst. On, the control plane fills each core's `free` ring with empty buffers
//! and sets `wanted`; a core takes a packet from that budget, copies it into a free
//! buffer (or, when none is free, gives the budget back and counts the packet lost: a
//! gap in the capture) and passes it on through `full`. No allocation and no lock on
//! the core; one atomic per copied packet, only while a capture runs.
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// Buffers in flight per core: how far a core may run ahead of the control plane.
pub const CAPTURE_RING: usize = 4096;
/// The most bytes kept of one packet.
pub const SNAP_MAX: usize = 2048;

/// Which packets of which port to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureTap {
    pub port: u16,
    pub rx: bool,
    pub tx: bool,
    /// Bytes kept per packet (at most `SNAP_MAX`).
    pub snaplen: u16,
}

/// One captured packet.
pub struct Captured {
    /// TSC when the core copied it.
    pub tsc: u64,
    /// Length on the wire.
    pub orig_len: u32,
    pub len: u16,
    /// Transmitted (else received).
    pub tx: bool,
    pub data: [u8; SNAP_MAX],
}

impl Captured {
    pub fn new() -> Box<Captured> {
        Box::new(Captured { tsc: 0, orig_len: 0, len: 0, tx: false, data: [0; SNAP_MAX] })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

/// One core's capture buffers.
pub struct CaptureRing {
    pub free: ArrayQueue<Box<Captured>>,
    pub full: ArrayQueue<Box<Captured>>,
}

impl Default for CaptureRing {
    fn default() -> Self {
        CaptureRing { free: ArrayQueue::new(CAPTURE_RING), full: ArrayQueue::new(CAPTURE_RING) }
    }
}

/// Every core's buffers and the packets still wanted.
pub struct Capture {
    pub rings: Box<[CaptureRing]>,
    /// Packets the running capture still wants (0 or less: none).
    pub wanted: AtomicI64,
}

impl Capture {
    pub fn new(cores: usize) -> Capture {
        Capture { rings: (0..cores).map(|_| CaptureRing::default()).collect(), wanted: AtomicI64::new(0) }
    }

    /// Core side: copies the first `snaplen` bytes of `head` into one of core `core`'s
    /// buffers, if the capture still wants packets. False when the packet was wanted
    /// but no buffer was free (it is forwarded anyway; only its copy is lost).
    #[inline]
    pub fn copy(&self, core: usize, head: &[u8], orig_len: usize, tx: bool, snaplen: u16, tsc: u64) -> bool {
        if self.wanted.fetch_sub(1, Relaxed) <= 0 {
            self.wanted.fetch_add(1, Relaxed);
            return true;
        }
        if self.rings[core].copy(head, orig_len, tx, snaplen, tsc) {
            return true;
        }
        self.wanted.fetch_add(1, Relaxed);
        false
    }
}

impl CaptureRing {
    #[inline]
    fn copy(&self, head: &[u8], orig_len: usize, tx: bool, snaplen: u16, tsc: u64) -> bool {
        let Some(mut c) = self.free.pop() else { return false };
        let len = head.len().min(snaplen as usize).min(SNAP_MAX);
        c.data[..len].copy_from_slice(&head[..len]);
        c.len = len as u16;
        c.orig_len = orig_len as u32;
        c.tx = tx;
        c.tsc = tsc;
        // Cannot fail: at most CAPTURE_RING buffers exist per core.
        let _ = self.full.push(c);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_only_what_is_wanted_and_counts_gaps() {
        let cap = Capture::new(1);
        assert!(cap.copy(0, b"abc", 3, false, 64, 1), "nothing wanted: not a loss");
        assert!(cap.rings[0].full.is_empty());
        cap.wanted.store(3, Relaxed);
        let _ = cap.rings[0].free.push(Captured::new());
        assert!(cap.copy(0, b"abcdef", 60, true, 4, 7));
        assert!(!cap.copy(0, b"x", 1, false, 64, 8), "wanted, but no buffer free: a gap");
        let c = cap.rings[0].full.pop().unwrap();
        assert_eq!((c.bytes(), c.orig_len, c.tx, c.tsc), (&b"abcd"[..], 60, true, 7));
        assert_eq!(cap.wanted.load(Relaxed), 2, "a lost packet gives its share back");
    }
}
